"""Benchmark section `core_cpu`: _core's CPU GEMM against NumPy's float32 matmul.

Both run in the same process on the same cores, one after the other for each
size.  Rows report median times, GMAC/s (multiply-accumulates per second)
and the time ratio AM / NumPy.  --cpu-paths times the same GEMMs on several
CPU paths (APPROXTRAIN_CPU_PATH values: auto, generic, avx2, no-avx512,
avx512, ...), --shapes on GEMMs that are not square (MxNxK: C is M x N).
"""

import argparse
import contextlib
import os
import time

import numpy as np

from approxtrain import core
from approxtrain._native import LazyCore
from approxtrain.multipliers import Multiplier

_core = LazyCore()

SIZES = (256, 512, 1024, 2048)
QUICK_SIZES = (256, 512)
WIDE_TABLE_SIZE = 1024  # the other paths (bf16: M = 7 with 15-bit results, fp16m: M = 10) at this size only


def add_arguments(parser):
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(t) for t in s.split(",")],
        help=f"core_cpu: square matmul sizes, comma-separated (default {','.join(map(str, SIZES))}); "
        "zoo: batch sizes (default 128, 64 for mobilenetv2)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed repeats per size (core_cpu) or per training step (zoo); median reported "
        "(core_cpu: default 5, 3 with --quick; zoo: default 5, 1 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for _core's pool (core_cpu) and, in zoo, also TensorFlow's intra-op threads "
        "(default: the cores this process may use)",
    )
    parser.add_argument(
        "--shapes",
        type=_parse_shapes,
        help="GEMM shapes MxNxK (C is M x N), comma-separated, e.g. 1024x1024x1024,8192x64x576 "
        "(instead of the square --sizes)",
    )
    parser.add_argument(
        "--cpu-paths",
        type=_parse_paths,
        help=f"CPU paths to time side by side, comma-separated {PATH_ENV} values "
        f"({', '.join(CPU_PATHS)}; default: auto)",
    )


PATH_ENV = "APPROXTRAIN_CPU_PATH"
# "auto": the run-time choice; the others force a path (cpu_features.h).  A
# path this CPU lacks falls back as _core does, and the row names what ran.
CPU_PATHS = (
    "auto", "generic", "avx2", "bucket-avx512", "bucket-portable", "no-avx512", "avx512", "avx512-gather",
    "float-avx2", "float-avx512", "float-portable",
)  # fmt: skip


def _parse_shapes(text):
    shapes = []
    for item in text.split(","):
        parts = item.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"{item!r} is not MxNxK with positive integers (e.g. 8192x64x576)")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _parse_paths(text):
    paths = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in paths if p not in CPU_PATHS]
    if unknown or not paths:
        raise argparse.ArgumentTypeError(
            f"unknown path {unknown[0] if unknown else text!r}; choose from {', '.join(CPU_PATHS)}"
        )
    return paths


@contextlib.contextmanager
def _cpu_path(path):
    """APPROXTRAIN_CPU_PATH set to `path` ("auto": unset) for the block, restored after."""
    saved = os.environ.get(PATH_ENV)
    if path == "auto":
        os.environ.pop(PATH_ENV, None)
    else:
        os.environ[PATH_ENV] = path
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PATH_ENV, None)
        else:
            os.environ[PATH_ENV] = saved


def _exact_table(m):
    """An exact-product table with M fraction bits (the stand-in when the registry lacks a multiplier)."""
    ia = np.arange(1 << m, dtype=np.int64)[:, None]
    ib = np.arange(1 << m, dtype=np.int64)[None, :]
    prod = ((1 << m) + ia) * ((1 << m) + ib)  # significand product scaled by 2^(2m), in [2^(2m), 2^(2m+2))
    carry = prod >> (2 * m + 1)
    shift = 2 * m + carry - 15  # the product has 2m + carry fraction bits; keep the top 15 (truncated)
    fraction = np.where(shift >= 0, prod >> np.maximum(shift, 0), prod << np.maximum(-shift, 0)) & 0x7FFF
    return ((carry << 15) | fraction).astype(np.uint16).reshape(-1)


