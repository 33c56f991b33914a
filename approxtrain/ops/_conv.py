"""AM convolutions: the ops, their gradients (docs/design.md, "Ops, layers and gradients") and the wrappers.

conv2d: x [N, H, W, C] (the table row) by w [KH, KW, C/groups, O], NHWC.
Gradients: dx = AMConv2DBackpropInput (dy the table row, grad_input_multiplier),
dw = AMConv2DBackpropFilter (x the table row, grad_weight_multiplier); their
canonical summation orders are documented in src/amsim/conv.h.
depthwise_conv2d and conv1d are conv2d with groups = C and with H = 1.
An "fp32" product is TF's native op; the native gradients of dilated and grouped convs come
from _native_conv_grads (TF's own kernels for them are missing on CPUs without oneDNN).
"""

import numbers
from dataclasses import dataclass

import tensorflow as tf

from approxtrain._op_library import library
from approxtrain._conv_padding import explicit_paddings, padding_mode
from approxtrain.ops import _native_conv_grads as native_grads
from approxtrain.ops._checks import float32_tensor, require_rank
from approxtrain.ops._op_table import op_table_for, op_table_of
from approxtrain.ops._tables import resolve_three
from approxtrain.quant.multipliers import any_integer


@dataclass(frozen=True)
class ConvAttrs:
    """The window attributes, exactly as the AM ops and tf.raw_ops.Conv2D take them (NHWC)."""

    strides: tuple
    padding: str
    explicit_paddings: tuple
    dilations: tuple

    def kwargs(self):
        return dict(
            strides=list(self.strides),
            padding=self.padding,
            explicit_paddings=list(self.explicit_paddings),
            dilations=list(self.dilations),
        )

    @classmethod
    def of_op(cls, op):
        padding = op.get_attr("padding")
        return cls(
            tuple(op.get_attr("strides")),
            padding.decode() if isinstance(padding, bytes) else padding,
            tuple(op.get_attr("explicit_paddings")),
            tuple(op.get_attr("dilations")),
        )


def _pair(v, what):
    if isinstance(v, int):
        v = (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(t, int) and t >= 1 for t in v):
        raise ValueError(f"{what} must be a positive int or a pair of positive ints, got {v!r}")
    return v


def conv_attrs(strides, padding, dilations):
    """ConvAttrs from wrapper arguments: padding "SAME" | "VALID" | [[top, bottom], [left, right]]."""
    sh, sw = _pair(strides, "strides")
    dh, dw = _pair(dilations, "dilations")
    mode, explicit = padding_mode(padding), ()
    if mode == "EXPLICIT":
        top, bottom, left, right = explicit_paddings(padding)
        explicit = (0, 0, top, bottom, left, right, 0, 0)
    return ConvAttrs((1, sh, sw, 1), mode, explicit, (1, dh, dw, 1))


# --- the three products, AM or native ----------------------------------------------------------


def forward(x, w, op_table, attrs):
    if op_table is None:
        return tf.raw_ops.Conv2D(input=x, filter=w, **attrs.kwargs())  # dilated and grouped too, on every backend
    return library().am_conv2d(x, w, op_table.tensor, operand_rounding=op_table.operand_rounding, **attrs.kwargs())


def input_grad(input_sizes, w, dy, op_table, attrs, groups):
    """``groups``: an int, or None when the channel counts are known only at run time."""
    if op_table is None:
        return native_grads.input_grad(input_sizes, w, dy, attrs, groups)
    return library().am_conv2d_backprop_input(
        input_sizes, w, dy, op_table.tensor, operand_rounding=op_table.operand_rounding, **attrs.kwargs()
    )


def filter_grad(x, filter_sizes, dy, op_table, attrs, groups):
    """``groups``: an int, or None when the channel counts are known only at run time."""
    if op_table is None:
        return native_grads.filter_grad(x, filter_sizes, dy, attrs, groups)
    return library().am_conv2d_backprop_filter(
        x, filter_sizes, dy, op_table.tensor, operand_rounding=op_table.operand_rounding, **attrs.kwargs()
    )


