"""approxtrain.ops conv2d / depthwise_conv2d / conv1d: native agreement, bit-exactness, errors."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import amsim_reference as ref  # noqa: E402
from _compare import assert_bits_equal, assert_close_to_native, bf16_values  # noqa: E402

from approxtrain import ops  # noqa: E402
from approxtrain.core import conv_paddings  # noqa: E402


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _tf_padding(padding):
    return padding if isinstance(padding, str) else [[0, 0], list(padding[0]), list(padding[1]), [0, 0]]


def _native_conv(x, w, strides, padding, dilations):
    """tf.nn.conv2d; explicit padding as tf.pad + VALID (TF's CPU kernel has no grouped input
    gradient with explicit padding)."""
    if not isinstance(padding, str):
        x = tf.pad(x, [[0, 0], list(padding[0]), list(padding[1]), [0, 0]])
        padding = "VALID"
    return tf.nn.conv2d(x, w, strides=strides, padding=padding, dilations=dilations)


def _with_grads(fn, x, w, g):
    x, w = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = fn(x, w)
    dx, dw = tape.gradient(y, [x, w], output_gradients=tf.constant(g))
    return y.numpy(), dx.numpy(), dw.numpy()


def _abs_bounds(x, w, g, strides, padding, dilations):
    """Sums of |products| of the forward pass and both gradients (native convs of |.|)."""
    ax, aw, ag = tf.abs(x), tf.abs(w), tf.abs(g)
    return _with_grads(lambda a, b: _native_conv(a, b, strides, padding, dilations), ax, aw, ag)


# (x shape, w shape, strides, padding, dilations); groups = C / w.shape[2]
CONV_CASES = [
    ((2, 7, 7, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((2, 8, 8, 4), (3, 3, 4, 5), 2, "SAME", 1),
    ((1, 9, 7, 4), (3, 2, 2, 6), (2, 1), "SAME", (1, 2)),      # groups = 2
    ((1, 6, 6, 3), (2, 2, 1, 6), 1, [[1, 0], [2, 1]], 1),       # depthwise, explicit padding
    ((2, 5, 5, 2), (5, 5, 2, 3), 1, "SAME", 1),
    ((1, 10, 10, 4), (3, 3, 4, 4), 3, "SAME", 2),
    ((1, 7, 7, 2), (1, 1, 2, 3), 2, "VALID", 1),
    ((1, 6, 8, 8), (3, 3, 2, 8), (1, 2), [[2, 2], [0, 3]], (2, 1)),  # groups = 4
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", CONV_CASES)
def test_bf16_table_matches_native_conv2d_and_gradients(bf16, x_shape, w_shape, strides, padding, dilations):
    rng = np.random.default_rng(21)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    groups = x_shape[3] // w_shape[2]
    kw = dict(strides=strides, padding=padding, dilations=dilations)
    native = lambda a, b: _native_conv(a, b, strides, padding, dilations)
    g = bf16_values(rng, native(x, w).shape)
    y, dx, dw = _with_grads(lambda a, b: ops.conv2d(a, b, bf16, groups=groups, **kw), x, w, g)
    yn, dxn, dwn = _with_grads(native, x, w, g)
    by, bx, bw = _abs_bounds(x, w, g, strides, padding, dilations)
    assert_close_to_native(y, yn, by, "forward")
    assert_close_to_native(dx, dxn, bx, "input grad")
    assert_close_to_native(dw, dwn, bw, "filter grad")


# (x shape, w shape [KH, KW, C, mult], strides, padding, dilations)
DEPTHWISE_CASES = [
    ((2, 7, 7, 3), (3, 3, 3, 2), 1, "SAME", 1),
    ((1, 8, 8, 2), (3, 3, 2, 1), 2, "VALID", 1),
    ((1, 9, 9, 2), (3, 3, 2, 3), 1, "SAME", 2),
    ((1, 6, 7, 2), (2, 3, 2, 1), 1, [[0, 1], [2, 0]], 1),
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", DEPTHWISE_CASES)
def test_bf16_table_matches_native_depthwise_and_gradients(bf16, x_shape, w_shape, strides, padding, dilations):
    rng = np.random.default_rng(22)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    s, d = _pair(strides), _pair(dilations)
    native = lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, *s, 1], _tf_padding(padding), dilations=d)
    g = bf16_values(rng, native(x, w).shape)
    y, dx, dw = _with_grads(lambda a, b: ops.depthwise_conv2d(a, b, bf16, strides, padding, dilations), x, w, g)
    yn, dxn, dwn = _with_grads(native, x, w, g)
    # Sums of |products| via the equivalent grouped convolution.
    grouped = w.reshape(w_shape[0], w_shape[1], 1, -1)
    by, bx, bw = _abs_bounds(x, grouped, g, strides, padding, dilations)
    assert_close_to_native(y, yn, by, "forward")
    assert_close_to_native(dx, dxn, bx, "input grad")
    assert_close_to_native(dw, dwn, bw.reshape(w_shape), "filter grad")


def test_all_fp32_depthwise_is_the_native_op():
    @tf.function
    def f(x, w):
        return ops.depthwise_conv2d(x, w, "fp32", padding="SAME")

    graph = f.get_concrete_function(tf.TensorSpec([1, 5, 5, 2], tf.float32),
                                    tf.TensorSpec([3, 3, 2, 1], tf.float32)).graph
    types = {op.type for op in graph.get_operations()}
    assert "DepthwiseConv2dNative" in types and not any(t.startswith("AM") for t in types)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CAUSAL"])
def test_bf16_conv1d_matches_native(bf16, padding):
    rng = np.random.default_rng(23)
    x, w = bf16_values(rng, (2, 11, 4)), bf16_values(rng, (3, 2, 6))  # groups = 2
    dilation = 2
    if padding == "CAUSAL":
        native = lambda a, b: tf.nn.conv2d(tf.pad(a, [[0, 0], [4, 0], [0, 0]])[:, None], b[None], 1, "VALID",
                                           dilations=[1, dilation])[:, 0]
    else:
        native = lambda a, b: tf.nn.conv2d(a[:, None], b[None], 1, padding, dilations=[1, dilation])[:, 0]
    g = bf16_values(rng, native(x, w).shape)
    y, dx, dw = _with_grads(lambda a, b: ops.conv1d(a, b, bf16, padding=padding, dilations=dilation, groups=2),
                            x, w, g)
    yn, dxn, dwn = _with_grads(native, x, w, g)
    # All operands are bf16 values, so every product is exact; only the summation order differs.
    for got, want, what in ((y, yn, "forward"), (dx, dxn, "input grad"), (dw, dwn, "filter grad")):
        scale = np.abs(want).max() + 1.0
        assert_close_to_native(got, want, np.full(want.shape, scale * 24), what)


# --- bit-exact against the NumPy reference with a random table --------------------------------

# (x shape, w shape, strides, padding, dilations)
EXACT_CASES = [
    ((1, 5, 5, 2), (3, 3, 2, 3), 1, "VALID", 1),
    ((2, 6, 5, 4), (2, 3, 2, 4), (2, 1), "SAME", (1, 2)),        # groups = 2
    ((1, 5, 5, 3), (3, 3, 1, 3), 1, [[1, 2], [0, 1]], 1),         # depthwise, explicit
    ((1, 7, 6, 2), (3, 2, 2, 2), 2, "VALID", 1),
    ((1, 6, 6, 2), (2, 2, 2, 2), 3, "SAME", 2),
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", EXACT_CASES)
def test_conv2d_and_gradients_bit_exact(random_multiplier, x_shape, w_shape, strides, padding, dilations):
    m = random_multiplier
    rng = np.random.default_rng(24)
    x = ref.random_floats(rng, x_shape, normal_fraction=0.8)
    w = ref.random_floats(rng, w_shape, normal_fraction=0.8)
    groups = x_shape[3] // w_shape[2]
    s, d = _pair(strides), _pair(dilations)
    pads = conv_paddings(padding, x_shape[1:3], w_shape[:2], s, d)
    args = (m.lut, m.mantissa_bits, m.operand_rounding)
    kw = dict(strides=s, dilations=d, pads=pads, groups=groups)
    y_ref = ref.conv2d(x, w, *args, **kw)
    g = ref.random_floats(rng, y_ref.shape, normal_fraction=0.8)
    y, dx, dw = _with_grads(lambda a, b: ops.conv2d(a, b, m, strides, padding, dilations, groups), x, w, g)
    assert_bits_equal(y, y_ref, "forward")
    assert_bits_equal(dx, ref.conv2d_input_grad(x.shape, w, g, *args, **kw), "input grad")
    assert_bits_equal(dw, ref.conv2d_filter_grad(x, w.shape, g, *args, **kw), "filter grad")


def test_grad_multipliers_route_to_their_gradient(bf16, random_multiplier):
    m = random_multiplier
    rng = np.random.default_rng(25)
    x, w = ref.random_floats(rng, (1, 5, 5, 2), 0.9), ref.random_floats(rng, (3, 3, 2, 2), 0.9)
    g = ref.random_floats(rng, (1, 5, 5, 2), 0.9)
    pads = conv_paddings("SAME", (5, 5), (3, 3), (1, 1), (1, 1))
    y, dx, dw = _with_grads(lambda a, b: ops.conv2d(a, b, "fp32", padding="SAME", grad_input_multiplier=m,
                                                    grad_weight_multiplier=bf16), x, w, g)
    assert_bits_equal(y, tf.nn.conv2d(x, w, 1, "SAME").numpy(), "forward (native)")
    assert_bits_equal(dx, ref.conv2d_input_grad(x.shape, w, g, m.lut, 7, m.operand_rounding, pads=pads),
                      "input grad (random table)")
    assert_bits_equal(dw, ref.conv2d_filter_grad(x, w.shape, g, bf16.lut, 7, "nearest", pads=pads),
                      "filter grad (bf16 table)")


def test_padded_zero_times_infinite_weight_is_nan(bf16):
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.full((3, 3, 1, 1), np.inf, np.float32)
    y = ops.conv2d(x, w, bf16, padding="SAME").numpy()
    assert np.isnan(y).all()  # as TF: padding zeros are multiplied like any other value


def test_static_shapes_and_dynamic_batch(random_multiplier):
    m = random_multiplier

    @tf.function(input_signature=[tf.TensorSpec([None, 9, 9, 4], tf.float32),
                                  tf.TensorSpec([3, 3, 2, 6], tf.float32)])
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.conv2d(x, w, m, strides=2, padding="SAME", groups=2)
        assert y.shape.as_list() == [None, 5, 5, 6]
        return (y,) + tuple(tape.gradient(y, [x, w]))

    rng = np.random.default_rng(26)
    x, w = rng.standard_normal((2, 9, 9, 4)).astype(np.float32), rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    got = step(x, w)
    eager = _with_grads(lambda a, b: ops.conv2d(a, b, m, strides=2, padding="SAME", groups=2), x, w,
                        np.ones((2, 5, 5, 6), np.float32))
    for a, b, what in zip(got, eager, ("forward", "input grad", "filter grad")):
        assert_bits_equal(a.numpy(), b, what)


# --- errors ------------------------------------------------------------------------------------

def test_groups_must_match_shapes(bf16):
    with pytest.raises(ValueError, match="groups=2 does not match"):
        ops.conv2d(np.ones((1, 5, 5, 4), np.float32), np.ones((3, 3, 4, 4), np.float32), bf16, groups=2)


def test_groups_checked_at_run_time_when_channels_are_unknown(bf16):
    @tf.function(input_signature=[tf.TensorSpec([1, 5, 5, None], tf.float32)])
    def f(x):
        return ops.conv2d(x, tf.ones([3, 3, 2, 4]), bf16, groups=2)

    assert f(tf.ones([1, 5, 5, 4])).shape == (1, 3, 3, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="groups=2 does not match"):
        f(tf.ones([1, 5, 5, 2]))


def test_channels_not_divisible_by_filter_channels(bf16):
    lib = ops.library()
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiple of the filter's input channels"):
        lib.am_conv2d(tf.ones([1, 5, 5, 5]), tf.ones([3, 3, 2, 4]), ops.table(bf16), strides=[1, 1, 1, 1],
                      padding="VALID", operand_rounding="nearest")
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by groups"):
        lib.am_conv2d(tf.ones([1, 5, 5, 4]), tf.ones([3, 3, 2, 3]), ops.table(bf16), strides=[1, 1, 1, 1],
                      padding="VALID", operand_rounding="nearest")


def test_filter_larger_than_padded_input(bf16):
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the padded input"):
        ops.conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((5, 5, 1, 1), np.float32), bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the padded input"):
        ops.conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((2, 2, 1, 1), np.float32), bf16, dilations=3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(strides=0), "strides"),
    (dict(dilations=(1, 0)), "dilations"),
    (dict(padding="FULL"), "padding"),
    (dict(padding=[[1, -1], [0, 0]]), "padding"),
])
def test_bad_window_arguments(bf16, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.conv2d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), bf16, **kwargs)


def test_bad_attributes_of_the_raw_op(bf16):
    lib = ops.library()
    x, w, t = tf.ones([1, 5, 5, 1]), tf.ones([3, 3, 1, 1]), ops.table(bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="strides must be"):
        lib.am_conv2d(x, w, t, strides=[1, 0, 1, 1], padding="VALID", operand_rounding="nearest")
    with pytest.raises(tf.errors.InvalidArgumentError, match="strides must be"):
        lib.am_conv2d(x, w, t, strides=[2, 1, 1, 1], padding="VALID", operand_rounding="nearest")
    with pytest.raises(tf.errors.InvalidArgumentError, match="dilations must be"):
        lib.am_conv2d(x, w, t, strides=[1, 1, 1, 1], dilations=[1, 1], padding="VALID", operand_rounding="nearest")
    with pytest.raises(tf.errors.InvalidArgumentError):
        lib.am_conv2d(x, w, t, strides=[1, 1, 1, 1], padding="EXPLICIT", explicit_paddings=[0, 0, 1],
                      operand_rounding="nearest")


def test_wrong_ranks_and_dtypes(bf16):
    with pytest.raises(ValueError, match="rank 4"):
        ops.conv2d(np.ones((5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), bf16)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d(np.ones((1, 5, 5, 1), np.float64), np.ones((3, 3, 1, 1), np.float32), bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="4-D"):
        ops.library().am_conv2d(tf.ones([5, 5, 1]), tf.ones([3, 3, 1, 1]), ops.table(bf16), strides=[1, 1, 1, 1],
                                padding="VALID", operand_rounding="nearest")
    with pytest.raises(ValueError, match="rank 3"):
        ops.conv1d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 1, 1), np.float32), bf16)


def test_gradient_ops_check_out_backprop_and_sizes(bf16):
    lib = ops.library()
    kw = dict(strides=[1, 1, 1, 1], padding="VALID", operand_rounding="nearest")
    w, t = tf.ones([3, 3, 2, 4]), ops.table(bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not match the convolution's output shape"):
        lib.am_conv2d_backprop_input([1, 5, 5, 2], w, tf.ones([1, 4, 4, 4]), t, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_sizes must be a 1-D tensor of 4"):
        lib.am_conv2d_backprop_input([1, 5, 5], w, tf.ones([1, 3, 3, 4]), t, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not match the convolution's output shape"):
        lib.am_conv2d_backprop_filter(tf.ones([1, 5, 5, 2]), [3, 3, 2, 4], tf.ones([1, 3, 3, 5]), t, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError):
        lib.am_conv2d_backprop_filter(tf.ones([1, 5, 5, 2]), [3, 3, -2, 4], tf.ones([1, 3, 3, 4]), t, **kw)


def test_native_input_gradient_of_grouped_conv_with_explicit_padding(bf16):
    """fp32 input gradient, groups = 4, explicit padding: TF's own CPU kernel refuses this case."""
    rng = np.random.default_rng(27)
    x, w = bf16_values(rng, (1, 6, 8, 8)), bf16_values(rng, (3, 3, 2, 8))
    padding = [[2, 1], [0, 3]]
    native = lambda a, b: _native_conv(a, b, (1, 2), padding, (2, 1))
    g = bf16_values(rng, native(x, w).shape)
    _, dx, _ = _with_grads(lambda a, b: ops.conv2d(a, b, bf16, (1, 2), padding, (2, 1), groups=4,
                                                   grad_input_multiplier="fp32"), x, w, g)
    _, dxn, _ = _with_grads(native, x, w, g)
    _, bx, _ = _abs_bounds(x, w, g, (1, 2), padding, (2, 1))
    assert_close_to_native(dx, dxn, bx, "input grad (native)")