def _multiplier(name, mantissa_bits, rounding):
    """The registry's multiplier `name`, or an exact-product stand-in with the same M."""
    try:
        from approxtrain import multipliers

        return multipliers.get(name)
    except (ImportError, AttributeError, ValueError, KeyError, FileNotFoundError, RuntimeError):
        return Multiplier(
            f"{name}-like", mantissa_bits, rounding, _exact_table(mantissa_bits), f"exact-product stand-in for {name}"
        )


# NumPy's OpenBLAS threads keep spinning for a while after a call and steal
# the cores from whatever runs next (measured here: an AM matmul right after
# np.matmul took up to 2x as long, still 1.6x after a 0.25 s pause).  So each
# side is timed in its own block of back-to-back runs, after a pause and an
# untimed warm-up run, as a training loop would run it.
SETTLE_SECONDS = 0.5


def _median_times(fns, repeats):
    """Median seconds of each fn over `repeats` back-to-back runs (after a pause and a warm-up run)."""
    medians = []
    for fn in fns:
        time.sleep(SETTLE_SECONDS)
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        medians.append(float(np.median(times)))
    return medians


def _row(mult, shape, repeats, cpu_path="auto"):
    """One GEMM shape (m, n, k) on one CPU path, timed against NumPy."""
    m, n, k = shape
    rng = np.random.default_rng(m + 7 * n + 31 * k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    with _cpu_path(cpu_path):
        am, native = _median_times([lambda: core.matmul(a, b, mult), lambda: np.matmul(a, b)], repeats)
        path = _core.gemm_cpu_path(int(mult.mantissa_bits), mult.lut, (m, n, k))
    macs = float(m) * n * k
    return {
        "section": "core_cpu",
        "op": "matmul",
        "m": m,
        "k": k,
        "n": n,
        "multiplier": mult.name,
        "mantissa_bits": int(mult.mantissa_bits),
        "cpu_path": cpu_path,
        "path": path,
        "threads": core.num_threads(),
        "am_ms": am * 1e3,
        "numpy_ms": native * 1e3,
        "am_gmacs": macs / am / 1e9,
        "numpy_gmacs": macs / native / 1e9,
        "ratio": am / native,
    }


def _print(row):
    shape = f"{row['m']}x{row['n']}x{row['k']}"
    print(
        f"  {shape:>16}  {row['multiplier']:<14} {row['cpu_path']:<10} {row['path']:<17} {row['am_ms']:>9.2f} "
        f"{row['numpy_ms']:>9.2f} {row['am_gmacs']:>8.2f} {row['numpy_gmacs']:>8.2f} {row['ratio']:>7.2f}",
        flush=True,
    )


def run(args):
    quick = bool(getattr(args, "quick", False))
    sizes = getattr(args, "sizes", None) or (QUICK_SIZES if quick else SIZES)
    repeats = getattr(args, "repeats", None) or (3 if quick else 5)
    threads = getattr(args, "threads", None)
    if threads is not None:
        core.set_num_threads(threads)
    shapes = getattr(args, "shapes", None) or [(n, n, n) for n in sizes]
    # Without --cpu-paths the bench runs the path the environment gives (APPROXTRAIN_CPU_PATH as set).
    cpu_paths = getattr(args, "cpu_paths", None) or [os.environ.get(PATH_ENV) or "auto"]
    m7 = _multiplier("mbm7", 7, "truncate")
    print(f"[core_cpu] matmul MxNxK, _core ({core.num_threads()} threads) vs numpy float32, median of {repeats}")
    print(
        f"  {'MxNxK':>16}  {'multiplier':<14} {'forced':<10} {'path':<17} {'am ms':>9} {'numpy ms':>9} "
        f"{'am GMAC/s':>8} {'np GMAC/s':>8} {'ratio':>7}"
    )
    rows = []
    for shape in shapes:
        for cpu_path in cpu_paths:
            rows.append(_row(m7, shape, repeats, cpu_path))
            _print(rows[-1])
    if not quick:
        wide_shapes = getattr(args, "shapes", None) or [(WIDE_TABLE_SIZE,) * 3]
        for name, m, rounding in [("bf16", 7, "nearest"), ("fp16m", 10, "nearest")]:
            for shape in wide_shapes:
                for cpu_path in cpu_paths:
                    rows.append(_row(_multiplier(name, m, rounding), shape, max(1, repeats - 2), cpu_path))
                    _print(rows[-1])
    return rows
