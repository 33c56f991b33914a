"""AM transposed convolutions (conv1d_transpose, conv2d_transpose), NHWC, as tf.nn.conv_transpose.

A transposed convolution is the input gradient of a convolution, so it reuses the conv ops
(docs/design.md, "Canonical summation orders", row "conv2d_transpose"):

    forward  y  = AMConv2DBackpropInput(output_shape, w, x)   left operand x   (multiplier)
    dX       dx = AMConv2D(dy, w)                             left operand dy  (grad_input_multiplier)
    dW       dw = AMConv2DBackpropFilter(dy, w.shape, x)      left operand x   (grad_weight_multiplier)

The filter-gradient kernel takes its table row from its first input, which is dy here; the
contract wants the layer input x there (dW = X^T . dY), so that product runs with the
operand-exchanged table (_transposed_table), which makes x the row without moving data.
w is [KH, KW, O, C] (Keras's and TF's layout: output channels, then input channels).
Integer multipliers go to approxtrain.quant.ops, whose integer gradients are the same two
products on the codes (dX the conv of dY by w, dW the filter gradient with x as the row).
"""

import tensorflow as tf
from tensorflow.python.framework import tensor_util

from approxtrain.ops import _conv
from approxtrain.ops._checks import float32_tensor, require_rank
from approxtrain.ops._op_table import op_table_for
from approxtrain.ops._shapes import static_shape
from approxtrain.ops._tables import resolve_three
from approxtrain.ops._transposed_table import transposed_op_table


