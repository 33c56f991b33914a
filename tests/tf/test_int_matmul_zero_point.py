"""AMIntMatMulZeroPoint (approxtrain.ops._int_matmul_op.int_matmul_zero_point): the integer table
GEMM with the zero-point terms of asymmetric quantization, int64, bit for bit against NumPy:

- with the exact unsigned table, against sum_k (a - za)(b - zb) computed directly in int64 (no
  table, no expansion of the sum);
- with random 16-bit and 'wide' tables, against the table sums of tests/int_gemm_reference.py
  plus the zero-point terms written out;
on every CPU path, with transposes, batch broadcasting, a zero point per column, K past the int32
bound, zero sizes; its shape errors; and approxtrain.quant's products through it against the same
products through AMIntMatMul and TF ops (the path where a GPU is)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from approxtrain.ops._int_matmul_op import int_matmul_zero_point  # noqa: E402
from approxtrain.quant import _gemm  # noqa: E402
from int_gemm_reference import patterns, reference, table  # noqa: E402
from test_core_int_kernels import PATHS, set_path  # noqa: E402

pytestmark = pytest.mark.tf

EXACT_UNSIGNED = np.multiply.outer(np.arange(256), np.arange(256)).astype(np.int32)


def shifted_reference(pa, pb, za, zb, transpose_a=False, transpose_b=False):
    """sum_k (a - za)(b - zb[j]) in int64, straight from the definition (exact multiplication)."""
    a = np.asarray(pa, np.int64)
    b = np.asarray(pb, np.int64)
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a - za, b - np.asarray(zb, np.int64))


def table_reference(pa, pb, products, za, zb):
    """The table sums plus the zero-point terms: - zb[j] sum_k a - za sum_k b + K za zb[j]."""
    a, b = np.asarray(pa, np.int64), np.asarray(pb, np.int64)
    zb = np.asarray(zb, np.int64)
    k = a.shape[-1]
    return (
        reference(pa, pb, products)
        - a.sum(axis=-1, keepdims=True) * zb
        - za * b.sum(axis=-2, keepdims=True)
        + k * za * zb
    )


def run(pa, pb, products, za, zb, **kw):
    got = int_matmul_zero_point(pa, pb, products, np.int32(za), np.asarray(zb, np.int32), **kw)
    assert got.dtype == tf.int64
    return got.numpy()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (3, 5, 7), (97, 33, 17), (300, 6, 25), (5, 300, 9), (64, 3, 200)], ids=str
)
@pytest.mark.parametrize("per_column", [False, True])
def test_exact_table_is_the_shifted_product(monkeypatch, path, shape, per_column):
    set_path(monkeypatch, path)
    m, n, k = shape
    rng = np.random.default_rng(m * 31 + n * 5 + k)
    pa, pb = patterns(rng, (m, k)), patterns(rng, (k, n))
    za = int(rng.integers(0, 256))
    zb = rng.integers(0, 256, size=n) if per_column else int(rng.integers(0, 256))
    np.testing.assert_array_equal(run(pa, pb, EXACT_UNSIGNED, za, zb), shifted_reference(pa, pb, za, zb))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["signed", "unsigned", "wide"])
def test_approximate_tables(monkeypatch, path, kind):
    set_path(monkeypatch, path)
    rng = np.random.default_rng(7)
    m, n, k = 70, 19, 45
    pa, pb = patterns(rng, (m, k)), patterns(rng, (k, n))
    products = table(kind, seed=3)
    for za, zb in ((0, 0), (255, 0), (0, 255), (113, rng.integers(0, 256, size=n))):
        np.testing.assert_array_equal(run(pa, pb, products, za, zb), table_reference(pa, pb, products, za, zb))


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposes_and_batch_broadcast(transpose_a, transpose_b):
    rng = np.random.default_rng(9)
    m, n, k = 23, 10, 17
    pa = patterns(rng, (3, 1, k, m) if transpose_a else (3, 1, m, k))
    pb = patterns(rng, (2, n, k) if transpose_b else (2, k, n))
    zb = rng.integers(0, 256, size=n)
    got = run(pa, pb, EXACT_UNSIGNED, 77, zb, transpose_a=transpose_a, transpose_b=transpose_b)
    assert got.shape == (3, 2, m, n)
    np.testing.assert_array_equal(got, shifted_reference(pa, pb, 77, zb, transpose_a, transpose_b))


def test_k_past_the_int32_bound():
    """K * max|products| >= 2^31 (AMIntMatMul refuses it): the sums are split and exact in int64."""
    k = 40000
    rng = np.random.default_rng(4)
    pa, pb = np.full((2, k), 255, np.uint8), patterns(rng, (k, 3))
    products = np.full((256, 256), 65535, np.int32)
    got = run(pa, pb, products, 200, [0, 7, 255])
    np.testing.assert_array_equal(got, table_reference(pa, pb, products, 200, np.array([0, 7, 255])))
    assert got[0, 0] == k * 65535 - 200 * int(pb[:, 0].astype(np.int64).sum())  # zb[0] = 0


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_zero_size_dims(shape):
    m, n, k = shape
    got = run(np.zeros((m, k), np.uint8), np.full((k, n), 9, np.uint8), EXACT_UNSIGNED, 3, 5)
    assert got.shape == (m, n)
    np.testing.assert_array_equal(got, np.full((m, n), k * 3 * 5))


def test_zero_point_shapes_are_checked():
    a, b = np.zeros((4, 6), np.uint8), np.zeros((6, 3), np.uint8)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"AMIntMatMulZeroPoint: zb must be a scalar or have shape \[3\] \(one per column\), got shape \[4\]",
    ):
        run(a, b, EXACT_UNSIGNED, 0, [1, 2, 3, 4])
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"za"):
        int_matmul_zero_point(a, b, EXACT_UNSIGNED, np.array([1, 2], np.int32), np.int32(0))
    with pytest.raises(TypeError, match="int_matmul_zero_point: zb must be a int32 tensor, got int64"):
        int_matmul_zero_point(a, b, EXACT_UNSIGNED, np.int32(0), np.int64(0))


class _Table:
    def __init__(self, name, products, signed):
        self.name, self.products, self.signed = name, products, signed


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(
    "zb_shape, per_row",
    [((), False), ((7,), False), ((1, 1, 7), False), ((2, 1, 7), False), ((), True), ((13,), True)],
    ids=str,
)
def test_exact_product_same_on_both_paths(monkeypatch, signed, zb_shape, per_row):
    """approxtrain.quant's exact_product through AMIntMatMulZeroPoint (no GPU) equals the same
    product through AMIntMatMul and TF ops (what runs where a GPU is), for every zero-point form."""
    rng = np.random.default_rng(11)
    products = table("signed" if signed else "unsigned", seed=5)
    multiplier = _Table("zero_point_test_" + ("s" if signed else "u"), products, signed)
    qa = tf.constant(patterns(rng, (2, 9, 13)))
    qb = tf.constant(patterns(rng, (2, 13, 7)))
    za = tf.constant(0 if signed else 131, tf.int32)
    zb = tf.constant(np.zeros(zb_shape) if signed else rng.integers(0, 256, size=zb_shape), tf.int32)
    monkeypatch.setattr(_gemm, "fused_op_usable", lambda: True)
    fused = _gemm.exact_product(qa, qb, za, zb, multiplier, zb_per_row=per_row).numpy()
    monkeypatch.setattr(_gemm, "fused_op_usable", lambda: False)
    split = _gemm.exact_product(qa, qb, za, zb, multiplier, zb_per_row=per_row).numpy()
    np.testing.assert_array_equal(fused, split)
    if not per_row and not signed:
        np.testing.assert_array_equal(fused, table_reference(qa.numpy(), qb.numpy(), products, 131, zb.numpy()))
