"""approxtrain.ops conv2d / depthwise_conv2d / conv1d: agreement with exact sums, bit-exactness, errors.

The references are float64 NumPy convolutions (_compare.conv2d_exact...), not TF's own conv
gradients: those exist for dilated and grouped convs only with oneDNN, which TF turns off on
CPUs without AVX-512, and the results must not depend on the CPU. Run this file under
TF_ENABLE_ONEDNN_OPTS=0 and =1; test_conv_fp32_phase.py checks the "fp32" phase under =0
in a subprocess whatever the CPU.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import amsim_reference as ref  # noqa: E402
from _compare import (  # noqa: E402
    assert_bits_equal,
    assert_close_to_native,
    bf16_values,
    conv2d_exact_with_bounds,
)

from approxtrain import ops  # noqa: E402
from approxtrain.core import conv_paddings  # noqa: E402
from approxtrain.ops import _native_conv_grads as native_grads  # noqa: E402
from approxtrain.ops._conv import conv_attrs  # noqa: E402


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _tf_padding(padding):
    return padding if isinstance(padding, str) else [[0, 0], list(padding[0]), list(padding[1]), [0, 0]]


def _with_grads(fn, x, w, g):
    x, w = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = fn(x, w)
    dx, dw = tape.gradient(y, [x, w], output_gradients=tf.constant(g))
    return y.numpy(), dx.numpy(), dw.numpy()


def _exact(x, w, g, strides, padding, dilations, groups):
    """Float64 (y, dx, dw) and their sums of |products| for a conv2d of the given arguments."""
    s, d = _pair(strides), _pair(dilations)
    pads = conv_paddings(padding, x.shape[1:3], w.shape[:2], s, d)
    return conv2d_exact_with_bounds(x, w, g, strides=s, dilations=d, pads=pads, groups=groups)


def _assert_three_close(got, exact, bounds, what):
    for a, b, bound, part in zip(got, exact, bounds, ("forward", "input grad", "filter grad")):
        assert_close_to_native(a, b, bound, f"{what}: {part}")


def _output_shape(x_shape, w_shape, strides, padding, dilations):
    s, d = _pair(strides), _pair(dilations)
    pt, pb, pl, pr = conv_paddings(padding, x_shape[1:3], w_shape[:2], s, d)
    oh = (x_shape[1] + pt + pb - (w_shape[0] - 1) * d[0] - 1) // s[0] + 1
    ow = (x_shape[2] + pl + pr - (w_shape[1] - 1) * d[1] - 1) // s[1] + 1
    return (x_shape[0], oh, ow, w_shape[3])


# (x shape, w shape, strides, padding, dilations); groups = C / w.shape[2]
CONV_CASES = [
    ((2, 7, 7, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((2, 8, 8, 4), (3, 3, 4, 5), 2, "SAME", 1),
    ((1, 9, 7, 4), (3, 2, 2, 6), (2, 1), "SAME", (1, 2)),  # groups = 2
    ((1, 6, 6, 3), (2, 2, 1, 6), 1, [[1, 0], [2, 1]], 1),  # depthwise, explicit padding
    ((2, 5, 5, 2), (5, 5, 2, 3), 1, "SAME", 1),
    ((1, 10, 10, 4), (3, 3, 4, 4), 3, "SAME", 2),
    ((1, 7, 7, 2), (1, 1, 2, 3), 2, "VALID", 1),
    ((1, 6, 8, 8), (3, 3, 2, 8), (1, 2), [[2, 2], [0, 3]], (2, 1)),  # groups = 4
    ((2, 9, 9, 4), (3, 3, 1, 8), 2, "SAME", 2),  # depthwise, strided and dilated
    ((1, 7, 8, 6), (2, 3, 3, 4), 1, [[5, 0], [1, 4]], 2),  # groups = 2, padding wider than the filter
    ((2, 8, 7, 6), (2, 3, 2, 9), (2, 3), "VALID", (2, 1)),  # groups = 3
    ((1, 5, 6, 3), (3, 3, 3, 2), 2, [[1, 2], [2, 0]], 1),  # plain, explicit padding
]


@pytest.mark.parametrize("phase", ["bf16", "fp32"])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", CONV_CASES)
def test_conv2d_and_gradients_match_exact_sums(request, phase, x_shape, w_shape, strides, padding, dilations):
    """The bf16 table on bf16 values (exact products) and the native fp32 phase both equal the
    float64 sums up to float32 summation: |diff| <= 2e-5 * sum |products|."""
    multiplier = request.getfixturevalue("bf16") if phase == "bf16" else "fp32"
    rng = np.random.default_rng(21)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    g = bf16_values(rng, _output_shape(x_shape, w_shape, strides, padding, dilations))
    groups = x_shape[3] // w_shape[2]
    got = _with_grads(lambda a, b: ops.conv2d(a, b, multiplier, strides, padding, dilations), x, w, g)
    exact, bounds = _exact(x, w, g, strides, padding, dilations, groups)
    _assert_three_close(got, exact, bounds, phase)


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", CONV_CASES)
def test_portable_native_gradients_match_exact_sums(x_shape, w_shape, strides, padding, dilations):
    """The formulation used where TF has no dilated/grouped gradient kernels, checked on any CPU."""
    rng = np.random.default_rng(28)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    g = bf16_values(rng, _output_shape(x_shape, w_shape, strides, padding, dilations))
    groups = x_shape[3] // w_shape[2]
    attrs = conv_attrs(strides, padding, dilations)
    dx = native_grads.portable_input_grad(x.shape, tf.constant(w), tf.constant(g), attrs, groups)
    dw = native_grads.portable_filter_grad(tf.constant(x), w.shape, tf.constant(g), attrs, groups)
    (_, dx_exact, dw_exact), (_, bx, bw) = _exact(x, w, g, strides, padding, dilations, groups)
    assert_close_to_native(dx.numpy(), dx_exact, bx, "portable input grad")
    assert_close_to_native(dw.numpy(), dw_exact, bw, "portable filter grad")


def test_portable_native_gradients_with_shapes_known_only_at_run_time():
    """Unknown batch, size and channels (groups None: inferred when the graph runs)."""
    attrs = conv_attrs((2, 1), [[1, 2], [0, 1]], (1, 2))
    spec = tf.TensorSpec([None, None, None, None], tf.float32)

    @tf.function(input_signature=[spec, spec, spec])
    def grads(x, w, g):
        return (
            native_grads.portable_input_grad(tf.shape(x), w, g, attrs, None),
            native_grads.portable_filter_grad(x, tf.shape(w), g, attrs, None),
        )

    rng = np.random.default_rng(29)
    x, w = bf16_values(rng, (2, 7, 9, 6)), bf16_values(rng, (3, 2, 2, 3))  # groups = 3
    g = bf16_values(rng, _output_shape(x.shape, w.shape, (2, 1), [[1, 2], [0, 1]], (1, 2)))
    dx, dw = grads(x, w, g)
    (_, dx_exact, dw_exact), (_, bx, bw) = _exact(x, w, g, (2, 1), [[1, 2], [0, 1]], (1, 2), 3)
    assert_close_to_native(dx.numpy(), dx_exact, bx, "portable input grad")
    assert_close_to_native(dw.numpy(), dw_exact, bw, "portable filter grad")


def test_native_forward_is_tf_conv2d_bit_for_bit():
    """The fp32 forward is TF's own Conv2D, grouped and dilated too (it exists on every CPU)."""
    rng = np.random.default_rng(30)
    x, w = rng.standard_normal((2, 9, 8, 6)).astype(np.float32), rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    got = ops.conv2d(x, w, "fp32", strides=(1, 2), padding="SAME", dilations=2)
    assert_bits_equal(got, tf.nn.conv2d(x, w, (1, 2), "SAME", dilations=2), "fp32 forward")


