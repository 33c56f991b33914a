"""Integer gradients of the transposed and 3-D convolutions and of broadcast matmuls, bit for bit
against NumPy references written from docs/integer.md ("Backward"): dY quantized per tensor by its
min/max (for dX after the weights' per-channel scales are folded in), every product of two codes
looked up in the table, the zero-point corrections and all sums in int64, one scale at the end."""

import numpy as np
import pytest
import tensorflow as tf

import _int_reference as ref
from approxtrain import layers, ops
from approxtrain.quant import QuantConfig, _gemm

pytestmark = pytest.mark.tf
F = np.float32
INTEGER = QuantConfig(integer_backward=True)
PER_CHANNEL = QuantConfig(granularity="per_channel", integer_backward=True)


@pytest.fixture(autouse=True)
def int_gemm(monkeypatch, tmp_path):
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path / "home"))  # shipped tables only
    if not ref.have_int_matmul_op():
        monkeypatch.setattr(_gemm, "patterns_matmul", ref.reference_patterns_matmul)


def shipped(name):
    from approxtrain.quant import resolve_any

    return resolve_any(name)


def terms(qa, qb, za, zb, table):
    """(qa - za)(qb - zb) elementwise (broadcast) with the product of the codes from the table, int64."""
    qa, qb = np.asarray(qa, np.int64), np.asarray(qb, np.int64)
    return table.astype(np.int64)[qa & 255, qb & 255] - qa * zb - za * qb + za * zb


def gradients(op, x, w, dy):
    tx, tw = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([tx, tw])
        y = op(tx, tw)
    assert y.shape == dy.shape
    dx, dw = tape.gradient(y, [tx, tw], output_gradients=tf.constant(dy))
    return dx.numpy(), dw.numpy()


def grad_codes(dy, signed, weight_scale=None):
    """dY's codes and params: per tensor by its min/max, after the weights' scales for an input gradient."""
    g = (dy * weight_scale).astype(F) if weight_scale is not None else dy
    p = ref.minmax_params(g, signed)
    return ref.quantize(g, p), p


# --- matmul with broadcast batch axes -----------------------------------------------------------


def reference_matmul_grads(a, b, dy, m, per_channel):
    """dA, dB: per output batch index the integer GEMMs, summed over the axes the operand is
    broadcast over in int64, then scaled."""
    signed, table = m.signed, m.products
    pa, pb = ref.minmax_params(a, signed), ref.minmax_params(b, signed, per_channel)
    qa, qb = ref.quantize(a, pa), ref.quantize(b, pb)
    batch = dy.shape[:-2]
    qa_full = np.broadcast_to(qa, batch + qa.shape[-2:])
    qb_full = np.broadcast_to(qb, batch + qb.shape[-2:])
    zb = np.broadcast_to(pb[1], (b.shape[-1],))
    qg, pg = grad_codes(dy, signed, pb[0])
    # dA[..., i, k] = sum_n (qg[..., i, n] - zg)(qb[..., k, n] - zb[n])
    da = terms(qg[..., :, None, :], qb_full[..., None, :, :], pg[1], zb, table).sum(-1)
    qd, pd = grad_codes(dy, signed)
    # dB[..., k, n] = sum_i (qa[..., i, k] - za)(qd[..., i, n] - zd)
    db = terms(qa_full[..., :, :, None], qd[..., :, None, :], pa[1], pd[1], table).sum(-3)

    def summed_to(acc, shape):
        lead = acc.ndim - len(shape)
        acc = acc.sum(axis=tuple(range(lead)))
        axes = tuple(i for i, d in enumerate(shape[:-2]) if d == 1 and acc.shape[i] != 1)
        return acc.sum(axis=axes, keepdims=True).reshape(shape)

    return (
        summed_to(da, a.shape).astype(F) * pg[0],
        summed_to(db, b.shape).astype(F) * (pa[0] * pd[0]),
    )


BROADCASTS = {
    "a_rank2": ((4, 5), (2, 5, 6)),
    "b_size1_axis": ((2, 3, 4, 5), (3, 5, 6)),
    "both": ((2, 1, 4, 5), (1, 3, 5, 6)),
}


