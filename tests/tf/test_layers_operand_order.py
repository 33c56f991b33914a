"""Operand order and phase routing of every AM layer, bit for bit against the NumPy reference.

Each layer gets three different random (asymmetric) tables, one each for `multiplier`,
`grad_input_multiplier` and `grad_weight_multiplier`.  Every AM product of the forward
pass, of dX and of dW must equal tests/amsim_reference.py's result with the operands in
their documented table positions (docs/design.md, "Ops, layers and gradients": forward A = activations, dX = dY.W^T
with A = dY, dW = X^T.dY with A = X) and the phase's own table.  Each check also proves it
could fail: the reference with the operands swapped (the transposed table: T'[ia, ib] =
T[ib, ia], so multiply(a, b, T') = multiply(b, a, T)) and the references with the other
phases' tables must all give different bits.

Native ops between the products (bias add, attention scaling and softmax, float16 casts)
are applied to the reference with the same arithmetic: float32/float16 elementwise ops in
NumPy, and softmax and its gradient through TF's own softmax on the reference values.
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import approxtrain.ops  # noqa: E402
from approxtrain import layers as am  # noqa: E402
import amsim_reference as ref  # noqa: E402
from _compare import assert_bits_equal, random_table, swapped  # noqa: E402


# --- tables and the product check --------------------------------------------------------------


FWD = random_table(1401, "truncate")
GIN = random_table(1402, "nearest")
GW = random_table(1403, "truncate")
PHASES = {"multiplier": FWD, "grad_input_multiplier": GIN, "grad_weight_multiplier": GW}


def same_bits(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


def check_product(what, got, compute, table):
    """got == compute(table) bit for bit; compute(swapped table) and compute(other phases'
    tables) differ from got, so the check catches a swapped operand or a misrouted table."""
    assert_bits_equal(got, compute(table), what)
    controls = [(swapped(table), "its operands swapped")]
    controls += [(t, f"{name}'s table") for name, t in PHASES.items() if t is not table]
    for wrong, why in controls:
        assert not same_bits(got, compute(wrong)), f"{what}: the reference with {why} gives the same bits"


def check_three_products(what, got, products, bias=None):
    """got = (y, dx, dw); products = compute functions of (forward, dX, dW) by table."""
    forward, dx, dw = products
    check_product(f"{what} forward", got[0], lambda t: forward(t) + bias if bias is not None else forward(t), FWD)
    check_product(f"{what} dX", got[1], dx, GIN)
    check_product(f"{what} dW", got[2], dw, GW)


# --- reference products ------------------------------------------------------------------------


def gemm(a, b, m):
    """Reference A.B through m's table (A the table row), batched over leading axes."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim == 2:
        return ref.matmul(a, b, *m.core_args)
    return np.stack([gemm(x, y, m) for x, y in zip(a, b)])


def swap(t):
    return np.swapaxes(t, -1, -2)


@dataclass(frozen=True)
class Window:
    """Conv window in amsim_reference's terms: pads = (top, bottom, left, right)."""

    strides: tuple = (1, 1)
    dilations: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    groups: int = 1

    def kwargs(self):
        return dict(strides=self.strides, dilations=self.dilations, pads=self.pads, groups=self.groups)


def same_pads(size, k, stride, dilation):
    """TensorFlow's SAME rule: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_products(x, w, g, win):
    """Compute functions (by table) of conv2d(x, w), its input gradient and filter gradient for dy = g."""
    kw = win.kwargs()
    return (
        lambda t: ref.conv2d(x, w, *t.core_args, **kw),
        lambda t: ref.conv2d_input_grad(x.shape, w, g, *t.core_args, **kw),
        lambda t: ref.conv2d_filter_grad(x, w.shape, g, *t.core_args, **kw),
    )


def depthwise_products(x, w, g, win):
    """Depthwise conv as conv2d with groups = C (src/amsim/conv.h): filter [KH, KW, C, m]
    is the grouped filter [KH, KW, 1, C * m]; output channel c * m + j."""
    kh, kw_, c, mult = w.shape
    fwd, dx, dw = conv_products(x, w.reshape(kh, kw_, 1, c * mult), g, Window(win.strides, win.dilations, win.pads, c))
    return fwd, dx, lambda t: dw(t).reshape(w.shape)


# --- running a layer ---------------------------------------------------------------------------


def normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def tables():
    return dict(multiplier=FWD, grad_input_multiplier=GIN, grad_weight_multiplier=GW)


def output_and_grads(layer, x, g):
    """y, dL/dx and dL/d(each trainable weight) for output gradient g, as numpy arrays."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grads = tape.gradient(y, [x] + layer.trainable_weights, output_gradients=tf.constant(g, dtype=y.dtype))
    return [y.numpy()] + [t.numpy() for t in grads]


