"""Gradients of integer-multiplier products: the straight-through estimator and integer_backward."""

import numpy as np
import pytest
import tensorflow as tf

import _int_reference as ref
from approxtrain import ops
from approxtrain.quant import QuantConfig, _gemm

pytestmark = pytest.mark.tf
F = np.float32


@pytest.fixture(autouse=True)
def int_gemm(monkeypatch):
    if not ref.have_int_matmul_op():
        monkeypatch.setattr(_gemm, "patterns_matmul", ref.reference_patterns_matmul)


def grads(a, b, dy, **kwargs):
    a, b = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        y = ops.matmul(a, b, **kwargs)
    da, db = tape.gradient(y, [a, b], output_gradients=tf.constant(dy))
    return da.numpy(), db.numpy()


def data(seed, m=6, k=9, n=5):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0.3, 1.0, size=(m, k)).astype(F),
        rng.normal(0.0, 0.4, size=(k, n)).astype(F),
        rng.normal(0.0, 0.01, size=(m, n)).astype(F),
    )


@pytest.mark.parametrize("signed", [True, False])
def test_ste_gradients_are_those_through_tf_fake_quant(signed):
    a, b, dy = data(1)
    m = ref.exact_multiplier(signed)
    cfg = QuantConfig(calibration="percentile", percentile=90.0)  # clips some of a: the mask matters
    da, db = grads(a, b, dy, multiplier=m, quantization=cfg)
    flat = np.sort(np.abs(a).ravel()) if signed else np.sort(a.ravel())
    at = lambda p: flat[int(np.ceil(p / 100 * flat.size)) - 1]  # noqa: E731
    lo, hi = (-at(90.0), at(90.0)) if signed else (at(10.0), at(90.0))
    pa, pb = ref.params(lo, hi, signed), ref.minmax_params(b, signed)
    inside = (a >= min(lo, 0)) & (a <= max(hi, 0))  # the calibrated range, not the nudged one
    assert not inside.all()
    deq_a, deq_b = ref.dequantize(ref.quantize(a, pa), pa), ref.dequantize(ref.quantize(b, pb), pb)
    np.testing.assert_allclose(da, (dy @ deq_b.T) * inside, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(db, deq_a.T @ dy, rtol=1e-5, atol=1e-9)
    # the same as differentiating a float matmul of TF's fake-quant ops
    ta, tb = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([ta, tb])
        lo_n, hi_n = F(pa[2]), F(pa[3])
        fa = tf.quantization.fake_quant_with_min_max_vars(ta, lo_n, hi_n, narrow_range=signed)
        blo, bhi = (F(-np.abs(b).max()), F(np.abs(b).max())) if signed else (min(b.min(), 0), max(b.max(), 0))
        fb = tf.quantization.fake_quant_with_min_max_vars(tb, blo, bhi, narrow_range=signed)
        y = tf.matmul(fa, fb)
    fda, fdb = tape.gradient(y, [ta, tb], output_gradients=tf.constant(dy))
    # TF masks by the nudged range, which may leave out an extreme element by less than half a step
    tf_inside_b = (b >= pb[2]) & (b <= pb[3])
    np.testing.assert_allclose(da * ((a >= pa[2]) & (a <= pa[3])), fda.numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(db * tf_inside_b, fdb.numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_integer_backward_matches_numpy(signed, granularity):
    a, b, dy = data(2)
    m = ref.random_multiplier(signed, seed=11)
    per_channel = granularity == "per_channel"
    da, db = grads(a, b, dy, multiplier=m, quantization=QuantConfig(granularity=granularity, integer_backward=True))
    pa, pb = ref.minmax_params(a, signed), ref.minmax_params(b, signed, per_channel)
    qa, qb = ref.quantize(a, pa), ref.quantize(b, pb)
    # dA = dY_q . W_q^T, A = dY scaled by the weights' scales; zero points of W per term of the sum
    scaled = (dy * pb[0]).astype(F)
    pg = ref.minmax_params(scaled, signed)
    zb = np.reshape(pb[1], (-1, 1)) if per_channel else pb[1]
    expected_da = ref.table_matmul(ref.quantize(scaled, pg), qb.T, pg[1], zb, m.products).astype(F) * pg[0]
    # dW = X_q^T . dY_q, A = X
    pd = ref.minmax_params(dy, signed)
    expected_db = ref.table_matmul(qa.T, ref.quantize(dy, pd), pa[1], pd[1], m.products).astype(F) * (pa[0] * pd[0])
    np.testing.assert_array_equal(da, expected_da)
    np.testing.assert_array_equal(db, expected_db)
    ste_da, ste_db = grads(a, b, dy, multiplier=m, quantization=QuantConfig(granularity=granularity))
    assert not np.array_equal(da, ste_da) and not np.array_equal(db, ste_db)
    # with the exact table, only dY's quantization separates the integer gradients from the STE's
    exact = ref.exact_multiplier(signed)
    ida, idb = grads(
        a, b, dy, multiplier=exact, quantization=QuantConfig(granularity=granularity, integer_backward=True)
    )
    ste_da, ste_db = grads(a, b, dy, multiplier=exact, quantization=QuantConfig(granularity=granularity))
    np.testing.assert_allclose(ida, ste_da, atol=0.02 * np.abs(ste_da).max())
    np.testing.assert_allclose(idb, ste_db, atol=0.02 * np.abs(ste_db).max())


def test_explicit_grad_multipliers():
    """fp32 = native float on the dequantized operands; a float Multiplier = its AM op on them;
    an integer one = integer backward through its own table."""
    a, b, dy = data(3)
    m = ref.exact_multiplier(True)
    other = ref.random_multiplier(True, seed=5)
    cfg = QuantConfig(integer_backward=True)
    da, db = grads(
        a, b, dy, multiplier=m, quantization=cfg, grad_input_multiplier="fp32", grad_weight_multiplier="mbm7"
    )
    pa, pb = ref.minmax_params(a, True), ref.minmax_params(b, True)
    deq_a, deq_b = ref.dequantize(ref.quantize(a, pa), pa), ref.dequantize(ref.quantize(b, pb), pb)
    np.testing.assert_allclose(da, dy @ deq_b.T, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(db, ops.matmul(deq_a, dy, "mbm7", transpose_a=True).numpy())
    _, db_other = grads(a, b, dy, multiplier=m, grad_weight_multiplier=other)
    pd = ref.minmax_params(dy, True)
    expected = ref.table_matmul(ref.quantize(a, pa).T, ref.quantize(dy, pd), 0, 0, other.products)
    np.testing.assert_array_equal(db_other, expected.astype(F) * (pa[0] * pd[0]))


def test_gradients_finite_for_zero_operands():
    a, b, dy = data(4)
    for m in (ref.exact_multiplier(True), ref.exact_multiplier(False)):
        da, db = grads(np.zeros_like(a), b, dy, multiplier=m, quantization=QuantConfig(integer_backward=True))
        assert np.isfinite(da).all() and np.isfinite(db).all()
        np.testing.assert_array_equal(db, 0.0)


def test_mismatched_grad_multiplier_signedness_is_refused():
    a, b, dy = data(5)
    with pytest.raises(ValueError, match="grad_input_multiplier 't8u_exact' is unsigned but the forward"):
        ops.matmul(a, b, ref.exact_multiplier(True), grad_input_multiplier=ref.exact_multiplier(False))


def test_integer_grad_with_float_forward_is_refused():
    a, b, dy = data(6)
    with pytest.raises(ValueError, match="need an integer forward multiplier .* got multiplier='mbm7'"):
        ops.matmul(a, b, "mbm7", grad_weight_multiplier=ref.exact_multiplier(True))