def _conv_with_gradients(x, w, op_tables, attrs, groups):
    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            return (
                input_grad(tf.shape(x), w, dy, op_tables[1], attrs, groups),
                filter_grad(x, tf.shape(w), dy, op_tables[2], attrs, groups),
            )

        return forward(x, w, op_tables[0], attrs), grad

    return conv(x, w)


# --- public wrappers ---------------------------------------------------------------------------


def _static_groups(x, w):
    """groups = input channels / filter input channels when both are known statically, else None."""
    channels, filter_in = x.shape[-1], w.shape[-2]
    return None if channels is None or filter_in is None or filter_in == 0 else channels // filter_in


def resolve_groups(x, w, groups, what):
    """The conv's groups (an int, or None when only run time knows the channel counts) and x.

    ``groups`` None: inferred as input channels / filter input channels, as tf.nn.conv* do;
    an int is checked against the shapes. x [..., C] and w [..., C/groups, O] are the
    caller's tensors, so errors name the shapes the caller passed. When the channel
    counts are unknown, an explicit ``groups`` is checked when the graph runs (x gets
    the check as a control dependency)."""
    if groups is not None:
        if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
            raise ValueError(
                f"{what}: groups must be a positive int or None (inferred from the shapes), got {groups!r}"
            )
        groups = int(groups)
    channels, filter_in, out_channels = x.shape[-1], w.shape[-2], w.shape[-1]
    shapes = f"(input shape {tuple(x.shape)}, filter shape {tuple(w.shape)})"
    inferred = groups is None
    if channels is not None and filter_in is not None:
        if groups is None:
            if filter_in == 0 or channels % filter_in:
                raise ValueError(
                    f"{what}: input channels {channels} are not a multiple of the filter's input channels "
                    f"{filter_in}, so they do not split into groups {shapes}"
                )
            groups = channels // filter_in
        elif channels != groups * filter_in:
            raise ValueError(
                f"{what}: groups={groups} does not match the shapes: input channels {channels} must equal "
                f"groups * filter input channels ({groups} * {filter_in}) {shapes}"
            )
    if groups is not None and out_channels is not None and out_channels % groups:
        source = f" ({channels} input channels / {filter_in} filter input channels)" if inferred else ""
        raise ValueError(
            f"{what}: filter output channels {out_channels} are not a multiple of groups={groups}{source} {shapes}"
        )
    if groups is not None and (channels is None or filter_in is None):
        # The op infers groups from the shapes; make sure they say what the caller meant.
        check = tf.debugging.assert_equal(
            tf.shape(x)[-1],
            groups * tf.shape(w)[-2],
            message=(
                f"{what}: groups={groups} does not match the shapes: input channels must equal "
                "groups * filter input channels"
            ),
        )
        with tf.control_dependencies([check]):
            x = tf.identity(x)
    return groups, x


def _integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range):
    """Whether a call goes to approxtrain.quant (an integer multiplier or quantization arguments)."""
    return (
        quantization is not None
        or input_range is not None
        or any_integer(multiplier, grad_input_multiplier, grad_weight_multiplier)
    )


