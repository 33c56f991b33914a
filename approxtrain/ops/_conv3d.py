"""AM 3-D convolutions (conv3d, conv3d_transpose), NDHWC, as sums of AM 2-D convolutions over
the depth taps -- no new kernel.

With the depth padded (pad_front, pad_back) and, per depth tap kd, the input slice
xs_kd[n, od] = x_padded[n, od*sd + kd*dd] (batch and output depth flattened into the conv2d
batch, n outermost), the canonical orders (docs/design.md, "Canonical summation orders") are:

    forward  y[n, od, oh, ow, o]   = sum over kd ascending of  conv2d(xs_kd, w[kd])[(n, od), oh, ow, o]
             each term itself a conv2d sum over (kh, kw, c) from +0          (left: x)
    dX       dx[n, d, ih, iw, c]   = sum over kd ascending of the conv2d input gradient of tap kd,
             (kh, kw, o) from +0, at the output depth od with od*sd + kd*dd = d + pad_front,
             or +0 where the tap reaches no output depth                      (left: dy)
    dW       dw[kd, kh, kw, c, o]  = conv2d filter gradient of tap kd: one sum over (n, od, oh, ow)
                                                                              (left: x)

Depth padding follows TensorFlow's "SAME" rule (pad_front = total // 2); height and width are
the 2-D op's own.  The float32 adds between taps are TF adds of partial sums that are never -0,
so adding a +0 where a tap does not reach changes nothing.

Integer multipliers go to approxtrain.quant.ops, whose module doc gives the same per-tap order
for the integer gradients (exact integer sums there, so the order changes no bit).
"""

import tensorflow as tf
from tensorflow.python.framework import tensor_util

from approxtrain.ops import _conv
from approxtrain.ops._checks import float32_tensor, require_rank
from approxtrain.ops._conv_transpose import input_grad as plane_input_grad, transpose_with_gradients
from approxtrain.ops._op_table import op_table_for
from approxtrain.ops._tables import resolve_three