def _phase_axis(size, stride, pad_front, kernel, out, phase):
    """Along one axis, output phase `phase` (positions phase + stride*i) of a strided conv's input
    gradient: (its length, first tap r, taps J, front pad, back pad, length computed; the rest,
    which no output reaches, is zeros).

    Tap k reaches position phase + stride*i iff (phase + pad_front - k) % stride == 0, i.e.
    k = r + stride*j, and then at output i + front - j: a stride-1 input gradient of the
    sub-kernel w[r::stride] with front padding `front`, taps still in ascending order."""
    length = max((size - phase + stride - 1) // stride, 0)
    r, front = (phase + pad_front) % stride, (phase + pad_front) // stride
    taps = len(range(r, kernel, stride))
    back = out - 1 + taps - length - front
    return length, r, taps, front, max(back, 0), length + min(back, 0)


def _front_pads(attrs, sizes, kernel, out):
    if attrs.padding == "VALID":
        return 0, 0
    if attrs.padding == "EXPLICIT":
        return attrs.explicit_paddings[2], attrs.explicit_paddings[4]
    s = attrs.strides[1:3]
    return tuple(max((o - 1) * st + k - n, 0) // 2 for n, k, o, st in zip(sizes, kernel, out, s))


def input_grad(input_sizes, w, dy, op_table, attrs, groups):
    """conv2d's input gradient (AMConv2DBackpropInput's values), for strided AM convs computed per
    output phase: one stride-1 op per (row phase, column phase) on the taps that reach it.

    The canonical order sums (kh, kw, o) ascending and multiplies a +0 dy operand where a tap
    reaches no output (docs/design.md); a phase sums the same taps in the same order and only
    leaves out those +0 products, so for finite weights the bits are the same, at 1 / (sh*sw)
    of the products.  (A +0 times an infinite weight is NaN: with infinite weights the phases
    may give a number where the one-op form gives NaN.)"""
    sizes = static_shape(input_sizes)
    strides, kernel, out = attrs.strides[1:3], w.shape[:2].as_list(), dy.shape[1:3].as_list()
    if op_table is None or strides == (1, 1) or attrs.dilations != (1, 1, 1, 1) or None in sizes[1:] + kernel + out:
        return _conv.input_grad(input_sizes, w, dy, op_table, attrs, groups)
    fronts = _front_pads(attrs, sizes[1:3], kernel, out)
    axes = [
        [_phase_axis(sizes[1 + a], strides[a], fronts[a], kernel[a], out[a], p) for p in range(strides[a])]
        for a in (0, 1)
    ]
    batch, channels = tf.cast(input_sizes, tf.int32)[0], sizes[3]
    longest = [axes[0][0][0], axes[1][0][0]]
    rows = []
    for ph in axes[0]:
        cols = []
        for pw in axes[1]:
            if min(ph[2], pw[2], ph[5], pw[5]) <= 0:
                part = tf.zeros(tf.stack([batch, longest[0], longest[1], channels]))
            else:
                plane = _conv.ConvAttrs(
                    (1, 1, 1, 1), "EXPLICIT", (0, 0, ph[3], ph[4], pw[3], pw[4], 0, 0), (1, 1, 1, 1)
                )
                part = _conv.input_grad(
                    tf.stack([batch, ph[5], pw[5], channels]),
                    w[ph[1] :: strides[0], pw[1] :: strides[1]],
                    dy,
                    op_table,
                    plane,
                    groups,
                )
                part = tf.pad(part, [[0, 0], [0, longest[0] - ph[5]], [0, longest[1] - pw[5]], [0, 0]])
            cols.append(part)
        # [N, Hl, Wl, sw, C] -> [N, Hl, Wl * sw, C]: column phase q lands on columns q + sw*i
        rows.append(tf.reshape(tf.stack(cols, 3), tf.stack([batch, longest[0], longest[1] * strides[1], channels])))
    dx = tf.reshape(tf.stack(rows, 2), tf.stack([batch, longest[0] * strides[0], longest[1] * strides[1], channels]))
    return dx[:, : sizes[1], : sizes[2]]


class Conv2DKernels:
    """The three conv products of conv2d with one group (see _conv)."""

    @staticmethod
    def forward(x, w, op_table, attrs):
        return _conv.forward(x, w, op_table, attrs)

    @staticmethod
    def input_grad(input_sizes, w, dy, op_table, attrs):
        return input_grad(input_sizes, w, dy, op_table, attrs, 1)

    @staticmethod
    def filter_grad(x, filter_sizes, dy, op_table, attrs):
        return _conv.filter_grad(x, filter_sizes, dy, op_table, attrs, 1)


def transpose_with_gradients(x, w, output_sizes, resolved, attrs, kernels):
    """The transposed conv of x by w to `output_sizes` with its two AM gradients.

    resolved: the (forward, grad-input, grad-weight) Multipliers (None: native); kernels:
    Conv2DKernels or the 3-D ones (_conv3d.Conv3DKernels)."""
    forward_t, grad_in_t = op_table_for(resolved[0]), op_table_for(resolved[1])
    grad_w_t = transposed_op_table(resolved[2])  # x must be the row; the kernel's row is dy

    @tf.custom_gradient
    def conv_transpose(x, w):
        def grad(dy):
            return (kernels.forward(dy, w, grad_in_t, attrs), kernels.filter_grad(dy, tf.shape(w), x, grad_w_t, attrs))

        return kernels.input_grad(output_sizes, w, x, forward_t, attrs), grad

    return conv_transpose(x, w)


def _output_sizes(x, w, output_shape, what):
    sizes = tf.cast(tf.convert_to_tensor(output_shape), tf.int32)
    if sizes.shape.rank != 1 or sizes.shape[0] != x.shape.rank:
        raise ValueError(
            f"{what}: output_shape must have {x.shape.rank} entries (N, spatial..., O), got {output_shape!r}"
        )
    static = tf.get_static_value(sizes)
    if static is not None and w.shape[-2] is not None and static[-1] != w.shape[-2]:
        raise ValueError(
            f"{what}: output_shape's channels {static[-1]} must equal the filter's output channels "
            f"{w.shape[-2]} (filter shape {tuple(w.shape)})"
        )
    if x.shape[-1] is not None and w.shape[-1] is not None and x.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"{what}: input channels {x.shape[-1]} must equal the filter's last dimension "
            f"{w.shape[-1]} (input shape {tuple(x.shape)}, filter shape {tuple(w.shape)})"
        )
    return sizes


def _check_transposes(x, w, sizes, attrs, what):
    """The convolution a transposed conv is the input gradient of must map output_shape back to
    x's spatial shape (TensorFlow's own kernels refuse otherwise); checked where shapes are static."""
    static = tf.get_static_value(sizes)
    spatial = x.shape[1:3].as_list()
    if static is None or None in spatial or None in w.shape[:2].as_list():
        return
    got = []
    for axis, (size, k) in enumerate(zip(static[1:3], w.shape[:2].as_list())):
        s, d = attrs.strides[1 + axis], attrs.dilations[1 + axis]
        extent = (k - 1) * d + 1
        if attrs.padding == "SAME":
            got.append(-(-int(size) // s))
        else:
            pads = sum(attrs.explicit_paddings[2 + 2 * axis : 4 + 2 * axis]) if attrs.padding == "EXPLICIT" else 0
            got.append((int(size) + pads - extent) // s + 1)
    if got != spatial:
        raise ValueError(
            f"{what}: output_shape {[int(v) for v in static]} is not the transpose of input {tuple(x.shape)}: "
            f"the convolution of that shape by a {tuple(w.shape[:2])} filter (strides {attrs.strides[1:3]}, "
            f"padding {attrs.padding}) gives spatial {tuple(got)}, not {tuple(spatial)}"
        )


def conv2d_transpose(
    x,
    w,
    multiplier,
    output_shape,
    strides=1,
    padding="VALID",
    dilations=1,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
):
    """AM transposed 2-D convolution: x [N, H, W, C] by w [KH, KW, O, C] -> output_shape [N, OH, OW, O].

    The same values as tf.nn.conv2d_transpose (padding "SAME" | "VALID" | explicit pairs as in
    conv2d, of the convolution it transposes); x is the table row of the forward and of the
    filter gradient, dy of the input gradient.
    """
    integer = _conv._integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range)
    resolved = None if integer else resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    x = float32_tensor(x, "conv2d_transpose input x")
    w = float32_tensor(w, "conv2d_transpose filter w")
    require_rank(x, (4,), "conv2d_transpose input x [N, H, W, C]")
    require_rank(w, (4,), "conv2d_transpose filter w [KH, KW, O, C]")
    sizes = _output_sizes(x, w, output_shape, "conv2d_transpose")
    attrs = _conv.conv_attrs(strides, padding, dilations)
    _check_transposes(x, w, sizes, attrs, "conv2d_transpose")
    if integer:  # quantized, through the integer table (docs/integer.md)
        from approxtrain.quant import ops as quant_ops

        y = quant_ops.conv2d_transpose(
            x,
            w,
            multiplier,
            sizes,
            attrs,
            grad_input_multiplier,
            grad_weight_multiplier,
            quantization,
            input_range,
            "conv2d_transpose",
        )
        y.set_shape(tensor_util.constant_value_as_shape(sizes))
        return y
    # All phases fp32: TF's own op where its CPU kernels take the window; a dilated one is
    # Conv2DBackpropInput with dilations, which TF's CPU kernels reject without oneDNN, so it
    # goes the way below, whose native products (ops/_native_conv_grads.py) work on every CPU.
    if all(m is None for m in resolved) and attrs.dilations == (1, 1, 1, 1):
        return tf.nn.conv2d_transpose(
            x, w, sizes, list(attrs.strides), _tf_padding(attrs), dilations=list(attrs.dilations)
        )
    y = transpose_with_gradients(x, w, sizes, resolved, attrs, Conv2DKernels)
    y.set_shape(tensor_util.constant_value_as_shape(sizes))  # what is known statically (not the batch, in Keras)
    return y


def _tf_padding(attrs):
    if attrs.padding != "EXPLICIT":
        return attrs.padding
    return [list(attrs.explicit_paddings[i : i + 2]) for i in range(0, 8, 2)]


def conv1d_transpose(
    x,
    w,
    multiplier,
    output_shape,
    strides=1,
    padding="VALID",
    dilations=1,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
):
    """AM transposed 1-D convolution: x [N, W, C] by w [K, O, C] -> output_shape [N, OW, O],
    as conv2d_transpose with H = 1 (padding "SAME" | "VALID" | [left, right])."""
    x = float32_tensor(x, "conv1d_transpose input x")
    w = float32_tensor(w, "conv1d_transpose filter w")
    require_rank(x, (3,), "conv1d_transpose input x [N, W, C]")
    require_rank(w, (3,), "conv1d_transpose filter w [K, O, C]")
    if not isinstance(strides, int) or not isinstance(dilations, int):
        raise ValueError(f"conv1d_transpose strides and dilations must be ints, got {strides!r} and {dilations!r}")
    padding2d = padding if isinstance(padding, str) else [[0, 0], list(padding)]
    sizes = tf.cast(tf.convert_to_tensor(output_shape), tf.int32)
    if sizes.shape.rank != 1 or sizes.shape[0] != 3:
        raise ValueError(f"conv1d_transpose: output_shape must have 3 entries (N, W, O), got {output_shape!r}")
    sizes2d = tf.stack([sizes[0], 1, sizes[1], sizes[2]])
    static = tf.get_static_value(sizes)
    partial = tensor_util.constant_value_as_shape(sizes)
    if static is not None:
        sizes2d = [int(static[0]), 1, int(static[1]), int(static[2])]
    elif partial[1:].is_fully_defined():  # a run-time batch: keep the rest static for the shapes
        sizes2d = tf.stack([sizes[0], 1, partial[1], partial[2]])
    y = conv2d_transpose(
        tf.expand_dims(x, 1),
        tf.expand_dims(w, 0),
        multiplier,
        sizes2d,
        strides=(1, strides),
        padding=padding2d,
        dilations=(1, dilations),
        grad_input_multiplier=grad_input_multiplier,
        grad_weight_multiplier=grad_weight_multiplier,
        quantization=quantization,
        input_range=input_range,
    )
    return tf.squeeze(y, 1)
