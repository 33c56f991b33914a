"""Benchmarks: AM kernels against the native op, measured in the same run.

Each section module provides ``run(args) -> list[dict]`` rows and
``add_arguments(parser)`` (its own options, added to `approxtrain bench`'s);
`approxtrain bench` runs the sections available.
"""

import time

import numpy as np


def interleaved_medians(fns, repeats, warmup=1):
    """`warmup` untimed calls of each fn, then `repeats` rounds calling each fn once in turn;
    the median seconds per fn.  Interleaving lets changes in machine load hit every fn alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def bench_multiplier():
    """mbm7 from the registry; without one, an M=7 table of the same size (the kernels'
    cost depends on M, not on the entries)."""
    from approxtrain import multipliers

    try:
        return multipliers.get("mbm7")
    except (ValueError, LookupError):  # not registered, or its table cannot be built here
        return multipliers.Multiplier("m7_placeholder", 7, "nearest", np.full(1 << 14, 1 << 14, np.uint16))