@pytest.mark.parametrize("name", ["mul8s_exact", "mul8u_trunc4", "mul8s_mitchell"])
@pytest.mark.parametrize("case", sorted(BROADCASTS))
def test_broadcast_matmul_integer_gradients_match_numpy(case, name):
    sa, sb = BROADCASTS[case]
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, size=sa).astype(F), rng.normal(0, 0.4, size=sb).astype(F)
    dy = rng.normal(0, 0.01, size=np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])).astype(F)
    m = shipped(name)
    per_channel = name == "mul8u_trunc4"
    cfg = PER_CHANNEL if per_channel else INTEGER
    da, db = gradients(lambda x, w: ops.matmul(x, w, m, quantization=cfg), a, b, dy)
    expected_da, expected_db = reference_matmul_grads(a, b, dy, m, per_channel)
    np.testing.assert_array_equal(da, expected_da)
    np.testing.assert_array_equal(db, expected_db)
    assert np.isfinite(da).all() and np.isfinite(db).all()


def test_broadcast_matmul_traced_with_unknown_batch():
    """A run-time batch size: the broadcast axes are found when the graph runs; same bits as eagerly."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 4, 5)).astype(F), rng.normal(size=(1, 5, 6)).astype(F)
    dy = rng.normal(size=(3, 4, 6)).astype(F)
    m = shipped("mul8u_trunc4")

    def grads(a, b, dy):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = ops.matmul(a, b, m, quantization=INTEGER)
        return tape.gradient(y, [a, b], output_gradients=dy)

    spec = [tf.TensorSpec([None, 4, 5]), tf.TensorSpec([None, 5, 6]), tf.TensorSpec([None, 4, 6])]
    traced = [g.numpy() for g in tf.function(grads, input_signature=spec)(a, b, dy)]
    expected = reference_matmul_grads(a, b, dy, m, False)
    for got, want in zip(traced, expected):
        np.testing.assert_array_equal(got, want)


# --- conv2d_transpose ------------------------------------------------------------------------


def reference_transposed_grads(x, w, dy, m, strides, pads, dilations=(1, 1), per_channel=False):
    """x [N, H, W, C], w [KH, KW, O, C], dy [N, OH, OW, O]; pads of the conv it transposes
    (dY's plane -> x's).  dX: the conv of dY by w; dW: x against the windows of dY."""
    signed, table = m.signed, m.products
    kh, kw, o, c = w.shape
    wt = w.transpose(0, 1, 3, 2)
    px, pw = ref.minmax_params(x, signed), ref.minmax_params(wt, signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(wt, pw).transpose(0, 1, 3, 2)  # qw [KH, KW, O, C]
    zw = np.broadcast_to(pw[1], (o,))
    qg, pg = grad_codes(dy, signed, pw[0])
    win, _ = ref.windows(qg, kh, kw, strides, dilations, pads, pg[1])  # [N, H, W, KH, KW, O]
    assert win.shape[1:3] == x.shape[1:3]
    dx = terms(win[..., None], qw, pg[1], zw[:, None], table).sum(axis=(3, 4, 5))
    qd, pd = grad_codes(dy, signed)
    win, _ = ref.windows(qd, kh, kw, strides, dilations, pads, pd[1])
    dw = terms(qx[:, :, :, None, None, None, :], win[..., None], px[1], pd[1], table).sum(axis=(0, 1, 2))
    return dx.astype(F) * pg[0], dw.astype(F) * (px[0] * pd[0])


TRANSPOSED = {
    "same_stride2": dict(out=(2, 8, 10, 4), kw=dict(strides=2, padding="SAME"), ref=((2, 2), (0, 1, 0, 1))),
    "valid": dict(out=(2, 6, 7, 4), kw=dict(padding="VALID"), ref=((1, 1), (0, 0, 0, 0))),
    "valid_dilated": dict(out=(2, 8, 9, 4), kw=dict(padding="VALID", dilations=2), ref=((1, 1), (0, 0, 0, 0), (2, 2))),
}


@pytest.mark.parametrize("name", ["mul8s_exact", "mul8u_trunc4"])
@pytest.mark.parametrize("case", sorted(TRANSPOSED))
def test_conv2d_transpose_integer_gradients_match_numpy(case, name):
    rng = np.random.default_rng(3)
    x, w = rng.normal(0.2, 1, size=(2, 4, 5, 3)).astype(F), rng.normal(0, 0.4, size=(3, 3, 4, 3)).astype(F)
    spec = TRANSPOSED[case]
    dy = rng.normal(0, 0.01, size=spec["out"]).astype(F)
    m = shipped(name)
    dx, dw = gradients(
        lambda a, b: ops.conv2d_transpose(a, b, m, spec["out"], quantization=PER_CHANNEL, **spec["kw"]), x, w, dy
    )
    expected_dx, expected_dw = reference_transposed_grads(x, w, dy, m, *spec["ref"], per_channel=True)
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(dw, expected_dw)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()


def test_conv2d_transpose_approximate_table_changes_integer_gradients():
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(2, 4, 5, 3)).astype(F), rng.normal(size=(3, 3, 4, 3)).astype(F)
    dy = rng.normal(size=(2, 8, 10, 4)).astype(F)
    out = {}
    for name in ("mul8s_exact", "mul8s_mitchell"):
        m = shipped(name)
        op = lambda a, b: ops.conv2d_transpose(a, b, m, (2, 8, 10, 4), strides=2, padding="SAME", quantization=INTEGER)  # noqa: E731
        out[name] = gradients(op, x, w, dy)
        expected = reference_transposed_grads(x, w, dy, m, (2, 2), (0, 1, 0, 1))
        for got, want in zip(out[name], expected):
            np.testing.assert_array_equal(got, want)
            assert np.isfinite(got).all()
    for exact, approximate in zip(out["mul8s_exact"], out["mul8s_mitchell"]):
        assert not np.array_equal(exact, approximate)


def test_conv1d_transpose_integer_grad_multipliers_and_traced():
    """Integer grad multipliers given explicitly (the forward table different), and a tf.function
    with a run-time batch: the bits of the reference."""
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(2, 5, 3)).astype(F), rng.normal(size=(3, 2, 3)).astype(F)
    dy = rng.normal(size=(2, 10, 2)).astype(F)
    forward, backward = shipped("mul8s_exact"), shipped("mul8s_mitchell")
    kwargs = dict(strides=2, padding="SAME", grad_input_multiplier=backward, grad_weight_multiplier=backward)

    def grads(a, b, g):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = ops.conv1d_transpose(a, b, forward, tf.stack([tf.shape(a)[0], 10, 2]), **kwargs)
        return tape.gradient(y, [a, b], output_gradients=g)

    spec = [tf.TensorSpec([None, 5, 3]), tf.TensorSpec([3, 2, 3]), tf.TensorSpec([None, 10, 2])]
    traced = tf.function(grads, input_signature=spec)(x, w, dy)
    eager = grads(tf.constant(x), tf.constant(w), tf.constant(dy))
    ex, ew = reference_transposed_grads(x[:, None], w[None], dy[:, None], backward, (1, 2), (0, 0, 0, 1))
    for got in (traced, eager):
        np.testing.assert_array_equal(got[0].numpy(), ex[:, 0])
        np.testing.assert_array_equal(got[1].numpy(), ew[0])


# --- conv3d --------------------------------------------------------------------------------


def reference_conv3d_grads(x, w, dy, m, strides, pads, per_channel=False, dilations=(1, 1, 1)):
    """conv3d's integer gradients by explicit loops over output depth, depth tap and window."""
    signed, table = m.signed, m.products
    kd_, kh, kw, c, o = w.shape
    px, pw = ref.minmax_params(x, signed), ref.minmax_params(w, signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(w, pw)
    zw = np.broadcast_to(pw[1], (o,))
    (front, back), plane_pads = pads[0], pads[1:]
    xp = np.pad(qx, ((0, 0), (front, back), (0, 0), (0, 0), (0, 0)), constant_values=px[1])
    n, od, oh, ow, _ = dy.shape
    qg, pg = grad_codes(dy, signed, pw[0])
    qd, pd = grad_codes(dy, signed)
    top, _, left, _ = plane_pads
    dx_padded = np.zeros((n, xp.shape[1], x.shape[2] + sum(plane_pads[:2]), x.shape[3] + sum(plane_pads[2:]), c))
    dx_padded = dx_padded.astype(np.int64)
    dw = np.zeros(w.shape, np.int64)
    for d in range(od):
        for kd in range(kd_):
            depth = d * strides[0] + kd * dilations[0]
            win, _ = ref.windows(
                xp[:, depth], kh, kw, strides[1:], dilations[1:], plane_pads, px[1]
            )  # [n, oh, ow, kh, kw, c]
            dw[kd] += terms(win[..., None], qd[:, d, :, :, None, None, None, :], px[1], pd[1], table).sum(
                axis=(0, 1, 2)
            )
            # dX: every output position's dY times the tap's weights, onto the window it read
            d_win = terms(qg[:, d, :, :, None, None, None, :], qw[kd], pg[1], zw, table).sum(
                -1
            )  # [n, oh, ow, kh, kw, c]
            for i in range(oh):
                for j in range(ow):
                    for a in range(kh):
                        for b in range(kw):
                            at = (i * strides[1] + a * dilations[1], j * strides[2] + b * dilations[2])
                            dx_padded[:, depth, at[0], at[1]] += d_win[:, i, j, a, b]
    dx = dx_padded[:, front : front + x.shape[1], top : top + x.shape[2], left : left + x.shape[3]]
    return dx.astype(F) * pg[0], dw.astype(F) * (px[0] * pd[0])


CONV3D = {
    "same": dict(kw=dict(padding="SAME"), strides=(1, 1, 1), pads=((0, 1), 1, 1, 1, 1)),
    "valid_stride2": dict(kw=dict(padding="VALID", strides=2), strides=(2, 2, 2), pads=((0, 0), 0, 0, 0, 0)),
    "same_dilated": dict(
        kw=dict(padding="SAME", dilations=(2, 1, 2)),
        strides=(1, 1, 1),
        pads=((1, 1), 1, 1, 2, 2),
        dilations=(2, 1, 2),
    ),
}


@pytest.mark.parametrize("name", ["mul8s_exact", "mul8u_trunc4"])
@pytest.mark.parametrize("case", sorted(CONV3D))
def test_conv3d_integer_gradients_match_numpy(case, name):
    rng = np.random.default_rng(6)
    x, w = rng.normal(0.2, 1, size=(2, 3, 5, 5, 3)).astype(F), rng.normal(0, 0.4, size=(2, 3, 3, 3, 4)).astype(F)
    spec = CONV3D[case]
    m = shipped(name)
    y = ops.conv3d(x, w, m, **spec["kw"])
    dy = rng.normal(0, 0.01, size=y.shape).astype(F)
    dx, dw = gradients(lambda a, b: ops.conv3d(a, b, m, quantization=PER_CHANNEL, **spec["kw"]), x, w, dy)
    expected_dx, expected_dw = reference_conv3d_grads(
        x, w, dy, m, spec["strides"], spec["pads"], per_channel=True, dilations=spec.get("dilations", (1, 1, 1))
    )
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(dw, expected_dw)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()


def test_conv3d_approximate_table_changes_integer_gradients():
    rng = np.random.default_rng(7)
    x, w = rng.normal(size=(1, 3, 4, 4, 2)).astype(F), rng.normal(size=(2, 2, 2, 2, 3)).astype(F)
    dy = rng.normal(size=(1, 3, 4, 4, 3)).astype(F)
    out = {}
    for name in ("mul8u_exact", "mul8u_trunc4"):
        m = shipped(name)
        out[name] = gradients(lambda a, b: ops.conv3d(a, b, m, padding="SAME", quantization=INTEGER), x, w, dy)
        expected = reference_conv3d_grads(x, w, dy, m, (1, 1, 1), ((0, 1), 0, 1, 0, 1))
        for got, want in zip(out[name], expected):
            np.testing.assert_array_equal(got, want)
    for exact, approximate in zip(out["mul8u_exact"], out["mul8u_trunc4"]):
        assert not np.array_equal(exact, approximate)


def test_grouped_conv3d_of_one_depth_tap_is_conv2d():
    """Depth 1 and a one-tap filter: conv3d's integer gradients are conv2d's (grouped, per-channel,
    unsigned; conv2d's are checked against their own reference in test_int_conv.py), bit for bit."""
    rng = np.random.default_rng(12)
    x, w = rng.normal(0.3, 1, size=(2, 1, 6, 7, 4)).astype(F), rng.normal(0, 0.3, size=(1, 3, 3, 2, 6)).astype(F)
    dy = rng.normal(size=(2, 1, 3, 4, 6)).astype(F)
    m = shipped("mul8u_trunc4")
    kwargs = dict(strides=(1, 2, 2), padding="SAME", groups=2, quantization=PER_CHANNEL)
    dx, dw = gradients(lambda a, b: ops.conv3d(a, b, m, **kwargs), x, w, dy)
    kwargs2 = dict(strides=2, padding="SAME", quantization=PER_CHANNEL)
    dx2, dw2 = gradients(lambda a, b: ops.conv2d(a, b, m, **kwargs2), x[:, 0], w[0], dy[:, 0])
    np.testing.assert_array_equal(dx[:, 0], dx2)
    np.testing.assert_array_equal(dw[0], dw2)
    assert np.abs(dx).max() > 0 and np.abs(dw).max() > 0


# --- conv3d_transpose ------------------------------------------------------------------------


def reference_conv3d_transpose_grads(x, w, dy, m, strides, pads, per_channel=False):
    """x [N, D, H, W, C], w [KD, KH, KW, O, C], dy [N, OD, OH, OW, O]; pads (front, back, top,
    bottom, left, right) of the conv it transposes.  dX[n, d, i, j, c] and dW by explicit loops
    over the windows of the padded dY."""
    signed, table = m.signed, m.products
    kd_, kh, kw, o, c = w.shape
    wt = w.transpose(0, 1, 2, 4, 3)
    px, pw = ref.minmax_params(x, signed), ref.minmax_params(wt, signed, per_channel)
    qx, qw = ref.quantize(x, px), ref.quantize(wt, pw).transpose(0, 1, 2, 4, 3)
    zw = np.broadcast_to(pw[1], (o,))
    qg, pg = grad_codes(dy, signed, pw[0])
    qd, pd = grad_codes(dy, signed)
    front, back, top, bottom, left, right = pads
    width = ((0, 0), (front, back), (top, bottom), (left, right), (0, 0))
    gp, dp = np.pad(qg, width, constant_values=pg[1]), np.pad(qd, width, constant_values=pd[1])
    n, depth, h, wd, _ = x.shape
    dx = np.zeros(x.shape, np.int64)
    dw = np.zeros(w.shape, np.int64)
    for d in range(depth):
        for i in range(h):
            for j in range(wd):
                for a in range(kd_):
                    for b in range(kh):
                        for e in range(kw):
                            at = (d * strides[0] + a, i * strides[1] + b, j * strides[2] + e)
                            g = gp[:, at[0], at[1], at[2]]  # [n, o]
                            dx[:, d, i, j] += terms(g[:, :, None], qw[a, b, e], pg[1], zw[:, None], table).sum(1)
                            q = dp[:, at[0], at[1], at[2]]
                            dw[a, b, e] += terms(qx[:, d, i, j, None, :], q[:, :, None], px[1], pd[1], table).sum(0)
    return dx.astype(F) * pg[0], dw.astype(F) * (px[0] * pd[0])


@pytest.mark.parametrize("name", ["mul8s_exact", "mul8u_trunc4", "mul8s_mitchell"])
def test_conv3d_transpose_integer_gradients_match_numpy(name):
    rng = np.random.default_rng(8)
    x, w = rng.normal(0.2, 1, size=(2, 3, 3, 4, 2)).astype(F), rng.normal(0, 0.4, size=(3, 3, 3, 4, 2)).astype(F)
    out = (2, 6, 6, 8, 4)
    dy = rng.normal(0, 0.01, size=out).astype(F)
    m = shipped(name)
    dx, dw = gradients(
        lambda a, b: ops.conv3d_transpose(a, b, m, out, strides=2, padding="SAME", quantization=PER_CHANNEL), x, w, dy
    )
    expected_dx, expected_dw = reference_conv3d_transpose_grads(x, w, dy, m, (2, 2, 2), (0, 1, 0, 1, 0, 1), True)
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(dw, expected_dw)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()
    if name == "mul8s_mitchell":
        exact = shipped("mul8s_exact")
        ex, ew = gradients(
            lambda a, b: ops.conv3d_transpose(a, b, exact, out, strides=2, padding="SAME", quantization=PER_CHANNEL),
            x,
            w,
            dy,
        )
        assert not np.array_equal(dx, ex) and not np.array_equal(dw, ew)


def test_conv3d_transpose_valid_dilated_depth():
    rng = np.random.default_rng(9)
    x, w = rng.normal(size=(1, 2, 3, 3, 2)).astype(F), rng.normal(size=(2, 2, 2, 3, 2)).astype(F)
    out = (1, 3, 4, 4, 3)
    dy = rng.normal(size=out).astype(F)
    m = shipped("mul8u_trunc4")
    dx, dw = gradients(lambda a, b: ops.conv3d_transpose(a, b, m, out, quantization=INTEGER), x, w, dy)
    expected_dx, expected_dw = reference_conv3d_transpose_grads(x, w, dy, m, (1, 1, 1), (0,) * 6)
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(dw, expected_dw)


# --- layers --------------------------------------------------------------------------------------


LAYERS = {
    "AMConv3D": (
        lambda q: layers.AMConv3D(3, 2, padding="same", multiplier="mul8s_mitchell", quantization=q),
        (2, 3, 4, 4, 2),
    ),
    "AMConv2DTranspose": (
        lambda q: layers.AMConv2DTranspose(3, 3, strides=2, padding="same", multiplier="mul8u_trunc4", quantization=q),
        (2, 4, 5, 2),
    ),
    "AMConv3DTranspose": (
        lambda q: layers.AMConv3DTranspose(3, 2, strides=2, multiplier="mul8s_mitchell", quantization=q),
        (2, 2, 3, 3, 2),
    ),
}


@pytest.mark.parametrize("layer_name", sorted(LAYERS))
def test_layers_train_with_integer_backward(layer_name):
    """One optimizer step with quantization={"integer_backward": True}: finite gradients that are the
    integer ones (they differ from the straight-through ones of the same layer and weights)."""
    import keras

    make, shape = LAYERS[layer_name]
    x = np.random.default_rng(10).normal(size=shape).astype(F)
    layer = make({"integer_backward": True})
    ste = make(None)
    layer.build(shape)
    ste.build(shape)
    ste.set_weights(layer.get_weights())
    assert layer.get_config()["quantization"]["integer_backward"] is True

    def step(lay):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(lay(x, training=True)))
        return tape.gradient(loss, lay.trainable_weights), loss

    grads, loss = step(layer)
    ste_grads, ste_loss = step(ste)
    assert loss.numpy() == ste_loss.numpy()  # the same forward
    kernel = grads[0].numpy()
    assert np.isfinite(kernel).all() and np.abs(kernel).max() > 0
    assert not np.array_equal(kernel, ste_grads[0].numpy())
    before = layer.kernel.numpy().copy()
    keras.optimizers.SGD(0.01).apply_gradients(zip(grads, layer.trainable_weights))
    assert np.isfinite(layer.kernel.numpy()).all() and not np.array_equal(layer.kernel.numpy(), before)
    # and in Keras's traced training step (batch size unknown)
    model = keras.Sequential([keras.Input(shape[1:]), make({"integer_backward": True})])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    kernel = model.layers[0].kernel.numpy().copy()
    target = np.zeros((shape[0], *model.output_shape[1:]), F)
    loss = model.fit(x, target, batch_size=shape[0], epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss).all() and not np.array_equal(model.layers[0].kernel.numpy(), kernel)


