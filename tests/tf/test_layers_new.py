"""AMEinsumDense, AMConv3D and the transposed convolutions, bit for bit against tests/amsim_reference.py.

Each layer runs with three different random (asymmetric) tables, one per phase; its output,
dX and dW must equal an independent NumPy reference computed in the documented canonical
order (docs/design.md, "Canonical summation orders") with the documented operand in the table
row (forward and dW: the layer input; dX: dY).  Each check also proves it could fail: the
reference with the operands exchanged (the transposed table) gives other bits.

Finite differences are not checked: an AM forward pass reduces its operands to M bits and
looks the product up, so it is a step function of its inputs whose derivative is zero almost
everywhere; the gradient the layers define is the AM product of the exact gradient formula,
checked bit for bit here, and equal to the native twin's with the exact bf16 table.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

import approxtrain as at  # noqa: E402
from approxtrain import layers as am  # noqa: E402
import amsim_reference as ref  # noqa: E402
from _compare import BF16, assert_bits_equal, bf16_values, random_table, swapped  # noqa: E402


FWD, GIN, GW = random_table(1801, "truncate"), random_table(1802, "nearest"), random_table(1803, "truncate")


def check(what, got, compute, table):
    """got == compute(table) bit for bit, and the operand-exchanged table gives other bits."""
    assert_bits_equal(got, compute(table), what)
    other = np.asarray(compute(swapped(table)), np.float32)
    assert not np.array_equal(np.asarray(got, np.float32).view(np.uint32), other.view(np.uint32)), (
        f"{what}: the exchanged-operand reference gives the same bits; the check cannot see a swap"
    )


def run_layer(layer, x, dy_seed=7):
    """(y, dX, dW) of layer at x for a random upstream gradient dy (bf16 values; also returned)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    dy = bf16_values(np.random.default_rng(dy_seed), y.shape)
    dx, dw = tape.gradient(y, [x, layer.kernel], output_gradients=tf.constant(dy))
    return y.numpy(), dx.numpy(), dw.numpy(), dy


def three_tables():
    return dict(multiplier=FWD, grad_input_multiplier=GIN, grad_weight_multiplier=GW)


# --- EinsumDense ---------------------------------------------------------------------------------


def contract(lspec, a, rspec, b, out, summed, table):
    """out[...] = sum over the `summed` letters (row-major, in that order) of a (x) b, a the table row."""
    sizes = dict(zip(lspec, a.shape))
    sizes.update(zip(rspec, b.shape))
    letters = out + summed

    def expand(spec, t):
        t = np.transpose(t, [spec.index(c) for c in letters if c in spec])
        return t.reshape([sizes[c] if c in spec else 1 for c in letters])

    left, right = np.broadcast_arrays(expand(lspec, a), expand(rspec, b))
    products = ref.multiply(left, right, table.lut, table.mantissa_bits, table.operand_rounding)
    return ref.accumulate(products.reshape([sizes[c] for c in out] + [-1]), axis=-1)


# equation, output_shape, bias_axes, input shape, the equation with "..." written out
EINSUM_CASES = {
    "dense": ("ab,bc->ac", (5,), "c", (3, 4), None),
    "sequence": ("abc,cd->abd", (None, 5), "d", (2, 3, 4), None),
    "heads": ("abc,cde->abde", (None, 3, 5), "de", (2, 3, 4), None),
    "two_contracted": ("abcd,cde->abe", (None, 5), None, (2, 3, 4, 6), None),
    "shared_batch": ("abc,bcd->abd", (3, 5), "bd", (2, 3, 4), None),
    "ellipsis": ("...b,bc->...c", (5,), "c", (2, 3, 4), "xyb,bc->xyc"),
}


