"""multiply and matmul on device="cuda": bit-identical to the CPU core and to
the NumPy reference, for every M, both roundings, specials, odd sizes, long
K, transposes and batch broadcasting.  Skipped where no GPU is usable
(a failure under APPROXTRAIN_REQUIRE_CUDA=1, see conftest.py)."""

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import _core, core
from cuda_helpers import ROUNDINGS, assert_same_bits, floats, multiplier, ordinary

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not core.cuda_available(), reason="no usable CUDA device")]

ALL_M = range(1, 12)


@pytest.mark.parametrize("m", ALL_M)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("kind", ["random", "exact"])
def test_multiply_every_multiplier(m, rounding, kind):
    mul = multiplier(m, rounding, kind)
    rng = np.random.default_rng(m)
    a = np.concatenate([floats(rng, 20000), np.repeat(ref.SPECIALS, ref.SPECIALS.size)])
    b = np.concatenate([floats(rng, 20000), np.tile(ref.SPECIALS, ref.SPECIALS.size)])
    got = core.multiply(a, b, mul, device="cuda")
    assert_same_bits(got, ref.multiply(a, b, mul.lut, m, rounding), "multiply vs reference")
    assert_same_bits(got, core.multiply(a, b, mul, device="cpu"), "multiply vs cpu")


@pytest.mark.parametrize("m", ALL_M)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("kind", ["random", "exact"])
def test_matmul_every_multiplier_with_specials(m, rounding, kind):
    """All SPECIALS meet each other (and random values) as left and right operands."""
    mul = multiplier(m, rounding, kind)
    rng = np.random.default_rng(100 + m)
    s = ref.SPECIALS
    a = floats(rng, (2 * s.size + 3, 3 * s.size))
    b = floats(rng, (3 * s.size, s.size + 5))
    a[: s.size, : s.size] = np.diag(s)  # special left operands in row i at k = i
    a[s.size : 2 * s.size, : s.size] = s[None, :]  # every special in one row
    b[: s.size, : s.size] = np.tile(s[:, None], (1, s.size))
    got = core.matmul(a, b, mul, device="cuda")
    assert_same_bits(got, ref.matmul(a, b, mul.lut, m, rounding), "matmul vs reference")
    assert_same_bits(got, core.matmul(a, b, mul, device="cpu"), "matmul vs cpu")


# (batch_a, batch_b, m, n, k, transpose_a, transpose_b)
SHAPES = [
    (1, 1, 1, 1, 1, False, False),
    (1, 1, 3, 5, 7, False, False),
    (1, 1, 2, 3, 0, False, False),  # K = 0: +0 everywhere
    (1, 1, 64, 128, 16, False, False),  # exactly one big tile
    (1, 1, 65, 129, 17, True, False),
    (1, 1, 17, 33, 31, False, True),
    (1, 1, 7, 9, 4097, False, False),  # long K, partial last K tile
    (1, 1, 40, 3, 4097, True, True),
    (4, 1, 33, 47, 19, False, False),  # B broadcast over the batch
    (1, 3, 21, 50, 23, True, True),  # A broadcast
    (5, 5, 18, 34, 45, False, True),
    (1, 1, 1030, 1100, 70, False, False),  # many big tiles, ragged edges
    (1, 1, 1031, 1101, 33, True, True),
    (2, 2, 700, 1200, 40, True, False),
    (1, 1, 20000, 60, 20, False, False),  # narrow 128 x 64 tiles
    (3, 1, 7001, 61, 21, True, True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + f"-t{int(s[5])}{int(s[6])}")
@pytest.mark.parametrize(
    "m, rounding, kind",
    [(7, "nearest", "exact"), (3, "truncate", "random"), (8, "truncate", "random"), (10, "nearest", "random")],
)
def test_matmul_shapes(shape, m, rounding, kind):
    ba, bb, mm, n, k, ta, tb = shape
    mul = multiplier(m, rounding, kind)
    rng = np.random.default_rng(sum(shape[:5]))
    a = floats(rng, (ba, k, mm) if ta else (ba, mm, k))
    b = floats(rng, (bb, n, k) if tb else (bb, k, n))
    got = core.matmul(a, b, mul, device="cuda", transpose_a=ta, transpose_b=tb)
    want = core.matmul(a, b, mul, device="cpu", transpose_a=ta, transpose_b=tb)
    assert_same_bits(got, want, "matmul vs cpu")


def test_matmul_activation_like_values_and_zeros():
    """ReLU-like inputs: many exact zeros (the zero row of the shared table)."""
    mul = multiplier(7, "nearest", "exact")
    rng = np.random.default_rng(7)
    a, b = ordinary(rng, (300, 257)), ordinary(rng, (257, 130))
    assert_same_bits(core.matmul(a, b, mul, device="cuda"), core.matmul(a, b, mul, device="cpu"))
    assert_same_bits(core.matmul(a, b, mul, device="cuda"), ref.matmul(a, b, mul.lut, 7, "nearest"))


def test_negative_zero_sums_survive():
    """-0 products sum to -0 (a +0 start would not survive an added +0): K order and no padded products."""
    mul = multiplier(7, "nearest", "exact")
    a = np.full((3, 21), -0.0, np.float32)
    b = np.ones((21, 5), np.float32)
    got = core.matmul(a, b, mul, device="cuda")
    assert np.all(got.view(np.uint32) == 0x80000000)


def test_both_kernel_variants_and_table_placements_are_exercised():
    """The shapes of test_matmul_shapes reach every tile shape with both table placements."""
    variants = {
        _core.gemm_cuda_variant(m, mm, n, k, 1)
        for m in (7, 10)
        for (mm, n, k) in [(1030, 1100, 70), (65, 129, 17), (20000, 60, 20)]
    }
    assert variants == {
        f"{tile}/{placement}"
        for tile in ("tile64x128", "tile128x64", "tile16x32")
        for placement in ("shared-table", "global-table")
    }


def test_errors_are_value_errors():
    mul = multiplier(7, "nearest", "exact")
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.matmul_cuda(np.zeros((1, 2, 3), np.float32), np.zeros((1, 4, 2), np.float32), *mul.core_args)
    with pytest.raises(ValueError, match="same size"):
        _core.multiply_cuda(np.zeros(3, np.float32), np.zeros(4, np.float32), *mul.core_args)
    with pytest.raises(ValueError, match="entries"):
        _core.multiply_cuda(np.zeros(3, np.float32), np.zeros(3, np.float32), mul.lut[:10], 7, "nearest")


def test_bench_entry_points_time_the_kernels():
    mul = multiplier(7, "nearest", "exact")
    rng = np.random.default_rng(0)
    a, b = ordinary(rng, (1, 256, 256)), ordinary(rng, (1, 256, 256))
    ms = _core.matmul_cuda_bench(a, b, *mul.core_args, False, False, 3)
    assert 0.0 < ms < 1000.0
    assert 0.0 < _core.multiply_cuda_bench(a.ravel(), b.ravel(), *mul.core_args, repeats=3) < 1000.0