def built(layer, x_shape, weights):
    layer.build(x_shape)
    layer.set_weights(weights)
    return layer


def record_calls(monkeypatch, name):
    """Wrap approxtrain.ops.<name> (what the layers call) and record (a, b, kwargs, result) of each call."""
    calls = []
    real = getattr(approxtrain.ops, name)

    def spy(a, b, *args, **kwargs):
        out = real(a, b, *args, **kwargs)
        calls.append((a, b, kwargs, out))
        return out

    monkeypatch.setattr(approxtrain.ops, name, spy)
    return calls


# --- the controls themselves -------------------------------------------------------------------


def test_swapped_table_is_the_reference_with_its_operands_exchanged():
    rng = np.random.default_rng(0)
    a, b = normal(rng, (3, 4)), normal(rng, (4, 5))
    for m in PHASES.values():
        assert_bits_equal(gemm(a, b, swapped(m)), swap(gemm(b.T, a.T, m)), f"{m.name} swapped")
        assert not same_bits(gemm(a, b, swapped(m)), gemm(a, b, m))


# --- Dense and convolutions --------------------------------------------------------------------


@pytest.mark.parametrize("x_shape", [(4, 6), (2, 3, 6)], ids=["rank2", "rank3"])
def test_dense(x_shape):
    rng = np.random.default_rng(10)
    x, kernel, bias = normal(rng, x_shape), normal(rng, (6, 5)), normal(rng, (5,))
    g = normal(rng, x_shape[:-1] + (5,))
    layer = built(am.AMDense(5, **tables()), x_shape, [kernel, bias])
    y, dx, dk, db = output_and_grads(layer, x, g)
    x2, g2 = x.reshape(-1, 6), g.reshape(-1, 5)  # the layer's one GEMM over all leading axes
    check_three_products(
        "AMDense",
        (y.reshape(-1, 5), dx.reshape(-1, 6), dk),
        (lambda t: gemm(x2, kernel, t), lambda t: gemm(g2, kernel.T, t), lambda t: gemm(x2.T, g2, t)),
        bias,
    )
    np.testing.assert_allclose(db, g2.sum(axis=0), rtol=1e-6)  # native bias gradient


CONV1D_CASES = {
    # kwargs, input [N, W, C], (left, right) padding
    "causal_dilated": (dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2), (2, 9, 3), (4, 0)),
    "same_strided_groups": (
        dict(filters=4, kernel_size=3, strides=2, groups=2, padding="same"),
        (2, 9, 4),
        same_pads(9, 3, 2, 1),
    ),
}