class DepthAttrs:
    """The window along depth and the 2-D ConvAttrs of height and width."""

    def __init__(self, strides, padding, dilations, groups=1):
        if isinstance(strides, int):
            strides = (strides,) * 3
        if isinstance(dilations, int):
            dilations = (dilations,) * 3
        strides, dilations = tuple(strides), tuple(dilations)
        if len(strides) != 3 or len(dilations) != 3:
            raise ValueError(f"3-D strides and dilations need 3 entries, got {strides!r} and {dilations!r}")
        if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"3-D convolutions take padding 'SAME' or 'VALID', got {padding!r}")
        self.padding = padding.upper()
        self.sd, self.dd, self.groups = strides[0], dilations[0], groups
        self.plane = _conv.conv_attrs(strides[1:], self.padding, dilations[1:])

    def depth_pads(self, depth, kernel_depth, out_depth):
        if self.padding == "VALID":
            return 0, 0
        total = max((out_depth - 1) * self.sd + (kernel_depth - 1) * self.dd + 1 - depth, 0)
        return total // 2, total - total // 2

    def out_depth(self, depth, kernel_depth):
        if self.padding == "SAME":
            return -(-depth // self.sd)
        return (depth - (kernel_depth - 1) * self.dd - 1) // self.sd + 1


def _static(value, what):
    if value is None:
        raise ValueError(f"{what} must be known statically")
    return int(value)


def _static_shape(sizes):
    """What is known statically of a shape vector (tf.shape(t), or a stack of ints and tensors)."""
    return tensor_util.constant_value_as_shape(tf.convert_to_tensor(sizes)).as_list()


def _tap_slices(x, attrs, kernel_depth, out_depth, pads):
    """Per depth tap, the input slice [N * OD, H, W, C] that tap multiplies."""
    xp = tf.pad(x, [[0, 0], list(pads), [0, 0], [0, 0], [0, 0]])
    shape = tf.shape(x)
    flat = tf.stack([shape[0] * out_depth, shape[2], shape[3], shape[4]])
    span = (out_depth - 1) * attrs.sd + 1
    return [tf.reshape(xp[:, kd * attrs.dd : kd * attrs.dd + span : attrs.sd], flat) for kd in range(kernel_depth)]


def _unflatten(t, batch, out_depth):
    shape = tf.shape(t)
    return tf.reshape(t, tf.stack([batch, out_depth, shape[1], shape[2], shape[3]]))


class Conv3DKernels:
    """The three products of a 3-D conv with `DepthAttrs` attrs, in the orders above."""

    @staticmethod
    def forward(x, w, op_table, attrs):
        depth, kernel_depth = _static(x.shape[1], "conv3d input depth"), _static(w.shape[0], "conv3d filter depth")
        out_depth = attrs.out_depth(depth, kernel_depth)
        pads = attrs.depth_pads(depth, kernel_depth, out_depth)
        total = None
        for kd, xs in enumerate(_tap_slices(x, attrs, kernel_depth, out_depth, pads)):
            term = _conv.forward(xs, w[kd], op_table, attrs.plane)
            total = term if total is None else total + term
        return _unflatten(total, tf.shape(x)[0], out_depth)

    @staticmethod
    def input_grad(input_sizes, w, dy, op_table, attrs):
        depth = _static(_static_shape(input_sizes)[1], "conv3d input depth")
        kernel_depth, out_depth = _static(w.shape[0], "conv3d filter depth"), _static(dy.shape[1], "dy depth")
        pads = attrs.depth_pads(depth, kernel_depth, out_depth)
        input_sizes = tf.cast(input_sizes, tf.int32)
        batch = input_sizes[0]
        plane_sizes = tf.stack([batch * out_depth, input_sizes[2], input_sizes[3], input_sizes[4]])
        dy_shape = tf.shape(dy)
        dy2 = tf.reshape(dy, tf.stack([dy_shape[0] * out_depth, dy_shape[2], dy_shape[3], dy_shape[4]]))
        padded_depth = depth + pads[0] + pads[1]
        span = (out_depth - 1) * attrs.sd + 1
        total = None
        for kd in range(kernel_depth):
            dxs = _unflatten(
                plane_input_grad(plane_sizes, w[kd], dy2, op_table, attrs.plane, attrs.groups), batch, out_depth
            )
            if attrs.sd > 1:  # zeros between the output depths: [N, OD, sd, ...] -> [N, OD * sd, ...]
                dxs = tf.pad(tf.expand_dims(dxs, 2), [[0, 0], [0, 0], [0, attrs.sd - 1], [0, 0], [0, 0], [0, 0]])
                s = tf.shape(dxs)
                dxs = tf.reshape(dxs, tf.stack([s[0], out_depth * attrs.sd, s[3], s[4], s[5]]))[:, :span]
            start = kd * attrs.dd
            placed = tf.pad(dxs, [[0, 0], [start, max(padded_depth - start - span, 0)], [0, 0], [0, 0], [0, 0]])
            total = placed if total is None else total + placed
        return total[:, pads[0] : pads[0] + depth]

    @staticmethod
    def filter_grad(x, filter_sizes, dy, op_table, attrs):
        depth, kernel_depth = (
            _static(x.shape[1], "conv3d input depth"),
            _static(_static_shape(filter_sizes)[0], "conv3d filter depth"),
        )
        out_depth = _static(dy.shape[1], "dy depth")
        pads = attrs.depth_pads(depth, kernel_depth, out_depth)
        dy_shape = tf.shape(dy)
        dy2 = tf.reshape(dy, tf.stack([dy_shape[0] * out_depth, dy_shape[2], dy_shape[3], dy_shape[4]]))
        filter_sizes = tf.cast(filter_sizes, tf.int32)
        return tf.stack(
            [
                _conv.filter_grad(xs, filter_sizes[1:], dy2, op_table, attrs.plane, attrs.groups)
                for xs in _tap_slices(x, attrs, kernel_depth, out_depth, pads)
            ]
        )


def conv3d(
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
    """AM 3-D convolution, NDHWC: x [N, D, H, W, C] by w [KD, KH, KW, C/groups, O] -> [N, OD, OH, OW, O].

    padding "SAME" | "VALID"; strides/dilations an int or (d, h, w); groups as in conv2d.
    Depth and the filter depth must be static.  x is the table row of the forward and of the
    filter gradient, dy of the input gradient; the summation orders are in this module's doc.
    """
    integer = _conv._integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range)
    resolved = None if integer else resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    x = float32_tensor(x, "conv3d input x")
    w = float32_tensor(w, "conv3d filter w")
    require_rank(x, (5,), "conv3d input x [N, D, H, W, C]")
    require_rank(w, (5,), "conv3d filter w [KD, KH, KW, C/groups, O]")
    groups, x = _conv.resolve_groups(x, w, groups, "conv3d")
    attrs = DepthAttrs(strides, padding, dilations, groups)
    if integer:  # quantized, through the integer table (docs/integer.md)
        from approxtrain.quant import ops as quant_ops

        window = (strides, padding, dilations)
        return quant_ops.conv3d(
            x,
            w,
            multiplier,
            attrs,
            groups,
            window,
            grad_input_multiplier,
            grad_weight_multiplier,
            quantization,
            input_range,
            "conv3d",
        )
    # All phases fp32: TF's own op, where its CPU kernels take the window (no dilation); dilated
    # ones go the per-tap way below, whose native 2-D products work on every CPU.
    if all(m is None for m in resolved) and groups == 1 and _triple(dilations) == (1, 1, 1):
        return tf.nn.conv3d(x, w, [1, *_triple(strides), 1], attrs.padding, dilations=[1, *_triple(dilations), 1])
    tables = [op_table_for(m) for m in resolved]

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            return (
                Conv3DKernels.input_grad(tf.shape(x), w, dy, tables[1], attrs),
                Conv3DKernels.filter_grad(x, tf.shape(w), dy, tables[2], attrs),
            )

        return Conv3DKernels.forward(x, w, tables[0], attrs), grad

    return conv(x, w)


def _triple(v):
    return (v,) * 3 if isinstance(v, int) else tuple(v)


def conv3d_transpose(
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
    """AM transposed 3-D convolution: x [N, D, H, W, C] by w [KD, KH, KW, O, C] -> output_shape
    [N, OD, OH, OW, O] (static depths), as tf.nn.conv3d_transpose.  Built from the conv3d
    products as conv2d_transpose is from conv2d's (see _conv_transpose): x the table row of the
    forward and of the filter gradient (through the operand-exchanged table), dy of dX."""
    integer = _conv._integer(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range)
    resolved = None if integer else resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    x = float32_tensor(x, "conv3d_transpose input x")
    w = float32_tensor(w, "conv3d_transpose filter w")
    require_rank(x, (5,), "conv3d_transpose input x [N, D, H, W, C]")
    require_rank(w, (5,), "conv3d_transpose filter w [KD, KH, KW, O, C]")
    sizes = tf.cast(tf.convert_to_tensor(output_shape), tf.int32)
    attrs = DepthAttrs(strides, padding, dilations)
    if integer:  # quantized, through the integer table (docs/integer.md)
        from approxtrain.quant import ops as quant_ops

        y = quant_ops.conv3d_transpose(
            x,
            w,
            multiplier,
            sizes,
            attrs,
            (strides, padding, dilations),
            grad_input_multiplier,
            grad_weight_multiplier,
            quantization,
            input_range,
            "conv3d_transpose",
        )
        y.set_shape(tensor_util.constant_value_as_shape(sizes))
        return y
    if all(m is None for m in resolved) and _triple(dilations) == (1, 1, 1):  # as conv3d above
        return tf.nn.conv3d_transpose(
            x, w, sizes, [1, *_triple(strides), 1], attrs.padding, dilations=[1, *_triple(dilations), 1]
        )
    y = transpose_with_gradients(x, w, sizes, resolved, attrs, Conv3DKernels)
    y.set_shape(tensor_util.constant_value_as_shape(sizes))  # what is known statically (not the batch, in Keras)
    return y