def test_mismatched_integer_grad_multiplier_is_refused_with_its_message():
    x, w = np.ones((1, 2, 2, 2, 1), F), np.ones((1, 1, 1, 1, 1), F)
    with pytest.raises(
        ValueError,
        match="conv3d_transpose: grad_weight_multiplier 'mul8u_trunc4' is unsigned but the forward multiplier "
        "'mul8s_exact' is not",
    ):
        ops.conv3d_transpose(x, w, "mul8s_exact", (1, 2, 2, 2, 1), grad_weight_multiplier="mul8u_trunc4")


def test_conv3d_integer_input_grad_with_fp32_weight_grad():
    """One product integer, the other straight-through: dX the integer reference's bits, dW TF's
    gradient of the float conv3d of the dequantized operands (float rounding apart)."""
    rng = np.random.default_rng(11)
    x, w = rng.normal(size=(2, 3, 4, 4, 2)).astype(F), rng.normal(size=(2, 2, 2, 2, 3)).astype(F)
    dy = rng.normal(size=(2, 3, 4, 4, 3)).astype(F)
    m, backward = shipped("mul8s_exact"), shipped("mul8s_mitchell")

    def op(a, b):
        return ops.conv3d(a, b, m, padding="SAME", grad_input_multiplier=backward, grad_weight_multiplier="fp32")

    dx, dw = gradients(op, x, w, dy)
    expected_dx, _ = reference_conv3d_grads(x, w, dy, backward, (1, 1, 1), ((0, 1), 0, 1, 0, 1))
    np.testing.assert_array_equal(dx, expected_dx)
    dq = [ref.dequantize(ref.quantize(v, p), p) for v in (x, w) for p in [ref.minmax_params(v, True)]]
    _, ew = gradients(lambda a, b: tf.nn.conv3d(a, b, (1, 1, 1, 1, 1), "SAME"), *dq, dy)
    np.testing.assert_allclose(dw, ew, rtol=1e-5, atol=1e-5)