def conv2d(
    x,
    w,
    multiplier,
    strides=1,
    padding="VALID",
    dilations=1,
    groups=None,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
):
    """AM 2-D convolution, NHWC: x [N, H, W, C] by w [KH, KW, C/groups, O] -> [N, OH, OW, O].

    ``padding``: "SAME" (TensorFlow's rule), "VALID" or [[top, bottom], [left, right]];
    ``strides``/``dilations``: an int or (h, w); ``groups``: None (default) infers it as
    C / w.shape[2], as tf.nn.conv2d does (a ValueError when C is not a multiple of
    w.shape[2]); an int is checked against the shapes.
    Products go through ``multiplier``'s table with x as the table row; the
    input gradient uses ``grad_input_multiplier`` (dy the row), the filter
    gradient ``grad_weight_multiplier`` (x the row); None = ``multiplier``,
    ``"fp32"`` = the native op.
    An integer multiplier quantizes x (the activation, range ``input_range`` or calibrated) and
    w (per output channel or tensor) as ``quantization`` says and multiplies the codes through
    its table, as im2col patches times the filter (docs/integer.md).
    """
    if _integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range):
        from approxtrain.quant import ops as quant_ops

        x = float32_tensor(x, "conv2d input x")
        w = float32_tensor(w, "conv2d filter w")
        require_rank(x, (4,), "conv2d input x [N, H, W, C]")
        require_rank(w, (4,), "conv2d filter w [KH, KW, C/groups, O]")
        groups, x = resolve_groups(x, w, groups, "conv2d")
        attrs = conv_attrs(strides, padding, dilations)
        return quant_ops.conv2d(
            x,
            w,
            multiplier,
            attrs,
            groups,
            grad_input_multiplier,
            grad_weight_multiplier,
            quantization,
            input_range,
            "conv2d",
        )
    resolved = resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    x = float32_tensor(x, "conv2d input x")
    w = float32_tensor(w, "conv2d filter w")
    require_rank(x, (4,), "conv2d input x [N, H, W, C]")
    require_rank(w, (4,), "conv2d filter w [KH, KW, C/groups, O]")
    groups, x = resolve_groups(x, w, groups, "conv2d")
    attrs = conv_attrs(strides, padding, dilations)
    if all(m is None for m in resolved) and native_grads.is_plain(attrs, groups):
        return tf.raw_ops.Conv2D(input=x, filter=w, **attrs.kwargs())  # TF's own gradients work everywhere
    return _conv_with_gradients(x, w, [op_table_for(m) for m in resolved], attrs, groups)


def depthwise_conv2d(
    x,
    w,
    multiplier,
    strides=1,
    padding="VALID",
    dilations=1,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
):
    """AM depthwise convolution: x [N, H, W, C] by w [KH, KW, C, multiplier] -> [N, OH, OW, C * multiplier].

    Computed as conv2d with groups = C: the filter's memory layout
    [KH, KW, C, mult] is the grouped filter [KH, KW, 1, C * mult].
    ``"fp32"`` everywhere means tf.nn.depthwise_conv2d (the native grouped conv2d
    when strides and dilations both exceed 1, which tf.nn.depthwise_conv2d gets wrong).
    An integer multiplier: conv2d's integer path with groups = C (per-channel: per output channel).
    """
    integer = _integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range)
    forward_m, grad_in, grad_w = (
        (None, None, None) if integer else resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    )
    x = float32_tensor(x, "depthwise_conv2d input x")
    w = float32_tensor(w, "depthwise_conv2d filter w")
    require_rank(x, (4,), "depthwise_conv2d input x [N, H, W, C]")
    require_rank(w, (4,), "depthwise_conv2d filter w [KH, KW, C, multiplier]")
    channels = x.shape[-1]
    if channels is None:
        raise ValueError(f"depthwise_conv2d needs a known channel count, got input shape {x.shape}")
    if w.shape[2] is not None and w.shape[2] != channels:
        raise ValueError(f"depthwise_conv2d filter {w.shape} must have {channels} input channels (input {x.shape})")
    attrs = conv_attrs(strides, padding, dilations)
    # tf.nn.depthwise_conv2d computes wrong values (and only warns) when strides and dilations both exceed 1.
    strided_and_dilated = attrs.strides != (1, 1, 1, 1) and attrs.dilations != (1, 1, 1, 1)
    if integer:
        return conv2d(
            x,
            tf.reshape(w, tf.stack([tf.shape(w)[0], tf.shape(w)[1], 1, -1])),
            multiplier,
            strides,
            padding,
            dilations,
            groups=channels,
            grad_input_multiplier=grad_input_multiplier,
            grad_weight_multiplier=grad_weight_multiplier,
            quantization=quantization,
            input_range=input_range,
        )
    if forward_m is None and grad_in is None and grad_w is None and not strided_and_dilated:
        pads = (
            attrs.padding
            if attrs.padding != "EXPLICIT"
            else [list(attrs.explicit_paddings[i : i + 2]) for i in range(0, 8, 2)]
        )
        return tf.nn.depthwise_conv2d(x, w, list(attrs.strides), pads, dilations=list(attrs.dilations[1:3]))
    kh, kw = tf.shape(w)[0], tf.shape(w)[1]
    grouped = tf.reshape(w, tf.stack([kh, kw, 1, -1]))
    return conv2d(
        x,
        grouped,
        forward_m or "fp32",
        strides,
        padding,
        dilations,
        groups=channels,
        grad_input_multiplier=grad_in or "fp32",
        grad_weight_multiplier=grad_w or "fp32",
    )