@pytest.mark.parametrize("case", sorted(EINSUM_CASES))
def test_einsum_dense_bit_exact_in_every_phase(case):
    equation, output_shape, bias_axes, shape, written = EINSUM_CASES[case]
    rng = np.random.default_rng(11)
    layer = am.AMEinsumDense(
        equation, output_shape, bias_axes=bias_axes, bias_initializer="random_normal", **three_tables()
    )
    x = rng.standard_normal(shape).astype(np.float32)
    y, dx, dw, dy = run_layer(layer, x)
    w = layer.kernel.numpy()
    left, kernel, out = (written or equation).replace("->", ",").split(",")
    contracted = "".join(c for c in left if c in kernel and c not in out)
    free_input = "".join(c for c in left if c not in kernel)
    free_kernel = "".join(c for c in kernel if c not in left)
    bias = layer.bias.numpy() if layer.bias is not None else np.float32(0)
    check("forward", y, lambda t: contract(left, x, kernel, w, out, contracted, t) + bias, FWD)
    check("dX", dx, lambda t: contract(out, dy, kernel, w, left, free_kernel, t), GIN)
    check("dW", dw, lambda t: contract(left, x, out, dy, kernel, free_input, t), GW)


def test_einsum_dense_rejects_a_letter_of_one_operand_only():
    layer = am.AMEinsumDense("abc,cd->ad", output_shape=(4,), multiplier=BF16)
    with pytest.raises(ValueError, match=r"letters 'b' of abc,cd->ad appear in only one operand"):
        layer(np.zeros((2, 3, 5), np.float32))


# --- 3-D convolutions and the transposed ones, in 3-D form -----------------------------------


def same_pads(size, k, s, d, out):
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def tap_slices(x, kd_count, out_depth, sd, dd, pads):
    """Per depth tap kd: x_padded[:, od*sd + kd*dd] for every od, as [N * OD, H, W, C]."""
    n, _, h, w, c = x.shape
    xp = np.pad(x, [(0, 0), pads, (0, 0), (0, 0), (0, 0)])
    return [
        xp[:, kd * dd : kd * dd + (out_depth - 1) * sd + 1 : sd].reshape(n * out_depth, h, w, c)
        for kd in range(kd_count)
    ]


def lut_args(t):
    return t.lut, t.mantissa_bits, t.operand_rounding


def conv3d_ref(x, w, t, strides, dil, pads, out_depth, groups=1):
    """Sum over kd ascending of the canonical conv2d of tap kd."""
    terms = [
        ref.conv2d(xs, w[kd], *lut_args(t), strides[1:], dil[1:], pads[1], groups)
        for kd, xs in enumerate(tap_slices(x, w.shape[0], out_depth, strides[0], dil[0], pads[0]))
    ]
    y = ref.accumulate(np.stack(terms), axis=0)
    return y.reshape((x.shape[0], out_depth) + y.shape[1:])


def conv3d_input_grad_ref(x_shape, w, dy, t, strides, dil, pads, groups=1):
    """Sum over kd ascending of tap kd's canonical conv2d input gradient at its depths (+0 elsewhere)."""
    n, depth, h, wd, c = x_shape
    od = dy.shape[1]
    dy2 = dy.reshape((n * od,) + dy.shape[2:])
    padded = np.zeros((w.shape[0], n, depth + sum(pads[0]), h, wd, c), np.float32)
    for kd in range(w.shape[0]):
        g = ref.conv2d_input_grad((n * od, h, wd, c), w[kd], dy2, *lut_args(t), strides[1:], dil[1:], pads[1], groups)
        for o in range(od):
            padded[kd, :, o * strides[0] + kd * dil[0]] = g.reshape(n, od, h, wd, c)[:, o]
    return ref.accumulate(padded, axis=0)[:, pads[0][0] : pads[0][0] + depth]


def conv3d_filter_grad_ref(x, w_shape, dy, t, strides, dil, pads, groups=1):
    od = dy.shape[1]
    dy2 = dy.reshape((-1,) + dy.shape[2:])
    return np.stack(
        [
            ref.conv2d_filter_grad(xs, w_shape[1:], dy2, *lut_args(t), strides[1:], dil[1:], pads[1], groups)
            for xs in tap_slices(x, w_shape[0], od, strides[0], dil[0], pads[0])
        ]
    )


