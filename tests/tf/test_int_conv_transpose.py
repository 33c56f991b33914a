"""Transposed convolutions with integer multipliers, against a NumPy scatter reference."""

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


def reference_conv_transpose(x, w, m, out_shape, strides, pads, dilations=(1, 1), per_channel=False):
    """Every input pixel's table products scattered onto the (padded) output, in int64."""
    kh, kw, o, c = w.shape
    wt = w.transpose(0, 1, 3, 2)  # [KH, KW, C, O]
    px, pw = ref.minmax_params(x, m.signed), ref.minmax_params(wt, m.signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(wt, pw)
    zx, zw = px[1], np.broadcast_to(pw[1], (o,))
    top, bottom, left, right = pads
    n, h, width, _ = x.shape
    _, oh, ow, _ = out_shape
    (sh, sw), (dh, dw) = strides, dilations
    table = m.products.astype(np.int64)
    padded = np.zeros((n, oh + top + bottom, ow + left + right, o), np.int64)
    for i in range(h):
        for j in range(width):
            for a in range(kh):
                for b in range(kw):
                    qa, qb = qx[:, i, j, :, None], qw[a, b][None]  # [n, c, 1], [1, c, o]
                    terms = table[qa & 255, qb & 255] - qa * zw - zx * qb + zx * zw
                    padded[:, i * sh + a * dh, j * sw + b * dw, :] += terms.sum(axis=1)
    y = padded[:, top : top + oh, left : left + ow]
    return y.astype(F) * (px[0] * pw[0]).astype(F), (px, pw, qx, qw)


def data(seed, xshape=(2, 4, 5, 3), wshape=(3, 3, 4, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(0.2, 1.0, size=xshape).astype(F), rng.normal(0.0, 0.4, size=wshape).astype(F)


CASES = {
    "same_stride2": dict(
        out=(2, 8, 10, 4), kw=dict(strides=2, padding="SAME"), ref=dict(strides=(2, 2), pads=(0, 1, 0, 1))
    ),
    "valid": dict(out=(2, 6, 7, 4), kw=dict(padding="VALID"), ref=dict(strides=(1, 1), pads=(0, 0, 0, 0))),
    "valid_dilated": dict(
        out=(2, 8, 9, 4),
        kw=dict(padding="VALID", dilations=2),
        ref=dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(2, 2)),
    ),
}


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv2d_transpose_matches_numpy(signed, case):
    x, w = data(1)
    m = ref.random_multiplier(signed, seed=3)
    spec = CASES[case]
    cfg = QuantConfig(granularity="per_channel")
    y = ops.conv2d_transpose(x, w, m, spec["out"], quantization=cfg, **spec["kw"]).numpy()
    expected, _ = reference_conv_transpose(x, w, m, spec["out"], per_channel=True, **spec["ref"])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("signed", [True, False])
def test_exact_table_equals_float_conv_transpose_of_fake_quant_operands(signed):
    x, w = data(2)
    m = ref.exact_multiplier(signed)
    y = ops.conv2d_transpose(x, w, m, (2, 8, 10, 4), strides=2, padding="SAME").numpy()
    _, (px, pw, qx, qw) = reference_conv_transpose(x, w, m, (2, 8, 10, 4), (2, 2), (0, 1, 0, 1))
    dqx, dqw = ref.dequantize(qx, px), ref.dequantize(qw, pw).transpose(0, 1, 3, 2)
    expected = tf.nn.conv2d_transpose(dqx, dqw, (2, 8, 10, 4), 2, "SAME").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # STE gradients: those of the float transposed conv of the dequantized operands
    tx, tw, dy = tf.constant(x), tf.constant(w), tf.constant(np.ones((2, 8, 10, 4), F))
    with tf.GradientTape() as tape:
        tape.watch([tx, tw])
        out = ops.conv2d_transpose(tx, tw, m, (2, 8, 10, 4), strides=2, padding="SAME")
    dx, dw = tape.gradient(out, [tx, tw], output_gradients=dy)
    cx, cw = tf.constant(dqx), tf.constant(dqw)
    with tf.GradientTape() as tape:
        tape.watch([cx, cw])
        out = tf.nn.conv2d_transpose(cx, cw, (2, 8, 10, 4), 2, "SAME")
    ex, ew = tape.gradient(out, [cx, cw], output_gradients=dy)
    np.testing.assert_allclose(dx.numpy(), ex.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw.numpy(), ew.numpy(), rtol=1e-5, atol=1e-5)


def test_conv1d_transpose_and_traced():
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(2, 5, 3)).astype(F), rng.normal(size=(3, 2, 3)).astype(F)
    m = ref.random_multiplier(True, seed=5)
    y = ops.conv1d_transpose(x, w, m, (2, 10, 2), strides=2, padding="SAME").numpy()
    expected, _ = reference_conv_transpose(x[:, None], w[None], m, (2, 1, 10, 2), (1, 2), (0, 0, 0, 1))
    np.testing.assert_array_equal(y, expected[:, 0])
    spec = [tf.TensorSpec([None, 5, 3]), tf.TensorSpec([3, 2, 3])]
    traced = tf.function(
        lambda x, w: ops.conv1d_transpose(x, w, m, tf.stack([tf.shape(x)[0], 10, 2]), strides=2, padding="SAME"),
        input_signature=spec,
    )
    np.testing.assert_array_equal(traced(x, w).numpy(), y)


def test_conv2d_transpose_layer_matches_numpy_and_trains():
    import keras

    from approxtrain import layers

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 4, 5, 3)).astype(F)
    m = ref.random_multiplier(False, seed=8)
    layer = layers.AMConv2DTranspose(4, 3, strides=2, padding="same", multiplier=m, use_bias=False)
    y = layer(x).numpy()
    expected, _ = reference_conv_transpose(x, layer.kernel.numpy(), m, (2, 8, 10, 4), (2, 2), (0, 1, 0, 1))
    np.testing.assert_array_equal(y, expected)
    model = keras.Sequential([keras.Input((4, 5, 3)), layers.AMConv2DTranspose(2, 3, strides=2, multiplier=m)])
    model.compile("sgd", "mse")
    loss = model.fit(x, rng.normal(size=(2, 9, 11, 2)).astype(F), epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss).all()


