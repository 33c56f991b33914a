"""approxtrain.ops.matmul with integer multipliers: quantize -> table GEMM -> dequantize, and its gradients.

Every forward is compared bit for bit with tests/tf/_int_reference.py (NumPy, int64 sums of the
table's products); the codes with TensorFlow's fake-quant ops.
"""

import numpy as np
import pytest
import tensorflow as tf

import _int_reference as ref
from approxtrain import ops
from approxtrain.quant import QuantConfig, _gemm

pytestmark = pytest.mark.tf


@pytest.fixture(autouse=True)
def int_gemm(monkeypatch):
    """The table GEMM: helper C1's AMIntMatMul once it exists, the TF gather reference until then."""
    if not ref.have_int_matmul_op():
        monkeypatch.setattr(_gemm, "patterns_matmul", ref.reference_patterns_matmul)


def operands(seed, m=5, k=7, n=4, batch=()):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.2, 1.0, size=(*batch, m, k)).astype(np.float32)
    b = rng.normal(-0.1, 0.5, size=(k, n)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_exact_table_matches_numpy_quantized_integer_matmul(signed, granularity):
    a, b = operands(1)
    m = ref.exact_multiplier(signed)
    y = ops.matmul(a, b, m, quantization=QuantConfig(granularity=granularity)).numpy()
    expected, (pa, pb, qa, qb) = ref.quantized_matmul(a, b, m, per_channel=granularity == "per_channel")
    np.testing.assert_array_equal(y, expected)
    # With the exact table this is the plain integer product of the zero-point-shifted codes.
    plain = (qa - pa[1]) @ (qb - pb[1])
    np.testing.assert_array_equal(y, plain.astype(np.float32) * (pa[0] * pb[0]).astype(np.float32))
    # and close to the float product (8-bit quantization error only)
    np.testing.assert_allclose(y, a @ b, atol=0.08)


@pytest.mark.parametrize("signed", [True, False])
def test_codes_equal_tf_fake_quant(signed):
    """The dequantized operands are TF's fake_quant_with_min_max_vars(_per_channel) outputs: signed =
    narrow_range=True on [-m, m] (m = max|x|), unsigned = narrow_range=False on [min(x, 0), max(x, 0)]."""
    a, b = operands(2)
    m = ref.exact_multiplier(signed)
    _, (pa, pb, qa, qb) = ref.quantized_matmul(a, b, m, per_channel=True)
    if signed:
        top = np.abs(a).max()
        fq_a = tf.quantization.fake_quant_with_min_max_vars(a, -top, top, num_bits=8, narrow_range=True)
        tops = np.abs(b).max(axis=0)
        fq_b = tf.quantization.fake_quant_with_min_max_vars_per_channel(b, -tops, tops, num_bits=8, narrow_range=True)
    else:
        fq_a = tf.quantization.fake_quant_with_min_max_vars(a, min(a.min(), 0), max(a.max(), 0), num_bits=8)
        fq_b = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            b, np.minimum(b.min(axis=0), 0), np.maximum(b.max(axis=0), 0), num_bits=8
        )
    # codes recovered from the fake-quant values (exact: the values are multiples of the scale)
    for fq, p, q in ((fq_a, pa, qa), (fq_b, pb, qb)):
        recovered = np.round((fq.numpy() - p[2]) / p[0]).astype(np.int64) + p[4]
        np.testing.assert_array_equal(recovered, q)
    # and the product equals the float matmul of the fake-quantized operands up to float32 rounding
    y = ops.matmul(a, b, m, quantization=QuantConfig(granularity="per_channel")).numpy()
    np.testing.assert_allclose(y, (fq_a @ fq_b).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("table", ["truncated", "random"])
def test_approximate_table_matches_numpy_and_differs_from_exact(signed, table):
    a, b = operands(3, m=6, k=33, n=5)
    m = ref.truncated_multiplier(signed) if table == "truncated" else ref.random_multiplier(signed)
    y = ops.matmul(a, b, m).numpy()
    expected, _ = ref.quantized_matmul(a, b, m)
    np.testing.assert_array_equal(y, expected)
    exact = ops.matmul(a, b, ref.exact_multiplier(signed)).numpy()
    assert np.mean(y != exact) > 0.5


def test_operand_order_is_table_row_a():
    """A table that is not symmetric: swapping the operands' roles would change the result."""
    a, b = operands(4)
    m = ref.random_multiplier(True, seed=7)
    assert not np.array_equal(m.products, m.products.T)
    y = ops.matmul(a, b, m).numpy()
    expected, _ = ref.quantized_matmul(a, b, m)
    np.testing.assert_array_equal(y, expected)
    _, (pa, pb, qa, qb) = ref.quantized_matmul(a, b, m)
    swapped = ref.table_matmul(qa, qb, 0, 0, m.products.T).astype(np.float32) * (pa[0] * pb[0]).astype(np.float32)
    assert not np.array_equal(swapped, y)


def test_batched_and_transposed():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
    b = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)  # used transposed
    m = ref.random_multiplier(False, seed=3)
    y = ops.matmul(a, b, m, transpose_b=True).numpy()
    expected, _ = ref.quantized_matmul(a, np.swapaxes(b, -1, -2), m)
    np.testing.assert_array_equal(y, expected)