def transpose_filter_grad_ref(x, w_shape, dy, t, strides, dil, pads):
    """dW[kd, kh, kw, o, c] of a transposed conv: sum over (n, d, h, w) of the layer input x (the table
    row) times the dy value its tap reaches (dy zero-padded as the forward conv's input)."""
    kd_, kh, kw, o, c = w_shape
    n, din, hin, win, _ = x.shape
    taps = tap_slices(dy, kd_, din, strides[0], dil[0], pads[0])
    out = []
    for kd in range(kd_):
        patches = ref.conv2d_patches(taps[kd], kh, kw, strides[1:], dil[1:], pads[1])  # [N*Din, Hin, Win, KH, KW, O]
        xs = x.reshape(n * din, hin, win, 1, 1, 1, c)
        prods = ref.multiply(np.broadcast_to(xs, patches.shape + (c,)), patches[..., None], *lut_args(t))
        out.append(ref.accumulate(prods.reshape((-1, kh, kw, o, c)), axis=0))
    return np.stack(out)


def as_3d(layer, x, kernel):
    """The layer's x, kernel, strides, dilations in 3-D form (a 1-D or 2-D layer gets leading 1s)."""
    lead = 3 - layer.rank
    x3 = x.reshape(x.shape[:1] + (1,) * lead + x.shape[1:])
    w3 = kernel.reshape((1,) * lead + kernel.shape)
    return x3, w3, (1,) * lead + tuple(layer.strides), (1,) * lead + tuple(layer.dilation_rate)


def window_pads(padding, sizes, kernel, strides, dil, outs):
    """Per spatial axis (front, back) pads of the convolution from `sizes` to `outs`."""
    pads = [same_pads(*a) if padding == "same" else (0, 0) for a in zip(sizes, kernel, strides, dil, outs)]
    return pads[0], pads[1] + pads[2]


CONV3D_CASES = {
    "strided_same": (dict(filters=4, kernel_size=(2, 3, 2), strides=(2, 1, 2), padding="same"), (2, 3, 4, 5, 2)),
    "dilated_grouped": (dict(filters=4, kernel_size=2, dilation_rate=(2, 1, 2), groups=2), (1, 4, 3, 4, 4)),
    # Depth stride 1, both depth edges padded, an odd depth (the bench layer's window).
    "same_odd_depth": (dict(filters=3, kernel_size=3, padding="same"), (2, 5, 3, 4, 2)),
    "grouped_same": (dict(filters=4, kernel_size=(3, 2, 2), groups=2, padding="same"), (1, 4, 3, 3, 4)),
    "valid_odd_depth": (dict(filters=2, kernel_size=(3, 1, 2)), (2, 5, 3, 4, 3)),
    # Depth stride 2 over a deep input: the taps split by the planes they read, and dX / dW
    # place the planes by gather (no run of consecutive planes).
    "deep_depth_stride": (dict(filters=3, kernel_size=(3, 2, 2), strides=(2, 1, 1), padding="same"), (1, 9, 3, 3, 2)),
    # Dilated SAME on a shallow input: some output depths read only padding, some input depths
    # get no tap in dX.
    "dilated_same_shallow": (dict(filters=3, kernel_size=2, dilation_rate=(3, 1, 1), padding="same"), (1, 2, 3, 3, 2)),
}


@pytest.mark.parametrize("case", sorted(CONV3D_CASES))
def test_conv3d_bit_exact_in_every_phase(case):
    kwargs, shape = CONV3D_CASES[case]
    layer = am.AMConv3D(**kwargs, use_bias=False, **three_tables())
    x = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    y, dx, dw, dy = run_layer(layer, x)
    w = layer.kernel.numpy()
    strides, dil, groups = tuple(layer.strides), tuple(layer.dilation_rate), layer.groups
    pads = window_pads(layer.padding, shape[1:4], w.shape[:3], strides, dil, y.shape[1:4])
    check("forward", y, lambda t: conv3d_ref(x, w, t, strides, dil, pads, y.shape[1], groups), FWD)
    check("dX", dx, lambda t: conv3d_input_grad_ref(shape, w, dy, t, strides, dil, pads, groups), GIN)
    check("dW", dw, lambda t: conv3d_filter_grad_ref(x, w.shape, dy, t, strides, dil, pads, groups), GW)


