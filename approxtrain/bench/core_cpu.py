"""Benchmark section `core_cpu`: _core's CPU GEMM against NumPy's float32 matmul.

Both run in the same process on the same cores, one after the other for each
size.  Rows report median times, GMAC/s (multiply-accumulates per second)
and the time ratio AM / NumPy.
"""
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
    parser.add_argument("--sizes", type=lambda s: [int(t) for t in s.split(",")],
                        help=f"square matmul sizes, comma-separated (default {','.join(map(str, SIZES))})")
    parser.add_argument("--repeats", type=int,
                        help="timed repeats per size (median reported; default 5, 3 with --quick)")
    parser.add_argument("--threads", type=int, help="threads for _core (default: its pool size)")


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
        return Multiplier(f"{name}-like", mantissa_bits, rounding, _exact_table(mantissa_bits),
                          f"exact-product stand-in for {name}")


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


def _row(mult, n, repeats):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    am, native = _median_times([lambda: core.matmul(a, b, mult), lambda: np.matmul(a, b)], repeats)
    macs = float(n) ** 3
    return {
        "section": "core_cpu", "op": "matmul", "m": n, "k": n, "n": n,
        "multiplier": mult.name, "mantissa_bits": int(mult.mantissa_bits),
        "path": _core.gemm_cpu_path(int(mult.mantissa_bits), mult.lut), "threads": core.num_threads(),
        "am_ms": am * 1e3, "numpy_ms": native * 1e3,
        "am_gmacs": macs / am / 1e9, "numpy_gmacs": macs / native / 1e9, "ratio": am / native,
    }


def _print(row):
    print(f"  {row['m']:>5}  {row['multiplier']:<14} {row['path']:<17} {row['am_ms']:>9.2f} {row['numpy_ms']:>9.2f} "
          f"{row['am_gmacs']:>8.2f} {row['numpy_gmacs']:>8.2f} {row['ratio']:>7.2f}", flush=True)


def run(args):
    quick = bool(getattr(args, "quick", False))
    sizes = getattr(args, "sizes", None) or (QUICK_SIZES if quick else SIZES)
    repeats = getattr(args, "repeats", None) or (3 if quick else 5)
    threads = getattr(args, "threads", None)
    if threads is not None:
        core.set_num_threads(threads)
    m7 = _multiplier("mbm7", 7, "truncate")
    print(f"[core_cpu] square matmul, _core ({core.num_threads()} threads) vs numpy float32, "
          f"median of {repeats}")
    print(f"  {'size':>5}  {'multiplier':<14} {'path':<17} {'am ms':>9} {'numpy ms':>9} {'am GMAC/s':>8} "
          f"{'np GMAC/s':>8} {'ratio':>7}")
    rows = []
    for n in sizes:
        rows.append(_row(m7, n, repeats))
        _print(rows[-1])
    if not quick:
        for name, m, rounding in [("bf16", 7, "nearest"), ("fp16m", 10, "nearest")]:
            rows.append(_row(_multiplier(name, m, rounding), WIDE_TABLE_SIZE, max(1, repeats - 2)))
            _print(rows[-1])
    return rows
