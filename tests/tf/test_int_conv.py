"""Convolutions with integer multipliers: im2col + the table GEMM, against a NumPy loop reference."""

import numpy as np
import pytest
import tensorflow as tf

import _int_reference as ref
from _int_reference import reference_conv, windows
from approxtrain import ops
from approxtrain.quant import QuantConfig, _gemm

pytestmark = pytest.mark.tf
F = np.float32


@pytest.fixture(autouse=True)
def int_gemm(monkeypatch):
    if not ref.have_int_matmul_op():
        monkeypatch.setattr(_gemm, "patterns_matmul", ref.reference_patterns_matmul)


def images(seed, shape=(2, 7, 8, 4), wshape=(3, 3, 4, 6)):
    rng = np.random.default_rng(seed)
    return rng.normal(0.3, 1.0, size=shape).astype(F), rng.normal(0.0, 0.3, size=wshape).astype(F)


CASES = {
    "same_stride2": dict(kw=dict(strides=2, padding="SAME"), ref=dict(strides=(2, 2), pads=(1, 1, 0, 1))),
    "valid_dilated": dict(kw=dict(dilations=2, padding="VALID"), ref=dict(dilations=(2, 2))),
    "explicit": dict(kw=dict(padding=[[2, 0], [1, 3]]), ref=dict(pads=(2, 0, 1, 3))),
    "same_dilated_stride": dict(
        kw=dict(strides=(1, 2), dilations=(2, 1), padding="SAME"),
        ref=dict(strides=(1, 2), dilations=(2, 1), pads=(2, 2, 0, 1)),
    ),
}


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv2d_matches_numpy(signed, case):
    x, w = images(1)
    m = ref.random_multiplier(signed, seed=2)
    y = ops.conv2d(x, w, m, **CASES[case]["kw"]).numpy()
    expected, _ = reference_conv(x, w, m, **CASES[case]["ref"])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("signed", [True, False])
def test_grouped_per_channel_conv2d_matches_numpy(signed):
    x, w = images(2, wshape=(3, 2, 2, 6))  # groups = 2
    m = ref.random_multiplier(signed, seed=4)
    cfg = QuantConfig(granularity="per_channel")
    y = ops.conv2d(x, w, m, padding="SAME", quantization=cfg).numpy()
    expected, _ = reference_conv(x, w, m, pads=(1, 1, 0, 1), per_channel=True)
    np.testing.assert_array_equal(y, expected)


def test_exact_signed_conv_equals_float_conv_of_fake_quant_operands():
    """Zero padding is the code of 0, so the integer conv is the float conv of the fake-quantized
    operands (TF's ops), up to float32 rounding of the float sums."""
    x, w = images(3)
    m = ref.exact_multiplier(True)
    y = ops.conv2d(x, w, m, strides=2, padding="SAME").numpy()
    tx, tw = np.abs(x).max(), np.abs(w).max()
    fx = tf.quantization.fake_quant_with_min_max_vars(x, -tx, tx, narrow_range=True)
    fw = tf.quantization.fake_quant_with_min_max_vars(w, -tw, tw, narrow_range=True)
    np.testing.assert_allclose(y, tf.nn.conv2d(fx, fw, 2, "SAME").numpy(), rtol=1e-5, atol=1e-5)