@pytest.mark.parametrize("case", ["same_odd_depth", "bench_like", "strided_same", "dilated_same_shallow"])
def test_conv3d_same_bits_in_a_tf_function(case):
    """Inside a tf.function TF's graph optimizer may rewrite chains of adds and concats (a
    full-depth form of the tap sums changed bits there, though eager it was exact): the
    graph gives the eager bits, which the test above checks against the reference."""
    kwargs, shape = CONV3D_CASES.get(case) or (dict(filters=16, kernel_size=3, padding="same"), (2, 5, 4, 4, 16))
    layer = am.AMConv3D(**kwargs, use_bias=False, **three_tables())
    x = np.random.default_rng(19).standard_normal(shape).astype(np.float32)
    y, dx, dw, dy = run_layer(layer, x)
    x_t, dy_t = tf.constant(x), tf.constant(dy)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            y_t = layer(x_t)
        return [y_t] + tape.gradient(y_t, [x_t, layer.kernel], output_gradients=dy_t)

    for what, graph, eager in zip(("forward", "dX", "dW"), step(), (y, dx, dw)):
        assert_bits_equal(graph.numpy(), eager, what)


def test_conv3d_padded_depth_against_an_inf_weight_is_nan():
    """A padded depth plane is +0 operands multiplied like any other: against an inf weight of the
    tap that reads it the product is NaN, so that output depth is NaN in that channel only."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 4, 3, 3, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2, 3)).astype(np.float32)
    w[0, 1, 0, 1, 1] = np.inf  # tap kd = 0 reads the front padding at output depth 0
    y = at.ops.conv3d(x, w, FWD, padding="SAME").numpy()
    pads = window_pads("same", (4, 3, 3), (3, 2, 2), (1, 1, 1), (1, 1, 1), (4, 3, 3))
    assert_bits_equal(y, conv3d_ref(x, w, FWD, (1, 1, 1), (1, 1, 1), pads, 4), "forward")
    assert np.isnan(y[:, 0, :, :, 1]).all()
    assert np.isfinite(y[..., [0, 2]]).all()


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3d_op_strided_and_dilated_depth(padding):
    """Depth stride and dilation together (Keras's layer refuses the pair; the op takes it): the
    taps read planes of two residues, and dX lands on every other depth."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 8, 3, 4, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2, 3)).astype(np.float32)
    strides, dil = (2, 1, 1), (2, 1, 1)
    x_t, w_t = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([x_t, w_t])
        y = at.ops.conv3d(
            x_t,
            w_t,
            FWD,
            strides=strides,
            padding=padding,
            dilations=dil,
            grad_input_multiplier=GIN,
            grad_weight_multiplier=GW,
        )
    dy = bf16_values(rng, y.shape)
    dx, dw = tape.gradient(y, [x_t, w_t], output_gradients=tf.constant(dy))
    pads = window_pads(padding.lower(), x.shape[1:4], w.shape[:3], strides, dil, y.shape[1:4])
    check("forward", y.numpy(), lambda t: conv3d_ref(x, w, t, strides, dil, pads, y.shape[1]), FWD)
    check("dX", dx.numpy(), lambda t: conv3d_input_grad_ref(x.shape, w, dy, t, strides, dil, pads), GIN)
    check("dW", dw.numpy(), lambda t: conv3d_filter_grad_ref(x, w.shape, dy, t, strides, dil, pads), GW)


def test_conv3d_native_forward_with_am_gradients():
    """Forward fp32 (TF's conv2d per tap, its padded planes through TF's op too), dX and dW through
    their tables, bit for bit."""
    kwargs, shape = CONV3D_CASES["same_odd_depth"]
    layer = am.AMConv3D(
        **kwargs, use_bias=False, multiplier="fp32", grad_input_multiplier=GIN, grad_weight_multiplier=GW
    )
    x = np.random.default_rng(16).standard_normal(shape).astype(np.float32)
    y, dx, dw, dy = run_layer(layer, x)
    w = layer.kernel.numpy()
    np.testing.assert_allclose(y, tf.nn.conv3d(x, w, [1] * 5, "SAME").numpy(), rtol=1e-5, atol=1e-5)
    pads = window_pads("same", shape[1:4], w.shape[:3], (1, 1, 1), (1, 1, 1), y.shape[1:4])
    check("dX", dx, lambda t: conv3d_input_grad_ref(shape, w, dy, t, (1, 1, 1), (1, 1, 1), pads), GIN)
    check("dW", dw, lambda t: conv3d_filter_grad_ref(x, w.shape, dy, t, (1, 1, 1), (1, 1, 1), pads), GW)


TRANSPOSE_CASES = {
    "1d_strided_same_output_padding": (
        am.AMConv1DTranspose,
        dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1),
        (2, 4, 2),
    ),
    "1d_dilated_valid": (am.AMConv1DTranspose, dict(filters=3, kernel_size=2, dilation_rate=2), (2, 4, 2)),
    "2d_strided_valid_output_padding": (
        am.AMConv2DTranspose,
        dict(filters=3, kernel_size=(2, 3), strides=(2, 1), output_padding=(1, 0)),
        (1, 3, 4, 2),
    ),
    "2d_dilated_same": (
        am.AMConv2DTranspose,
        dict(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
        (1, 3, 4, 2),
    ),
    "3d_strided_same": (
        am.AMConv3DTranspose,
        dict(filters=3, kernel_size=2, strides=(2, 1, 2), padding="same"),
        (1, 2, 3, 2, 2),
    ),
    "3d_same_k3": (am.AMConv3DTranspose, dict(filters=3, kernel_size=3, padding="same"), (2, 3, 3, 3, 2)),
    "3d_depth_stride3_valid": (
        am.AMConv3DTranspose,
        dict(filters=2, kernel_size=(4, 2, 2), strides=(3, 1, 1)),
        (1, 3, 2, 2, 2),
    ),
}


@pytest.mark.parametrize("case", sorted(TRANSPOSE_CASES))
def test_conv_transpose_bit_exact_in_every_phase(case):
    cls, kwargs, shape = TRANSPOSE_CASES[case]
    layer = cls(**kwargs, use_bias=False, **three_tables())
    x = np.random.default_rng(13).standard_normal(shape).astype(np.float32)
    y, dx, dw, dy = run_layer(layer, x)
    x3, w3, strides, dil = as_3d(layer, x, layer.kernel.numpy())
    y3 = as_3d(layer, y, layer.kernel.numpy())[0]
    dy3 = dy.reshape(y3.shape)
    # The transposed conv's pads are those of the conv it transposes: from y's sizes to x's.
    pads = window_pads(layer.padding, y3.shape[1:4], w3.shape[:3], strides, dil, x3.shape[1:4])
    check(
        "forward (x the row)",
        y.reshape(y3.shape),
        lambda t: conv3d_input_grad_ref(y3.shape, w3, x3, t, strides, dil, pads),
        FWD,
    )
    check(
        "dX (dY the row)", dx.reshape(x3.shape), lambda t: conv3d_ref(dy3, w3, t, strides, dil, pads, x3.shape[1]), GIN
    )
    check(
        "dW (x the row)",
        dw.reshape(w3.shape),
        lambda t: transpose_filter_grad_ref(x3, w3.shape, dy3, t, strides, dil, pads),
        GW,
    )


def test_conv3d_layer_step_runs_one_am_op_per_phase_and_strided_planes_per_phase():
    """The lowering's structure, in the graph of a Keras training step with an unknown batch:
    AMConv3D runs one AM op per product (all depth taps at once, no strided slice with a step);
    AMConv3DTranspose (stride 2 in height and width) its forward as one stride-1 input gradient
    per (row, column) phase, which needs the plane sizes static though the batch is not."""

    def graph_ops(layer, shape):
        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32)])
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return tape.gradient(y, [x, layer.kernel])

        return step.get_concrete_function().graph.get_operations()

    conv = am.AMConv3D(filters=4, kernel_size=3, padding="same", multiplier=BF16)
    conv.build((None, 5, 4, 4, 2))
    ops = graph_ops(conv, (5, 4, 4, 2))
    counts = {
        t: sum(op.type == t for op in ops) for t in ("AMConv2D", "AMConv2DBackpropInput", "AMConv2DBackpropFilter")
    }
    assert counts == {"AMConv2D": 1, "AMConv2DBackpropInput": 1, "AMConv2DBackpropFilter": 1}, counts
    stepped = [
        op
        for op in ops
        if op.type == "StridedSlice"
        and tf.get_static_value(op.inputs[3]) is not None
        and (np.abs(tf.get_static_value(op.inputs[3])) > 1).any()
    ]
    assert not stepped, [op.name for op in stepped]

    transposed = am.AMConv3DTranspose(filters=4, kernel_size=3, strides=(1, 2, 2), padding="same", multiplier=BF16)
    transposed.build((None, 3, 4, 4, 2))
    types = [op.type for op in graph_ops(transposed, (3, 4, 4, 2))]
    assert types.count("AMConv2DBackpropInput") == 4, types