@pytest.mark.parametrize("case", sorted(CONV1D_CASES))
def test_conv1d(case):
    kwargs, x_shape, (left, right) = CONV1D_CASES[case]
    rng = np.random.default_rng(11)
    k, c, o, groups = kwargs["kernel_size"], x_shape[-1], kwargs["filters"], kwargs.get("groups", 1)
    x, w, bias = normal(rng, x_shape), normal(rng, (k, c // groups, o)), normal(rng, (o,))
    layer = built(am.AMConv1D(**kwargs, **tables()), x_shape, [w, bias])
    stride, dilation = kwargs.get("strides", 1), kwargs.get("dilation_rate", 1)
    out_w = (x_shape[1] + left + right - (k - 1) * dilation - 1) // stride + 1
    g = normal(rng, (x_shape[0], out_w, o))
    y, dx, dw, _ = output_and_grads(layer, x, g)
    # Conv1D is conv2d with H = 1.
    win = Window((1, stride), (1, dilation), (0, 0, left, right), groups)
    fwd4, dx4, dw4 = conv_products(x[:, None], w[None], g[:, None], win)
    check_three_products(
        f"AMConv1D {case}", (y, dx, dw), (lambda t: fwd4(t)[:, 0], lambda t: dx4(t)[:, 0], lambda t: dw4(t)[0]), bias
    )


CONV2D_CASES = {
    # kwargs, input [N, H, W, C], window
    "same_strided": (
        dict(filters=4, kernel_size=3, strides=2, padding="same"),
        (2, 5, 6, 3),
        Window((2, 2), (1, 1), same_pads(5, 3, 2, 1) + same_pads(6, 3, 2, 1)),
    ),
    "valid_dilated_groups": (
        dict(filters=4, kernel_size=(2, 3), dilation_rate=2, groups=2),
        (1, 6, 7, 4),
        Window((1, 1), (2, 2), (0, 0, 0, 0), 2),
    ),
}


@pytest.mark.parametrize("case", sorted(CONV2D_CASES))
def test_conv2d(case):
    kwargs, x_shape, win = CONV2D_CASES[case]
    rng = np.random.default_rng(12)
    layer = am.AMConv2D(**kwargs, **tables())
    layer.build(x_shape)
    w, bias = normal(rng, layer.kernel.shape), normal(rng, layer.bias.shape)
    layer.set_weights([w, bias])
    x = normal(rng, x_shape)
    g = normal(rng, layer.compute_output_shape(x_shape))
    y, dx, dw, _ = output_and_grads(layer, x, g)
    check_three_products(f"AMConv2D {case}", (y, dx, dw), conv_products(x, w, g, win), bias)


def test_depthwise_conv2d():
    rng = np.random.default_rng(13)
    x_shape = (2, 7, 6, 3)
    layer = am.AMDepthwiseConv2D(kernel_size=3, depth_multiplier=2, strides=2, padding="same", **tables())
    layer.build(x_shape)
    w, bias = normal(rng, layer.kernel.shape), normal(rng, layer.bias.shape)
    layer.set_weights([w, bias])
    x = normal(rng, x_shape)
    g = normal(rng, layer.compute_output_shape(x_shape))
    y, dx, dw, _ = output_and_grads(layer, x, g)
    win = Window((2, 2), (1, 1), same_pads(7, 3, 2, 1) + same_pads(6, 3, 2, 1))
    check_three_products("AMDepthwiseConv2D", (y, dx, dw), depthwise_products(x, w, g, win), bias)


def test_separable_conv2d_both_stages(monkeypatch):
    """Depthwise stage, then the pointwise stage fed with the layer's own depthwise output;
    the depthwise gradients use the layer's own gradient at that output."""
    rng = np.random.default_rng(14)
    x_shape = (2, 5, 6, 3)
    layer = am.AMSeparableConv2D(filters=4, kernel_size=3, depth_multiplier=2, padding="same", **tables())
    layer.build(x_shape)
    dwk, pwk, bias = (normal(rng, v.shape) for v in (layer.depthwise_kernel, layer.pointwise_kernel, layer.bias))
    layer.set_weights([dwk, pwk, bias])
    x = tf.constant(normal(rng, x_shape))
    g = normal(rng, layer.compute_output_shape(x_shape))

    calls = record_calls(monkeypatch, "conv2d")  # the pointwise stage (the depthwise one is ops.depthwise_conv2d)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    assert len(calls) == 1, f"expected one pointwise conv2d call, got {len(calls)}"
    z, pointwise = calls[0][0], calls[0][1]
    dx, ddwk, dpwk, dz, dpw_seen = tape.gradient(
        y, [x, layer.depthwise_kernel, layer.pointwise_kernel, z, pointwise], output_gradients=tf.constant(g)
    )
    assert_bits_equal(pointwise.numpy(), pwk, "the pointwise stage's filter is the pointwise kernel")
    assert_bits_equal(dpw_seen.numpy(), dpwk.numpy(), "pointwise kernel gradient")

    x, z, dz = x.numpy(), z.numpy(), dz.numpy()
    win = Window((1, 1), (1, 1), same_pads(5, 3, 1, 1) + same_pads(6, 3, 1, 1))
    depthwise_fwd, depthwise_dx, depthwise_dw = depthwise_products(x, dwk, dz, win)
    check_product("AMSeparableConv2D depthwise forward", z, depthwise_fwd, FWD)
    check_three_products(
        "AMSeparableConv2D pointwise", (y.numpy(), dz, dpwk.numpy()), conv_products(z, pwk, g, Window()), bias
    )
    check_product("AMSeparableConv2D depthwise dX", dx.numpy(), depthwise_dx, GIN)
    check_product("AMSeparableConv2D depthwise dW", ddwk.numpy(), depthwise_dw, GW)


# --- multi-head attention ----------------------------------------------------------------------


def softmax_grad(scores, d_probabilities):
    """The gradient of TF's softmax over the last axis (what Keras's Softmax layer calls) at
    reference scores: the native op between the two attention products, applied to reference values."""
    s = tf.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(s)
        p = tf.nn.softmax(s, axis=-1)
    return tape.gradient(p, s, output_gradients=tf.constant(d_probabilities)).numpy()


def test_multi_head_attention_six_products(monkeypatch):
    """All four projections and both attention products, forward, dA and dB, each against the
    reference recomputed from the inputs (TF's softmax and its gradient applied to reference values),
    with the layer's operands checked to be the expected tensors in their documented positions."""
    b_, t_, s_, h_, kd, dq, dv = 2, 3, 4, 2, 3, 4, 5  # value_dim = key_dim, output dim = dq
    rng = np.random.default_rng(15)
    query, value = normal(rng, (b_, t_, dq)), normal(rng, (b_, s_, dv))
    layer = am.AMMultiHeadAttention(num_heads=h_, key_dim=kd, **tables())
    layer(query, value)
    layer.set_weights([normal(rng, w.shape) * 0.5 for w in layer.get_weights()])
    projections = [layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense]
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = ((p.kernel.numpy(), p.bias.numpy()) for p in projections)
    g = normal(rng, (b_, t_, dq))

    calls = record_calls(monkeypatch, "matmul")
    q_in, v_in = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([q_in, v_in])
        y, probabilities = layer(q_in, v_in, return_attention_scores=True)
    assert len(calls) == 6, f"expected six AM matmuls (4 projections, QK^T, PV), got {len(calls)}"
    weights = [v for p in projections for v in (p.kernel, p.bias)]
    sources = [q_in, v_in] + weights + [t for a, b, _, c in calls for t in (a, b, c)]
    grads = tape.gradient(y, sources, output_gradients=tf.constant(g))
    dquery, dvalue, dweights, dcalls = grads[0], grads[1], grads[2:10], grads[10:]

    # The reference, forward.
    scale = np.float32(1.0 / math.sqrt(float(kd)))
    heads = lambda t: t.transpose(0, 2, 1, 3).reshape(b_ * h_, t.shape[1], t.shape[3])  # noqa: E731
    unheads = lambda t: t.reshape(b_, h_, -1, t.shape[-1]).transpose(0, 2, 1, 3)  # noqa: E731
    q2, v2 = query.reshape(b_ * t_, dq), value.reshape(b_ * s_, dv)
    wq2, wk2, wv2, wo2 = wq.reshape(dq, h_ * kd), wk.reshape(dv, h_ * kd), wv.reshape(dv, h_ * kd), wo.reshape(-1, dq)
    qh = heads((gemm(q2, wq2, FWD).reshape(b_, t_, h_, kd) + bq) * scale)
    kh = heads(gemm(v2, wk2, FWD).reshape(b_, s_, h_, kd) + bk)
    vh = heads(gemm(v2, wv2, FWD).reshape(b_, s_, h_, kd) + bv)
    scores = gemm(qh, swap(kh), FWD)
    p = tf.nn.softmax(scores.reshape(b_, h_, t_, s_), axis=-1).numpy().reshape(b_ * h_, t_, s_)
    context2 = unheads(gemm(p, vh, FWD)).reshape(b_ * t_, h_ * kd)
    # The reference, backward, from the output projection down.
    g2 = g.reshape(b_ * t_, dq)
    d_context = heads(gemm(g2, wo2.T, GIN).reshape(b_, t_, h_, kd))
    d_p = gemm(d_context, swap(vh), GIN)
    d_scores = softmax_grad(scores.reshape(b_, h_, t_, s_), d_p.reshape(b_, h_, t_, s_)).reshape(b_ * h_, t_, s_)
    d_q = (unheads(gemm(d_scores, kh, GIN)) * scale).reshape(b_ * t_, h_ * kd)
    d_k = unheads(swap(gemm(swap(qh), d_scores, GIN))).reshape(b_ * s_, h_ * kd)
    d_v = unheads(gemm(swap(p), d_context, GIN)).reshape(b_ * s_, h_ * kd)

    # (name, A, B, dC, table of dB): A and B as the documented operands of C = A.B.
    products = [
        ("query projection", q2, wq2, d_q, GW),
        ("key projection", v2, wk2, d_k, GW),
        ("value projection", v2, wv2, d_v, GW),
        ("scores Q.K^T", qh, swap(kh), d_scores, GIN),  # two activations: both gradients grad_input
        ("context P.V", p, vh, d_context, GIN),
        ("output projection", context2, wo2, g2, GW),
    ]
    effective = lambda t, transposed: swap(t) if transposed else t  # noqa: E731
    flags = [(kw.get("transpose_a", False), kw.get("transpose_b", False)) for _, _, kw, _ in calls]
    # Forward, in the layer's order: the layer passes the expected tensors, A on the left (the table row).
    for (name, a, b, _, _), (got_a, got_b, _, got_c), (ta, tb) in zip(products, calls, flags):
        assert_bits_equal(effective(got_a.numpy(), ta), a, f"MHA {name}: operand A")
        assert_bits_equal(effective(got_b.numpy(), tb), b, f"MHA {name}: operand B")
        check_product(f"MHA {name} forward", got_c.numpy(), lambda t: gemm(a, b, t), FWD)
    # Backward, in backprop order (output projection first), so a failure names the first wrong product.
    for i in reversed(range(6)):
        name, a, b, dc, db_table = products[i]
        (ta, tb), (da_got, db_got, dc_got) = flags[i], (t.numpy() for t in dcalls[3 * i : 3 * i + 3])
        assert_bits_equal(dc_got, dc, f"MHA {name}: gradient at its output")
        check_product(f"MHA {name} dA", effective(da_got, ta), lambda t: gemm(dc, swap(b), t), GIN)
        check_product(f"MHA {name} dB", effective(db_got, tb), lambda t: gemm(swap(a), dc, t), db_table)

    # The layer's own outputs and gradients.
    assert_bits_equal(probabilities.numpy().reshape(p.shape), p, "MHA attention probabilities")
    assert_bits_equal(y.numpy(), gemm(context2, wo2, FWD).reshape(b_, t_, dq) + bo, "MHA output")
    assert_bits_equal(dquery.numpy(), gemm(d_q, wq2.T, GIN).reshape(query.shape), "MHA d query")
    assert_bits_equal(
        dvalue.numpy(),
        (gemm(d_k, wk2.T, GIN) + gemm(d_v, wv2.T, GIN)).reshape(value.shape),
        "MHA d value (key and value projections)",
    )
    for (name, a, _, dc, table), kernel, dkernel in zip(
        [products[0], products[1], products[2], products[5]], (wq, wk, wv, wo), dweights[0::2]
    ):
        assert_bits_equal(dkernel.numpy(), gemm(a.T, dc, table).reshape(kernel.shape), f"MHA {name} kernel gradient")


# --- mixed precision ---------------------------------------------------------------------------


def as_half(t):
    """The float32 value of t rounded to float16 (what a float16 boundary leaves)."""
    return np.asarray(t, np.float32).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("kind", ["dense", "conv2d"])
def test_mixed_float16_computes_in_float32_and_casts_back(kind):
    """Under mixed_float16 the operands are the float16 inputs and the float16-cast kernel, each
    product is float32 AM arithmetic, the result is cast to float16 and the bias added in float16;
    dX comes back as float16, dW as float16 rounded then float32 (the variable's dtype)."""
    rng = np.random.default_rng(16)
    if kind == "dense":
        x_shape, layer = (4, 6), am.AMDense(5, dtype="mixed_float16", **tables())
    else:
        x_shape = (2, 5, 5, 2)
        layer = am.AMConv2D(3, 3, padding="same", dtype="mixed_float16", **tables())
    layer.build(x_shape)
    assert layer.compute_dtype == "float16" and layer.kernel.dtype == "float32"
    w, bias = normal(rng, layer.kernel.shape), normal(rng, layer.bias.shape)
    layer.set_weights([w, bias])
    x = normal(rng, x_shape).astype(np.float16)
    g = normal(rng, layer.compute_output_shape(x_shape)).astype(np.float16)
    y, dx, dw, _ = output_and_grads(layer, x, g)
    assert (y.dtype, dx.dtype, dw.dtype) == (np.float16, np.float16, np.float32)

    x32, w16, g32 = x.astype(np.float32), as_half(w), g.astype(np.float32)
    if kind == "dense":
        fwd, dxf, dwf = (lambda t: gemm(x32, w16, t), lambda t: gemm(g32, w16.T, t), lambda t: gemm(x32.T, g32, t))
    else:
        fwd, dxf, dwf = conv_products(x32, w16, g32, Window(pads=(1, 1, 1, 1)))
    check_product(
        f"mixed_float16 {kind} forward", y, lambda t: fwd(t).astype(np.float16) + bias.astype(np.float16), FWD
    )
    check_product(f"mixed_float16 {kind} dX", dx, lambda t: dxf(t).astype(np.float16), GIN)
    check_product(f"mixed_float16 {kind} dW", dw, lambda t: as_half(dwf(t)), GW)


# --- second order ------------------------------------------------------------------------------


def second_order(layer, x, v):
    """s = sum(dx * v) with dx the input gradient for the output gradient y itself (so dx depends
    on the kernel directly and through y); returns y, dx, ds/dx, ds/dkernel."""
    x = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer(x)
        dx = inner.gradient(y, x, output_gradients=y)
        s = tf.reduce_sum(dx * tf.constant(v))
    d2x, d2k = outer.gradient(s, [x, layer.kernel])
    return y.numpy(), dx.numpy(), d2x.numpy(), d2k.numpy()


def test_dense_second_order_gradient():
    """dx = AMMatMul(y, K^T) with grad_input's table; its registered gradient reuses that op's
    table: ds/dy = v.K (v the row), ds/dK directly = (y^T.v)^T (y the row); then through
    y = x.K + b the layer's own backward: ds/dx = ybar.K^T (grad_input), ds/dK += x^T.ybar
    (grad_weight)."""
    rng = np.random.default_rng(17)
    x, kernel, bias, v = normal(rng, (4, 6)), normal(rng, (6, 5)), normal(rng, (5,)), normal(rng, (4, 6))
    layer = built(am.AMDense(5, **tables()), x.shape, [kernel, bias])
    y, dx, d2x, d2k = second_order(layer, x, v)

    y_ref = gemm(x, kernel, FWD) + bias
    assert_bits_equal(y, y_ref, "AMDense y")
    check_product("AMDense dX for dY = y", dx, lambda t: gemm(y_ref, kernel.T, t), GIN)
    ybar = lambda t: gemm(v, kernel, t)  # noqa: E731
    check_product("AMDense second order d/dx", d2x, lambda t: gemm(ybar(t), kernel.T, GIN), GIN)
    check_product("AMDense second order d/dK", d2k, lambda t: gemm(y_ref.T, v, t).T + gemm(x.T, ybar(t), GW), GIN)
    # The second-order products are AM ones: the native arithmetic gives other bits.
    assert not same_bits(d2k, (y_ref.T @ v).T + x.T @ (v @ kernel))


def test_conv2d_second_order_gradient():
    """dx = AMConv2DBackpropInput(dy = y, w) with grad_input's table; its registered gradient
    reuses that table: ds/dy = conv(v, w) (v the row), ds/dw directly = filter_grad(v, dy = y)
    (v the row); then through y = conv(x, w) + b: ds/dx = input_grad(ybar, w) (grad_input),
    ds/dw += filter_grad(x, ybar) (grad_weight)."""
    rng = np.random.default_rng(18)
    x_shape = (2, 5, 6, 2)
    layer = am.AMConv2D(3, 3, strides=2, padding="same", **tables())
    layer.build(x_shape)
    w, bias = normal(rng, layer.kernel.shape), normal(rng, layer.bias.shape)
    layer.set_weights([w, bias])
    x, v = normal(rng, x_shape), normal(rng, x_shape)
    y, dx, d2x, d2w = second_order(layer, x, v)

    win = Window((2, 2), (1, 1), same_pads(5, 3, 2, 1) + same_pads(6, 3, 2, 1))
    kw = win.kwargs()
    y_ref = ref.conv2d(x, w, *FWD.core_args, **kw) + bias
    assert_bits_equal(y, y_ref, "AMConv2D y")
    check_product(
        "AMConv2D dX for dY = y", dx, lambda t: ref.conv2d_input_grad(x.shape, w, y_ref, *t.core_args, **kw), GIN
    )
    ybar = lambda t: ref.conv2d(v, w, *t.core_args, **kw)  # noqa: E731
    check_product(
        "AMConv2D second order d/dx",
        d2x,
        lambda t: ref.conv2d_input_grad(x.shape, w, ybar(t), *GIN.core_args, **kw),
        GIN,
    )
    check_product(
        "AMConv2D second order d/dw",
        d2w,
        lambda t: (
            ref.conv2d_filter_grad(v, w.shape, y_ref, *t.core_args, **kw)
            + ref.conv2d_filter_grad(x, w.shape, ybar(t), *GW.core_args, **kw)
        ),
        GIN,
    )