# (x shape, w shape [KH, KW, C, mult], strides, padding, dilations)
DEPTHWISE_CASES = [
    ((2, 7, 7, 3), (3, 3, 3, 2), 1, "SAME", 1),
    ((1, 8, 8, 2), (3, 3, 2, 1), 2, "VALID", 1),
    ((1, 9, 9, 2), (3, 3, 2, 3), 1, "SAME", 2),
    ((1, 6, 7, 2), (2, 3, 2, 1), 1, [[0, 1], [2, 0]], 1),
    ((1, 9, 9, 2), (3, 3, 2, 2), 2, "SAME", 2),  # tf.nn.depthwise_conv2d gets this one wrong
    ((1, 9, 8, 3), (3, 2, 3, 1), 1, [[1, 2], [0, 3]], 2),
]


@pytest.mark.parametrize("phase", ["bf16", "fp32"])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", DEPTHWISE_CASES)
def test_depthwise_and_gradients_match_exact_sums(request, phase, x_shape, w_shape, strides, padding, dilations):
    multiplier = request.getfixturevalue("bf16") if phase == "bf16" else "fp32"
    rng = np.random.default_rng(22)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    grouped = w.reshape(w_shape[0], w_shape[1], 1, -1)  # the same filter as a grouped conv's
    g = bf16_values(rng, _output_shape(x_shape, grouped.shape, strides, padding, dilations))
    y, dx, dw = _with_grads(lambda a, b: ops.depthwise_conv2d(a, b, multiplier, strides, padding, dilations), x, w, g)
    exact, bounds = _exact(x, grouped, g, strides, padding, dilations, x_shape[3])
    _assert_three_close((y, dx, dw.reshape(grouped.shape)), exact, bounds, phase)


