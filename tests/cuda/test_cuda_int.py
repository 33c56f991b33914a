"""int_matmul on device="cuda": exact int64 sums equal to the NumPy reference
(tests/int_gemm_reference.py) and to the CPU, for 16-bit signed and unsigned tables (shared
memory) and a wide int32 table (global memory), odd sizes, long K past int32, transposes and
batch broadcasting.  Skipped where no GPU is usable (a failure under APPROXTRAIN_REQUIRE_CUDA=1,
see conftest.py)."""

import numpy as np
import pytest

from approxtrain import _core, core
from int_gemm_reference import INT32_MIN, patterns, reference, table

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not core.cuda_available(), reason="no usable CUDA device")]

SHAPES = [(1, 1, 1), (3, 5, 7), (13, 37, 11), (64, 64, 32), (65, 129, 33), (300, 70, 100), (5, 600, 3)]


@pytest.mark.parametrize("kind", ["signed", "unsigned", "wide"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bit_exact(kind, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    pa, pb, products = patterns(rng, (m, k)), patterns(rng, (k, n)), table(kind)
    got = _core.int_matmul_cuda(pa, pb, products)
    assert got.dtype == np.int64 and got.shape == (m, n)
    np.testing.assert_array_equal(got, reference(pa, pb, products))
    np.testing.assert_array_equal(got, _core.int_matmul(pa, pb, products))


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposes_and_batch_broadcast(transpose_a, transpose_b):
    rng = np.random.default_rng(5)
    m, n, k = 37, 45, 70
    pa = patterns(rng, (2, 1, k, m) if transpose_a else (2, 1, m, k))
    pb = patterns(rng, (3, n, k) if transpose_b else (3, k, n))
    products = table("unsigned", seed=1)
    got = _core.int_matmul_cuda(pa, pb, products, transpose_a, transpose_b)
    np.testing.assert_array_equal(got, reference(pa, pb, products, transpose_a, transpose_b))


def test_sums_past_int32():
    k = 70000
    rng = np.random.default_rng(6)
    pa, pb = patterns(rng, (3, k)), patterns(rng, (k, 2))
    got = _core.int_matmul_cuda(pa, pb, np.full((256, 256), -32768, np.int32))
    np.testing.assert_array_equal(got, np.full((3, 2), -32768 * k, np.int64))
    assert got.min() < INT32_MIN
    products = table("unsigned", seed=2)
    np.testing.assert_array_equal(_core.int_matmul_cuda(pa, pb, products), reference(pa, pb, products))


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_zero_size_dims(shape):
    m, n, k = shape
    got = _core.int_matmul_cuda(np.zeros((m, k), np.uint8), np.zeros((k, n), np.uint8), table("signed"))
    assert got.shape == (m, n) and not got.any()


def test_values_api_on_cuda():
    from approxtrain.multipliers import IntegerMultiplier

    mul = IntegerMultiplier("t8s_random", True, table("signed", seed=3))
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, size=(50, 40)).astype(np.int8)
    b = rng.integers(-128, 128, size=(40, 30)).astype(np.int8)
    np.testing.assert_array_equal(core.int_matmul(a, b, mul, device="cuda"), core.int_matmul(a, b, mul))