# --- against the native twins, config, saving, substitution ----------------------------------

TWIN_CASES = {
    **{
        f"einsum_{k}": (am.AMEinsumDense, dict(equation=v[0], output_shape=v[1], bias_axes=v[2]), v[3])
        for k, v in EINSUM_CASES.items()
    },
    **{f"conv3d_{k}": (am.AMConv3D, v[0], v[1]) for k, v in CONV3D_CASES.items()},
    **{f"transpose_{k}": v for k, v in TRANSPOSE_CASES.items()},
}


def twin_pair(case, multiplier):
    cls, kwargs, shape = TWIN_CASES[case]
    rng = np.random.default_rng(14)
    native = cls.keras_twin(**kwargs)
    layer = cls(**kwargs, multiplier=multiplier)
    native.build(shape)
    layer.build(shape)
    for v in native.weights:
        v.assign(bf16_values(rng, v.shape))
    layer.set_weights(native.get_weights())
    return layer, native, bf16_values(rng, shape)


def dilated(case):
    dilation = TWIN_CASES[case][1].get("dilation_rate", 1)
    return any(d > 1 for d in ((dilation,) if isinstance(dilation, int) else dilation))


def native_reference(case, native):
    """The native result to compare with: Keras's twin, except where TF's CPU kernels reject its
    window without oneDNN (dilated transposed convs and Conv3D); there the AM layer with every
    phase fp32, whose portable native formulation test_fp32_dilated_layers_equal_keras_twins
    checks against Keras's twin under oneDNN."""
    if not dilated(case):
        return native
    cls, kwargs, _ = TWIN_CASES[case]
    portable = cls(**kwargs, multiplier="fp32")
    portable.build(TWIN_CASES[case][2])
    portable.set_weights(native.get_weights())
    return portable