@pytest.mark.parametrize(
    "x_shape,w_shape,strides,padding,dilations",
    [c for c in DEPTHWISE_CASES if _pair(c[2]) == (1, 1) or _pair(c[4]) == (1, 1)],
)
def test_bf16_depthwise_matches_tf_depthwise_forward(bf16, x_shape, w_shape, strides, padding, dilations):
    rng = np.random.default_rng(31)
    x, w = bf16_values(rng, x_shape), bf16_values(rng, w_shape)
    s, d = _pair(strides), _pair(dilations)
    native = tf.nn.depthwise_conv2d(x, w, [1, *s, 1], _tf_padding(padding), dilations=d).numpy()
    grouped = w.reshape(w_shape[0], w_shape[1], 1, -1)
    _, (bound, _, _) = _exact(x, grouped, np.zeros(native.shape, np.float32), strides, padding, dilations, x_shape[3])
    assert_close_to_native(ops.depthwise_conv2d(x, w, bf16, strides, padding, dilations), native, bound, "forward")


def test_all_fp32_depthwise_is_the_native_op():
    @tf.function
    def f(x, w):
        return ops.depthwise_conv2d(x, w, "fp32", padding="SAME")

    graph = f.get_concrete_function(
        tf.TensorSpec([1, 5, 5, 2], tf.float32), tf.TensorSpec([3, 3, 2, 1], tf.float32)
    ).graph
    types = {op.type for op in graph.get_operations()}
    assert "DepthwiseConv2dNative" in types and not any(t.startswith("AM") for t in types)


@pytest.mark.parametrize("phase", ["bf16", "fp32"])
@pytest.mark.parametrize("padding", ["VALID", "SAME", "CAUSAL"])
def test_conv1d_matches_exact_sums(request, phase, padding):
    multiplier = request.getfixturevalue("bf16") if phase == "bf16" else "fp32"
    rng = np.random.default_rng(23)
    x, w = bf16_values(rng, (2, 11, 4)), bf16_values(rng, (3, 2, 6))  # groups = 2
    padding2d = [[0, 0], [4, 0]] if padding == "CAUSAL" else padding  # causal: (K - 1) * dilation on the left
    x2, w2 = x[:, None], w[None]
    g2 = bf16_values(rng, _output_shape(x2.shape, w2.shape, 1, padding2d, (1, 2)))
    y, dx, dw = _with_grads(lambda a, b: ops.conv1d(a, b, multiplier, padding=padding, dilations=2), x, w, g2[:, 0])
    exact, bounds = _exact(x2, w2, g2, 1, padding2d, (1, 2), 2)
    _assert_three_close((y[:, None], dx[:, None], dw[None]), exact, bounds, phase)


# --- bit-exact against the NumPy reference with a random table --------------------------------

