"""Benchmark section `int_core`: _core's integer table GEMM against NumPy's float32 matmul.

The integer GEMM of 8-bit patterns through a 256 x 256 table (core.int_matmul's kernel) and
NumPy's sgemm on float32 operands of the same shape, interleaved in one run on the same cores.
Rows report median times, G products/s and the time ratio int / NumPy.  It uses the section
options that core_cpu defines (--shapes, --repeats, --threads) when they are given.
"""

import numpy as np

from approxtrain import core
from approxtrain._native import LazyCore
from approxtrain.bench import interleaved_medians

_core = LazyCore()

SHAPES = ((1024, 1024, 1024), (8192, 64, 576))
QUICK_SHAPES = ((256, 256, 256), (2048, 64, 144))


def add_arguments(parser):
    """No options of its own: --shapes, --repeats and --threads come from core_cpu."""


def _table():
    """A random signed 16-bit table: the kernels' cost does not depend on the entries."""
    return np.random.default_rng(0).integers(-32768, 32768, size=(256, 256)).astype(np.int32)


def _row(shape, repeats, products):
    m, n, k = shape
    rng = np.random.default_rng(1)
    pa = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    pb = rng.integers(0, 256, size=(k, n), dtype=np.uint8)
    fa, fb = pa.astype(np.float32), pb.astype(np.float32)
    t_int, t_np = interleaved_medians([lambda: _core.int_matmul(pa, pb, products), lambda: fa @ fb], repeats)
    products_count = m * n * k
    return {
        "section": "int_core",
        "shape": f"{m}x{n}x{k}",
        "path": _core.int_gemm_cpu_path(m, n, k),
        "threads": core.num_threads(),
        "int_ms": t_int * 1e3,
        "numpy_ms": t_np * 1e3,
        "int_gprod_s": products_count / t_int / 1e9,
        "numpy_gmac_s": products_count / t_np / 1e9,
        "ratio": t_int / t_np,
    }


def run(args):
    quick = bool(getattr(args, "quick", False))
    shapes = getattr(args, "shapes", None) or (QUICK_SHAPES if quick else SHAPES)
    repeats = getattr(args, "repeats", None) or (3 if quick else 5)
    threads = getattr(args, "threads", None)
    if threads is not None:
        core.set_num_threads(threads)
    products = _table()
    print(f"[int_core] int_matmul MxNxK, _core ({core.num_threads()} threads) vs numpy float32, median of {repeats}")
    print(
        f"  {'MxNxK':>16}  {'path':<26} {'int ms':>9} {'numpy ms':>9} {'int Gprod/s':>11} {'np GMAC/s':>9} {'ratio':>7}"
    )
    rows = []
    for shape in shapes:
        row = _row(tuple(shape), repeats, products)
        rows.append(row)
        print(
            f"  {row['shape']:>16}  {row['path']:<26} {row['int_ms']:9.2f} {row['numpy_ms']:9.2f} "
            f"{row['int_gprod_s']:11.2f} {row['numpy_gmac_s']:9.2f} {row['ratio']:7.2f}"
        )
    return rows