@pytest.mark.parametrize("case", sorted(TWIN_CASES))
def test_bf16_equals_native_twin_and_mbm7_moves_away(case):
    layer, native, x = twin_pair(case, BF16)
    y, dx, dw, dy = run_layer(layer, x)
    ny, ndx, ndw, _ = run_layer(native_reference(case, native), x)
    for what, a, b in (("forward", y, ny), ("dX", dx, ndx), ("dW", dw, ndw)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max(), err_msg=what)
    mbm7_layer = twin_pair(case, "mbm7")[0]
    far = np.abs(mbm7_layer(x).numpy() - ny).max()
    assert far > 1e-3 * np.abs(ny).max(), f"mbm7 output within {far} of native"


_FP32_TWIN_CHECK = """
import sys
import numpy as np
import tensorflow as tf
sys.path[:0] = [{tests!r}, {tests_tf!r}]
import test_layers_new as t
for case in sorted(c for c in t.TWIN_CASES if t.dilated(c)):
    layer, native, x = t.twin_pair(case, "fp32")
    for what, a, b in zip(("forward", "dX", "dW"), t.run_layer(layer, x), t.run_layer(native, x)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max(), err_msg=case + " " + what)
    print("ok", case)
"""


def test_fp32_dilated_layers_equal_keras_twins():
    """Every phase fp32 on a dilated layer equals Keras's twin. TF's own CPU kernels reject dilated
    transposed convs and Conv3D without oneDNN, so the twin runs in a process with oneDNN on
    (TF_ENABLE_ONEDNN_OPTS=1 works on any x86-64 CPU)."""
    import os
    import subprocess
    import sys

    tests_tf = os.path.dirname(os.path.abspath(__file__))
    script = _FP32_TWIN_CHECK.format(tests=os.path.dirname(tests_tf), tests_tf=tests_tf)
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checked = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert checked == sorted(c for c in TWIN_CASES if dilated(c)) and checked, proc.stdout