# (x shape, w shape, strides, padding, dilations)
EXACT_CASES = [
    ((1, 5, 5, 2), (3, 3, 2, 3), 1, "VALID", 1),
    ((2, 6, 5, 4), (2, 3, 2, 4), (2, 1), "SAME", (1, 2)),  # groups = 2
    ((1, 5, 5, 3), (3, 3, 1, 3), 1, [[1, 2], [0, 1]], 1),  # depthwise, explicit
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
    y, dx, dw = _with_grads(
        lambda a, b: ops.conv2d(a, b, "fp32", padding="SAME", grad_input_multiplier=m, grad_weight_multiplier=bf16),
        x,
        w,
        g,
    )
    assert_bits_equal(y, tf.nn.conv2d(x, w, 1, "SAME").numpy(), "forward (native)")
    assert_bits_equal(
        dx, ref.conv2d_input_grad(x.shape, w, g, m.lut, 7, m.operand_rounding, pads=pads), "input grad (random table)"
    )
    assert_bits_equal(
        dw, ref.conv2d_filter_grad(x, w.shape, g, bf16.lut, 7, "nearest", pads=pads), "filter grad (bf16 table)"
    )


def test_padded_zero_times_infinite_weight_is_nan(bf16):
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.full((3, 3, 1, 1), np.inf, np.float32)
    y = ops.conv2d(x, w, bf16, padding="SAME").numpy()
    assert np.isnan(y).all()  # as TF: padding zeros are multiplied like any other value


def test_static_shapes_and_dynamic_batch(random_multiplier):
    m = random_multiplier

    @tf.function(input_signature=[tf.TensorSpec([None, 9, 9, 4], tf.float32), tf.TensorSpec([3, 3, 2, 6], tf.float32)])
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.conv2d(x, w, m, strides=2, padding="SAME", groups=2)
        assert y.shape.as_list() == [None, 5, 5, 6]
        return (y,) + tuple(tape.gradient(y, [x, w]))

    rng = np.random.default_rng(26)
    x, w = rng.standard_normal((2, 9, 9, 4)).astype(np.float32), rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    got = step(x, w)
    eager = _with_grads(
        lambda a, b: ops.conv2d(a, b, m, strides=2, padding="SAME", groups=2), x, w, np.ones((2, 5, 5, 6), np.float32)
    )
    for a, b, what in zip(got, eager, ("forward", "input grad", "filter grad")):
        assert_bits_equal(a.numpy(), b, what)


# --- groups inferred from the shapes, as tf.nn.conv2d does ---------------------------------------


def test_inferred_groups_equal_explicit_groups_bit_for_bit(random_multiplier):
    rng = np.random.default_rng(32)
    x = ref.random_floats(rng, (2, 7, 6, 6), normal_fraction=0.9)
    w = ref.random_floats(rng, (3, 2, 2, 9), normal_fraction=0.9)  # groups = 6 / 2 = 3
    g = ref.random_floats(rng, (2, 7, 3, 9), normal_fraction=0.9)
    conv = dict(strides=(1, 2), padding="SAME", dilations=(2, 1))
    inferred = _with_grads(lambda a, b: ops.conv2d(a, b, random_multiplier, **conv), x, w, g)
    explicit = _with_grads(lambda a, b: ops.conv2d(a, b, random_multiplier, groups=3, **conv), x, w, g)
    for a, b, what in zip(inferred, explicit, ("forward", "input grad", "filter grad")):
        assert_bits_equal(a, b, what)
    pads = conv_paddings("SAME", (7, 6), (3, 2), (1, 2), (2, 1))
    want = ref.conv2d(x, w, *random_multiplier.core_args, strides=(1, 2), dilations=(2, 1), pads=pads, groups=3)
    assert_bits_equal(inferred[0], want, "forward against the reference")


def test_inferred_grouped_conv_equals_tf_conv2d_forward(bf16):
    rng = np.random.default_rng(33)
    x, w = bf16_values(rng, (2, 8, 7, 8)), bf16_values(rng, (3, 3, 2, 12))  # groups = 4
    native = tf.nn.conv2d(x, w, 2, "SAME").numpy()  # tf.nn.conv2d infers the groups too
    _, (bound, _, _) = _exact(x, w, np.zeros(native.shape, np.float32), 2, "SAME", 1, 4)
    assert_close_to_native(ops.conv2d(x, w, bf16, strides=2, padding="SAME"), native, bound, "bf16 forward")
    assert_bits_equal(ops.conv2d(x, w, "fp32", strides=2, padding="SAME"), native, "fp32 forward")


def test_conv1d_infers_groups(random_multiplier):
    rng = np.random.default_rng(34)
    x, w = ref.random_floats(rng, (2, 9, 6), 0.9), ref.random_floats(rng, (3, 3, 4), 0.9)  # groups = 2
    g = ref.random_floats(rng, (2, 7, 4), 0.9)
    inferred = _with_grads(lambda a, b: ops.conv1d(a, b, random_multiplier), x, w, g)
    explicit = _with_grads(lambda a, b: ops.conv1d(a, b, random_multiplier, groups=2), x, w, g)
    for a, b, what in zip(inferred, explicit, ("forward", "input grad", "filter grad")):
        assert_bits_equal(a, b, what)


@pytest.mark.parametrize("multiplier", ["bf16", "fp32"])
def test_channels_that_do_not_split_into_groups(request, multiplier):
    m = request.getfixturevalue("bf16") if multiplier == "bf16" else "fp32"
    with pytest.raises(ValueError) as e:
        ops.conv2d(np.ones((1, 5, 5, 5), np.float32), np.ones((3, 3, 2, 4), np.float32), m)
    assert str(e.value) == (
        "conv2d: input channels 5 are not a multiple of the filter's input channels 2, so they "
        "do not split into groups (input shape (1, 5, 5, 5), filter shape (3, 3, 2, 4))"
    )
    with pytest.raises(ValueError) as e:
        ops.conv1d(np.ones((1, 9, 6), np.float32), np.ones((3, 4, 4), np.float32), m)
    assert str(e.value) == (
        "conv1d: input channels 6 are not a multiple of the filter's input channels 4, so they "
        "do not split into groups (input shape (1, 9, 6), filter shape (3, 4, 4))"
    )
    with pytest.raises(ValueError) as e:
        ops.conv2d(np.ones((1, 5, 5, 4), np.float32), np.ones((3, 3, 2, 3), np.float32), m)
    assert str(e.value) == (
        "conv2d: filter output channels 3 are not a multiple of groups=2 (4 input channels / "
        "2 filter input channels) (input shape (1, 5, 5, 4), filter shape (3, 3, 2, 3))"
    )


@pytest.mark.parametrize("groups", [0, -2, 1.5, True, "2"])
def test_groups_must_be_a_positive_int(bf16, groups):
    with pytest.raises(ValueError) as e:
        ops.conv2d(np.ones((1, 5, 5, 4), np.float32), np.ones((3, 3, 2, 4), np.float32), bf16, groups=groups)
    assert str(e.value) == f"conv2d: groups must be a positive int or None (inferred from the shapes), got {groups!r}"


def test_inferred_groups_at_run_time_when_channels_are_unknown(random_multiplier):
    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, None], tf.float32)])
    def f(x):
        return ops.conv2d(x, tf.ones([3, 3, 2, 4]), random_multiplier, padding="SAME")

    x = ref.random_floats(np.random.default_rng(35), (1, 6, 6, 4), 0.9)
    assert_bits_equal(
        f(x),
        ops.conv2d(x, tf.ones([3, 3, 2, 4]), random_multiplier, padding="SAME", groups=2),
        "forward, groups inferred when the graph runs",
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiple of the filter's input channels"):
        f(tf.ones([1, 6, 6, 5]))


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
        lib.am_conv2d(
            tf.ones([1, 5, 5, 5]),
            tf.ones([3, 3, 2, 4]),
            ops.table(bf16),
            strides=[1, 1, 1, 1],
            padding="VALID",
            operand_rounding="nearest",
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by groups"):
        lib.am_conv2d(
            tf.ones([1, 5, 5, 4]),
            tf.ones([3, 3, 2, 3]),
            ops.table(bf16),
            strides=[1, 1, 1, 1],
            padding="VALID",
            operand_rounding="nearest",
        )


def test_filter_larger_than_padded_input(bf16):
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the padded input"):
        ops.conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((5, 5, 1, 1), np.float32), bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the padded input"):
        ops.conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((2, 2, 1, 1), np.float32), bf16, dilations=3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(strides=0), "strides"),
        (dict(dilations=(1, 0)), "dilations"),
        (dict(padding="FULL"), "padding"),
        (dict(padding=[[1, -1], [0, 0]]), "padding"),
    ],
)
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
        lib.am_conv2d(
            x, w, t, strides=[1, 1, 1, 1], padding="EXPLICIT", explicit_paddings=[0, 0, 1], operand_rounding="nearest"
        )


def test_wrong_ranks_and_dtypes(bf16):
    with pytest.raises(ValueError, match="rank 4"):
        ops.conv2d(np.ones((5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), bf16)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d(np.ones((1, 5, 5, 1), np.float64), np.ones((3, 3, 1, 1), np.float32), bf16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="4-D"):
        ops.library().am_conv2d(
            tf.ones([5, 5, 1]),
            tf.ones([3, 3, 1, 1]),
            ops.table(bf16),
            strides=[1, 1, 1, 1],
            padding="VALID",
            operand_rounding="nearest",
        )
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