def test_percentile_calibration_clips_the_tails():
    a, b = operands(6, m=20, k=10)
    a[0, 0] = 40.0  # an outlier that min/max calibration would stretch the scale for
    m = ref.exact_multiplier(True)
    y = ops.matmul(a, b, m, quantization=QuantConfig(calibration="percentile", percentile=99.0)).numpy()
    flat = np.sort(np.abs(a).ravel())
    top = flat[int(np.ceil(0.99 * flat.size)) - 1]
    pa = ref.params(-top, top, True)
    pb = ref.minmax_params(b, True)
    qa, qb = ref.quantize(a, pa), ref.quantize(b, pb)
    expected = ref.table_matmul(qa, qb, 0, 0, m.products).astype(np.float32) * (pa[0] * pb[0]).astype(np.float32)
    np.testing.assert_array_equal(y, expected)
    assert qa.max() == 127 and top < 40.0


def test_input_range_is_used_as_given():
    a, b = operands(7)
    m = ref.exact_multiplier(False)
    y = ops.matmul(a, b, m, input_range=(-3.0, 5.0)).numpy()
    pa, pb = ref.params(-3.0, 5.0, False), ref.minmax_params(b, False)
    qa, qb = ref.quantize(a, pa), ref.quantize(b, pb)
    expected = ref.table_matmul(qa, qb, pa[1], pb[1], m.products).astype(np.float32) * (pa[0] * pb[0]).astype(
        np.float32
    )
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("signed", [True, False])
def test_weight_range_is_used_as_given_per_tensor(signed):
    """weight_range (an activation's running range for the right operand, as attention's keys)
    replaces b's own min/max, per tensor even under per-channel granularity."""
    a, b = operands(8)
    m = ref.exact_multiplier(signed)
    config = QuantConfig(granularity="per_channel")
    y = ops.matmul(a, b, m, quantization=config, input_range=(-3.0, 5.0), weight_range=(-2.0, 1.5)).numpy()
    pa, pb = ref.params(-3.0, 5.0, signed), ref.params(-2.0, 1.5, signed)
    qa, qb = ref.quantize(a, pa), ref.quantize(b, pb)
    expected = ref.table_matmul(qa, qb, pa[1], pb[1], m.products).astype(np.float32) * (pa[0] * pb[0]).astype(
        np.float32
    )
    np.testing.assert_array_equal(y, expected)
    assert not np.array_equal(y, ops.matmul(a, b, m, quantization=config, input_range=(-3.0, 5.0)).numpy())
    with pytest.raises(ValueError, match=r"weight_range= .*need an integer forward multiplier.*got multiplier='mbm7'"):
        ops.matmul(a, b, "mbm7", weight_range=(-2.0, 1.5))


def test_long_sums_split_into_int32_safe_chunks(monkeypatch):
    """K = 70000 unsigned products of up to 255*255 overflow int32: the sum is split and done in int64."""
    rng = np.random.default_rng(8)
    a = rng.uniform(0, 1, size=(1, 70000)).astype(np.float32)
    b = rng.uniform(0, 1, size=(70000, 1)).astype(np.float32)
    a[0, :] = 1.0
    b[:, 0] = 1.0
    s = ref.params(0.0, 1.0, False)[0]
    # On the CPU, AMIntMatMulZeroPoint splits K inside the op.
    assert ops.matmul(a, b, ref.exact_multiplier(False)).numpy()[0, 0] == np.float32(70000 * 255 * 255) * (s * s)
    # Where a GPU is, AMIntMatMul per int32-safe chunk, added in int64.
    monkeypatch.setattr(_gemm, "fused_op_usable", lambda: False)
    calls = []
    inner = _gemm.patterns_matmul
    monkeypatch.setattr(_gemm, "patterns_matmul", lambda x, y, p: calls.append(x.shape[-1]) or inner(x, y, p))
    y = ops.matmul(a, b, ref.exact_multiplier(False)).numpy()
    assert len(calls) == 3 and sum(calls) == 70000
    assert y[0, 0] == np.float32(70000 * 255 * 255) * (s * s)


@pytest.mark.parametrize("signed", [True, False])
def test_traced_equals_numpy(signed):
    """Inside a tf.function too (where TF may rewrite a float division an ulp off)."""
    a, b = operands(9, m=16, k=40, n=8)
    m = ref.random_multiplier(signed, seed=9)
    cfg = QuantConfig(granularity="per_channel")
    traced = tf.function(lambda a, b: ops.matmul(a, b, m, quantization=cfg))
    expected, _ = ref.quantized_matmul(a, b, m, per_channel=True)
    np.testing.assert_array_equal(traced(a, b).numpy(), expected)