def test_unsigned_padding_uses_the_zero_point():
    """Inputs of both signs put the zero point inside (0, 255): padding with pattern 0 instead of
    the zero point would change every border output."""
    x, w = images(4)
    m = ref.exact_multiplier(False)
    y = ops.conv2d(x, w, m, padding="SAME").numpy()
    px = ref.minmax_params(x, False)
    assert 0 < px[1] < 255
    expected, _ = reference_conv(x, w, m, pads=(1, 1, 1, 1))
    np.testing.assert_array_equal(y, expected)
    fx = tf.quantization.fake_quant_with_min_max_vars(x, min(x.min(), 0), x.max())
    fw = tf.quantization.fake_quant_with_min_max_vars(w, w.min(), w.max())
    np.testing.assert_allclose(y, tf.nn.conv2d(fx, fw, 1, "SAME").numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("signed", [True, False])
def test_depthwise_and_conv1d(signed):
    m = ref.random_multiplier(signed, seed=6)
    x, w = images(5, wshape=(3, 3, 4, 2))
    y = ops.depthwise_conv2d(x, w, m, strides=2, padding="SAME").numpy()
    expected, _ = reference_conv(x, w.reshape(3, 3, 1, 8), m, strides=(2, 2), pads=(1, 1, 0, 1))
    np.testing.assert_array_equal(y, expected)
    rng = np.random.default_rng(7)
    x1, w1 = rng.normal(size=(2, 9, 3)).astype(F), rng.normal(size=(3, 3, 5)).astype(F)
    y1 = ops.conv1d(x1, w1, m, padding="CAUSAL", dilations=2).numpy()
    expected1, _ = reference_conv(x1[:, None], w1[None], m, dilations=(1, 2), pads=(0, 0, 4, 0))
    np.testing.assert_array_equal(y1, expected1[:, 0])


def conv_grads(x, w, dy, **kwargs):
    """dX, dW eagerly; checked against those of a tf.function (batch size unknown when traced): equal
    for integer gradients, within float rounding for the native float ones."""

    def grads(x, w, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.conv2d(x, w, **kwargs)
        return tape.gradient(y, [x, w], output_gradients=dy)

    eager = [g.numpy() for g in grads(tf.constant(x), tf.constant(w), tf.constant(dy))]
    spec = [tf.TensorSpec([None, *x.shape[1:]]), tf.TensorSpec(w.shape), tf.TensorSpec([None, *dy.shape[1:]])]
    traced = [g.numpy() for g in tf.function(grads, input_signature=spec)(x, w, dy)]
    integer = kwargs.get("quantization") is not None and kwargs["quantization"].integer_backward
    for e, t in zip(eager, traced):
        if integer:
            np.testing.assert_array_equal(e, t)
        else:
            np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)
    return eager


@pytest.mark.parametrize("signed", [True, False])
def test_conv_ste_gradients_are_float_conv_gradients_of_dequantized_operands(signed):
    x, w = images(8)
    m = ref.exact_multiplier(signed)
    dy = np.random.default_rng(9).normal(size=(2, 4, 4, 6)).astype(F)
    dx, dw = conv_grads(x, w, dy, multiplier=m, strides=2, padding="SAME")
    _, (px, pw, qx, qw) = reference_conv(x, w, m)
    dqx, dqw = tf.constant(ref.dequantize(qx, px)), tf.constant(ref.dequantize(qw, pw))
    with tf.GradientTape() as tape:
        tape.watch([dqx, dqw])
        y = tf.nn.conv2d(dqx, dqw, 2, "SAME")
    ex, ew = tape.gradient(y, [dqx, dqw], output_gradients=tf.constant(dy))
    np.testing.assert_allclose(dx, ex.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw, ew.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("signed", [True, False])
def test_conv_integer_backward_matches_numpy(signed):
    x, w = images(10, wshape=(3, 3, 2, 6))  # groups = 2
    m = ref.random_multiplier(signed, seed=12)
    dy = np.random.default_rng(11).normal(size=(2, 4, 4, 6)).astype(F)
    cfg = QuantConfig(granularity="per_channel", integer_backward=True)
    dx, dw = conv_grads(x, w, dy, multiplier=m, strides=2, padding="SAME", quantization=cfg)
    pads, kh, kw, cg, o, groups = (1, 1, 0, 1), 3, 3, 2, 6, 2
    og = o // groups
    _, (px, pw, qx, qw) = reference_conv(x, w, m, per_channel=True)
    win, padded_shape = windows(qx, kh, kw, (2, 2), (1, 1), pads, px[1])
    assert win.shape[1:3] == dy.shape[1:3]
    # dW = X^T . dY_q (A = X), per group
    pd = ref.minmax_params(dy, signed)
    qd = ref.quantize(dy, pd).reshape(-1, o)
    expected_dw = np.zeros(w.shape, F)
    for g in range(groups):
        rows = win[..., g * cg : (g + 1) * cg].reshape(-1, kh * kw * cg)
        acc = ref.table_matmul(rows.T, qd[:, g * og : (g + 1) * og], px[1], pd[1], m.products)
        expected_dw[..., g * og : (g + 1) * og] = (acc.astype(F) * (px[0] * pd[0])).reshape(kh, kw, cg, og)
    np.testing.assert_array_equal(dw, expected_dw)
    # dX: dY scaled by the filter's scales, quantized; dPatches = dY_q . W_q^T (A = dY); summed back
    scaled = (dy * pw[0]).astype(F)
    pg = ref.minmax_params(scaled, signed)
    qg = ref.quantize(scaled, pg).reshape(-1, o)
    summed = np.zeros(padded_shape, np.int64)
    n, oh, ow = dy.shape[:3]
    for g in range(groups):
        filt = qw[..., g * og : (g + 1) * og].reshape(kh * kw * cg, og)
        zb = np.broadcast_to(pw[1], (o,))[g * og : (g + 1) * og].reshape(-1, 1)
        d_rows = ref.table_matmul(qg[:, g * og : (g + 1) * og], filt.T, pg[1], zb, m.products)
        d_rows = d_rows.reshape(n, oh, ow, kh, kw, cg)
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        summed[:, i * 2 + a, j * 2 + b, g * cg : (g + 1) * cg] += d_rows[:, i, j, a, b]
    expected_dx = summed[:, 1 : 1 + x.shape[1], : x.shape[2]].astype(F) * pg[0]
    np.testing.assert_array_equal(dx, expected_dx)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()


def reference_conv3d(x, w, m, strides, pads, per_channel=False):
    """Per output depth and depth tap, the 2-D loop reference's integer sums, added in int64."""
    kd_, kh, kw, cg, o = w.shape
    px, pw = ref.minmax_params(x, m.signed), ref.minmax_params(w, m.signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(w, pw)
    (front, back), plane_pads = pads[0], pads[1:]
    xp = np.pad(qx, ((0, 0), (front, back), (0, 0), (0, 0), (0, 0)), constant_values=px[1])
    out_depth = (xp.shape[1] - kd_) // strides[0] + 1
    zw = np.broadcast_to(pw[1], (o,))
    total = None
    for d in range(out_depth):
        acc = 0
        for kd in range(kd_):
            win, _ = windows(xp[:, d * strides[0] + kd], kh, kw, strides[1:], (1, 1), plane_pads, px[1])
            n, oh, ow = win.shape[:3]
            rows = win.reshape(-1, kh * kw * cg)
            acc = acc + ref.table_matmul(rows, qw[kd].reshape(-1, o), px[1], zw, m.products).reshape(n, oh, ow, o)
        total = acc[:, None] if total is None else np.concatenate([total, acc[:, None]], 1)
    return total.astype(F) * (px[0] * pw[0]).astype(F), (px, pw, qx, qw)


@pytest.mark.parametrize("signed", [True, False])
def test_conv3d_matches_numpy_and_fake_quant(signed):
    rng = np.random.default_rng(13)
    x, w = rng.normal(0.2, 1, size=(2, 5, 6, 6, 2)).astype(F), rng.normal(0, 0.3, size=(3, 3, 3, 2, 4)).astype(F)
    m = ref.random_multiplier(signed, seed=14)
    cfg = QuantConfig(granularity="per_channel")
    y = ops.conv3d(x, w, m, strides=(2, 1, 2), padding="SAME", quantization=cfg).numpy()
    expected, _ = reference_conv3d(x, w, m, (2, 1, 2), ((1, 1), 1, 1, 0, 1), per_channel=True)
    np.testing.assert_array_equal(y, expected)
    exact = ref.exact_multiplier(signed)
    tx, tw = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([tx, tw])
        y = ops.conv3d(tx, tw, exact, strides=(2, 1, 2), padding="SAME")
    dx, dw = tape.gradient(y, [tx, tw])
    _, (px, pw, qx, qw) = reference_conv3d(x, w, exact, (2, 1, 2), ((1, 1), 1, 1, 0, 1))
    cx, cw = tf.constant(ref.dequantize(qx, px)), tf.constant(ref.dequantize(qw, pw))
    with tf.GradientTape() as tape:
        tape.watch([cx, cw])
        native = tf.nn.conv3d(cx, cw, [1, 2, 1, 2, 1], "SAME")
    ex, ew = tape.gradient(native, [cx, cw])
    np.testing.assert_allclose(y.numpy(), native.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), ex.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw.numpy(), ew.numpy(), rtol=1e-5, atol=1e-5)