def reference_conv3d_transpose(x, w, m, out_shape, strides, pads, per_channel=False):
    kd, kh, kw, o, c = w.shape
    wt = w.transpose(0, 1, 2, 4, 3)  # [KD, KH, KW, C, O]
    px, pw = ref.minmax_params(x, m.signed), ref.minmax_params(wt, m.signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(wt, pw)
    zx, zw = px[1], np.broadcast_to(pw[1], (o,))
    front, back, top, bottom, left, right = pads
    n, depth, h, width, _ = x.shape
    _, od, oh, ow, _ = out_shape
    table = m.products.astype(np.int64)
    padded = np.zeros((n, od + front + back, oh + top + bottom, ow + left + right, o), np.int64)
    for d in range(depth):
        for i in range(h):
            for j in range(width):
                for a in range(kd):
                    for b in range(kh):
                        for e in range(kw):
                            qa, qb = qx[:, d, i, j, :, None], qw[a, b, e][None]
                            terms = table[qa & 255, qb & 255] - qa * zw - zx * qb + zx * zw
                            padded[:, d * strides[0] + a, i * strides[1] + b, j * strides[2] + e] += terms.sum(axis=1)
    y = padded[:, front : front + od, top : top + oh, left : left + ow]
    return y.astype(F) * (px[0] * pw[0]).astype(F), (px, pw, qx, qw)


@pytest.mark.parametrize("signed", [True, False])
def test_conv3d_transpose_matches_numpy(signed):
    rng = np.random.default_rng(9)
    x, w = rng.normal(0.2, 1, size=(2, 3, 3, 4, 2)).astype(F), rng.normal(0, 0.4, size=(3, 3, 3, 4, 2)).astype(F)
    m = ref.random_multiplier(signed, seed=10)
    cfg = QuantConfig(granularity="per_channel")
    y = ops.conv3d_transpose(x, w, m, (2, 6, 6, 8, 4), strides=2, padding="SAME", quantization=cfg).numpy()
    expected, _ = reference_conv3d_transpose(x, w, m, (2, 6, 6, 8, 4), (2, 2, 2), (0, 1, 0, 1, 0, 1), True)
    np.testing.assert_array_equal(y, expected)
    y = ops.conv3d_transpose(x, w, m, (2, 5, 5, 6, 4), padding="VALID").numpy()
    expected, (px, pw, qx, qw) = reference_conv3d_transpose(x, w, m, (2, 5, 5, 6, 4), (1, 1, 1), (0,) * 6)
    np.testing.assert_array_equal(y, expected)


def test_exact_conv3d_transpose_equals_float_of_fake_quant_operands():
    rng = np.random.default_rng(11)
    x, w = rng.normal(size=(2, 3, 3, 4, 2)).astype(F), rng.normal(size=(3, 3, 3, 4, 2)).astype(F)
    m = ref.exact_multiplier(False)
    y = ops.conv3d_transpose(x, w, m, (2, 6, 6, 8, 4), strides=2, padding="SAME").numpy()
    _, (px, pw, qx, qw) = reference_conv3d_transpose(x, w, m, (2, 6, 6, 8, 4), (2, 2, 2), (0, 1, 0, 1, 0, 1))
    dqx, dqw = ref.dequantize(qx, px), ref.dequantize(qw, pw).transpose(0, 1, 2, 4, 3)
    expected = tf.nn.conv3d_transpose(dqx, dqw, (2, 6, 6, 8, 4), 2, "SAME").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conv3d_transpose_layer():
    from approxtrain import layers

    x = np.random.default_rng(12).normal(size=(2, 3, 3, 4, 2)).astype(F)
    m = ref.random_multiplier(True, seed=13)
    layer = layers.AMConv3DTranspose(4, 3, strides=2, padding="same", multiplier=m, use_bias=False)
    y = layer(x).numpy()
    kernel = layer.kernel.numpy()
    expected, _ = reference_conv3d_transpose(x, kernel, m, (2, 6, 6, 8, 4), (2, 2, 2), (0, 1, 0, 1, 0, 1))
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv3d", "conv3d_transpose"])
def test_3d_ste_gradients_are_float_gradients_of_dequantized_operands(transposed):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 4, 4, 3)).astype(F)
    w = rng.normal(size=(2, 2, 2, 3, 3)).astype(F)  # [KD, KH, KW, in, out] (transposed: [.., out, in])
    m = ref.exact_multiplier(True)
    out_shape = (2, 6, 8, 8, 3)

    def run(op, a, b):
        a, b = tf.constant(a), tf.constant(b)
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = op(a, b)
        return tape.gradient(y, [a, b], output_gradients=tf.ones_like(y))

    if transposed:
        ours = run(lambda a, b: ops.conv3d_transpose(a, b, m, out_shape, strides=2, padding="SAME"), x, w)
        native = lambda a, b: tf.nn.conv3d_transpose(a, b, out_shape, (1, 2, 2, 2, 1), "SAME")  # noqa: E731
    else:
        ours = run(lambda a, b: ops.conv3d(a, b, m, padding="SAME"), x, w)
        native = lambda a, b: tf.nn.conv3d(a, b, (1, 1, 1, 1, 1), "SAME")  # noqa: E731
    dq = [ref.dequantize(ref.quantize(v, p), p) for v in (x, w) for p in [ref.minmax_params(v, m.signed)]]
    expected = run(native, *dq)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "op, x_spec, w_shape, out_sizes",
    [
        ("conv2d_transpose", [2, None, None, 3], (3, 3, 4, 3), [2, 8, 8, 4]),
        ("conv3d_transpose", [2, 3, None, None, 2], (3, 3, 3, 4, 2), [2, 6, 6, 8, 4]),
    ],
)
def test_integer_transposed_convs_need_static_sizes(op, x_spec, w_shape, out_sizes):
    """Traced with unknown spatial sizes, the integer lowering (planned in Python) cannot run:
    the user sees which sizes are missing, never a float fallback."""
    w = tf.constant(np.zeros(w_shape, F))

    @tf.function(input_signature=[tf.TensorSpec(x_spec, tf.float32)])
    def transposed(x):
        return getattr(ops, op)(x, w, "mul8s_exact", out_sizes, strides=2, padding="SAME")

    with pytest.raises(ValueError, match=rf"{op} with an integer multiplier needs static spatial and channel sizes"):
        transposed.get_concrete_function()