def conv1d(
    x,
    w,
    multiplier,
    strides=1,
    padding="VALID",
    dilations=1,
    groups=None,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
):
    """AM 1-D convolution: x [N, W, C] by w [K, C/groups, O] -> [N, OW, O], as conv2d with H = 1.

    ``padding``: "VALID", "SAME", "CAUSAL" (left padding (K-1)*dilation, as
    Keras) or [left, right]; ``groups`` as in :func:`conv2d` (None: C / w.shape[1]).
    """
    x = float32_tensor(x, "conv1d input x")
    w = float32_tensor(w, "conv1d filter w")
    require_rank(x, (3,), "conv1d input x [N, W, C]")
    require_rank(w, (3,), "conv1d filter w [K, C/groups, O]")
    groups, x = resolve_groups(x, w, groups, "conv1d")
    if not isinstance(strides, int) or not isinstance(dilations, int):
        raise ValueError(f"conv1d strides and dilations must be ints, got {strides!r} and {dilations!r}")
    if isinstance(padding, str) and padding.upper() == "CAUSAL":
        if w.shape[0] is None:
            raise ValueError(f"causal conv1d needs a known filter width, got filter shape {w.shape}")
        padding2d = [[0, 0], [(w.shape[0] - 1) * dilations, 0]]
    elif isinstance(padding, str):
        padding2d = padding
    else:
        pair = list(padding)
        if len(pair) != 2:
            raise ValueError(f"conv1d padding must be 'VALID', 'SAME', 'CAUSAL' or [left, right], got {padding!r}")
        padding2d = [[0, 0], pair]
    y = conv2d(
        tf.expand_dims(x, 1),
        tf.expand_dims(w, 0),
        multiplier,
        strides=(1, strides),
        padding=padding2d,
        dilations=(1, dilations),
        groups=groups,
        grad_input_multiplier=grad_input_multiplier,
        grad_weight_multiplier=grad_weight_multiplier,
        quantization=quantization,
        input_range=input_range,
    )
    return tf.squeeze(y, 1)


# --- gradients of the bare ops (each uses the op's own table) ----------------------------------


def _am_conv2d_gradient(op, dy):
    x, w = op.inputs[0], op.inputs[1]
    op_table, attrs, groups = op_table_of(op, 2), ConvAttrs.of_op(op), _static_groups(x, w)
    return (
        input_grad(tf.shape(x), w, dy, op_table, attrs, groups),
        filter_grad(x, tf.shape(w), dy, op_table, attrs, groups),
        None,
    )


def _am_conv2d_backprop_input_gradient(op, ddx):
    # dx = conv^T(dy, w): linear in dy (-> forward conv of ddx) and in w (-> filter grad of ddx by dy).
    w, dy = op.inputs[1], op.inputs[2]
    op_table, attrs, groups = op_table_of(op, 3), ConvAttrs.of_op(op), _static_groups(ddx, w)
    return (None, filter_grad(ddx, tf.shape(w), dy, op_table, attrs, groups), forward(ddx, w, op_table, attrs), None)


def _am_conv2d_backprop_filter_gradient(op, ddw):
    # dw = corr(x, dy): linear in x (-> input grad of dy by ddw) and in dy (-> forward conv of x by ddw).
    x, dy = op.inputs[0], op.inputs[2]
    op_table, attrs, groups = op_table_of(op, 3), ConvAttrs.of_op(op), _static_groups(x, ddw)
    return (input_grad(tf.shape(x), ddw, dy, op_table, attrs, groups), None, forward(x, ddw, op_table, attrs), None)