@pytest.mark.parametrize("case", sorted(TWIN_CASES))
def test_get_config_round_trip(case, registered_bf16):
    cls, kwargs, _ = TWIN_CASES[case]
    layer = cls(**kwargs, multiplier="bf16", grad_input_multiplier="fp32", name="layer_x")
    config = layer.get_config()
    assert [config[k] for k in ("multiplier", "grad_input_multiplier", "grad_weight_multiplier")] == [
        "bf16",
        "fp32",
        None,
    ]
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config
    assert keras.saving.get_registered_name(cls) == f"approxtrain>{cls.__name__}"


NEW_LAYERS = [am.AMEinsumDense, am.AMConv3D, am.AMConv1DTranspose, am.AMConv2DTranspose, am.AMConv3DTranspose]


def first_case(cls):
    return next(v for v in TWIN_CASES.values() if v[0] is cls)


@pytest.mark.parametrize("cls", NEW_LAYERS)
def test_substitute_replaces_the_twin(cls, registered_bf16):
    _, kwargs, shape = first_case(cls)
    rng = np.random.default_rng(15)
    x = bf16_values(rng, shape)
    inputs = keras.Input(shape[1:])
    native = keras.Model(inputs, cls.keras_twin(**kwargs, name="twin")(inputs))
    for v in native.weights:
        v.assign(bf16_values(rng, v.shape))  # so bf16's products are exact
    model = at.substitute(native, multiplier="bf16", grad_weight_multiplier="fp32")
    layer = model.get_layer("twin")
    assert type(layer) is cls and (layer.multiplier, layer.grad_weight_multiplier) == ("bf16", "fp32")
    assert type(native.get_layer("twin")) is cls.keras_twin
    np.testing.assert_allclose(model(x).numpy(), native(x).numpy(), rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("cls", NEW_LAYERS)
def test_keras_save_load_round_trip(cls, tmp_path, registered_bf16):
    _, kwargs, shape = first_case(cls)
    x = bf16_values(np.random.default_rng(16), shape)
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, cls(**kwargs, multiplier="bf16", grad_weight_multiplier="fp32", name="am")(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    layer = keras.saving.load_model(path).get_layer("am")
    assert type(layer) is cls
    assert (layer.multiplier, layer.grad_input_multiplier, layer.grad_weight_multiplier) == ("bf16", None, "fp32")
    assert_bits_equal(layer(x).numpy(), model(x).numpy(), "loaded model")


@pytest.mark.parametrize("cls", NEW_LAYERS)
def test_trains_in_keras_fit_with_an_unknown_batch(cls):
    """fit traces the layer with batch None: the ops must keep the static shapes they need (depths)."""
    _, kwargs, shape = first_case(cls)
    inputs = keras.Input(shape[1:])
    layer = cls(**kwargs, multiplier="mbm7")
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(layer(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse", jit_compile="auto")
    before = layer.kernel.numpy().copy()
    rng = np.random.default_rng(17)
    history = model.fit(
        rng.standard_normal((4,) + shape[1:]).astype(np.float32),
        rng.standard_normal((4, 1)).astype(np.float32),
        batch_size=2,
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(layer.kernel.numpy(), before)


def test_bench_layers_section_rows(tmp_path):
    from approxtrain import cli
    import json

    out = tmp_path / "rows.json"
    argv = [
        "bench",
        "--section",
        "layers",
        "--quick",
        "--layers",
        "AMConv3D,AMEinsumDense",
        "--layer-repeats",
        "1",
        "--json",
        str(out),
    ]
    assert cli.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["layer"] for r in rows] == ["AMEinsumDense", "AMConv3D"]
    assert all(r["ratio"] == pytest.approx(r["am_ms"] / r["native_ms"]) and r["native_ms"] > 0 for r in rows)


def test_bad_shapes_are_clear_errors():
    x = np.zeros((1, 3, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"output_shape's channels 5 must equal the filter's output channels 3"):
        at.ops.conv2d_transpose(x, np.zeros((2, 2, 3, 2), np.float32), BF16, [1, 6, 8, 5], strides=2)
    with pytest.raises(ValueError, match=r"input channels 2 must equal the filter's last dimension 4"):
        at.ops.conv2d_transpose(x, np.zeros((2, 2, 3, 4), np.float32), BF16, [1, 6, 8, 3], strides=2)
    # An output_shape whose convolution does not give back x's 3 x 4 (TF's kernels refuse it too).
    message = (
        r"conv2d_transpose: output_shape \[1, 6, 6, 3\] is not the transpose of input \(1, 3, 4, 2\): the "
        r"convolution of that shape by a \(3, 2\) filter \(strides \(2, 2\), padding SAME\) gives spatial "
        r"\(3, 3\), not \(3, 4\)"
    )
    with pytest.raises(ValueError, match=message):
        at.ops.conv2d_transpose(x, np.zeros((3, 2, 3, 2), np.float32), BF16, [1, 6, 6, 3], strides=2, padding="SAME")
    with pytest.raises(ValueError, match=r"gives spatial \(2, 3\), not \(3, 4\)"):
        at.ops.conv2d_transpose(x, np.zeros((3, 2, 3, 2), np.float32), BF16, [1, 6, 7, 3], strides=2)
    with pytest.raises(ValueError, match=r"3-D convolutions take padding 'SAME' or 'VALID', got 'CAUSAL'"):
        at.ops.conv3d(
            np.zeros((1, 3, 3, 3, 2), np.float32), np.zeros((2, 2, 2, 2, 3), np.float32), BF16, padding="CAUSAL"
        )

    @tf.function(input_signature=[tf.TensorSpec([1, None, 3, 3, 2], tf.float32)])
    def unknown_depth(x):
        return at.ops.conv3d(x, tf.zeros((2, 2, 2, 2, 3)), BF16)

    with pytest.raises(ValueError, match=r"conv3d input depth must be known statically"):
        unknown_depth.get_concrete_function()


@pytest.mark.parametrize(
    "strides,kernel,padding,size",
    [
        ((2, 2), (3, 3), "SAME", (7, 8)),
        ((3, 2), (2, 5), "SAME", (9, 5)),
        ((3, 3), (2, 2), "VALID", (8, 7)),
        ((2, 3), (4, 3), "VALID", (9, 10)),
        ((4, 2), (3, 1), "SAME", (10, 6)),
        ((2, 2), (3, 2), [[2, 1], [0, 3]], (7, 8)),
    ],
)
def test_phased_input_gradient_equals_the_one_op_form(strides, kernel, padding, size):
    """The per-phase input gradient (transposed-conv forward, conv3d dX) gives the bits of one
    AMConv2DBackpropInput, whose canonical order multiplies +0 where a tap reaches no output."""
    from approxtrain.ops import _conv, _conv_transpose
    from approxtrain.ops._op_table import op_table_for

    rng = np.random.default_rng(18)
    attrs = _conv.conv_attrs(strides, padding, 1)
    x_shape = (2,) + size + (3,)
    w = tf.constant(rng.standard_normal(kernel + (3, 4)).astype(np.float32))
    out = _conv.forward(tf.zeros(x_shape), w, None, attrs).shape
    dy = tf.constant(rng.standard_normal(out).astype(np.float32))
    table = op_table_for(FWD)
    phased = _conv_transpose.input_grad(list(x_shape), w, dy, table, attrs, 1)
    one_op = _conv.input_grad(list(x_shape), w, dy, table, attrs, 1)
    assert_bits_equal(phased.numpy(), one_op.numpy(), "phased input gradient")
