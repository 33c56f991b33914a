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
the 2-D op's own.

The lowering runs one AM op per product (Conv3DKernels): the forward's taps side by side in
the filter's output channels (a conv2d on the unpadded planes gives every tap's own sums at
every plane), dX's side by side in the filter's input channels, dW's input slices side by side
in the input channels (per tap for grouped convs); a tap's partial sums are then one slice of
a [G, C/G] view, added in kd order per run of depths (the edges, where a tap reads padding,
apart).  Padded depth planes keep their terms: in the forward the conv2d sums over an
all-padding plane (+0, or NaN against a non-finite weight of that tap and channel), in dX a +0.
Strided depths read their planes by gather (TF's stepped strided slice is several times slower).

Integer multipliers go to approxtrain.quant.ops, whose module doc gives the same per-tap order
for the integer gradients (exact integer sums there, so the order changes no bit).
"""

import tensorflow as tf
from tensorflow.python.framework import tensor_util

from approxtrain.ops import _conv
from approxtrain.ops._checks import float32_tensor, require_rank
from approxtrain.ops._conv_transpose import input_grad as plane_input_grad, transpose_with_gradients
from approxtrain.ops._op_table import op_table_for
from approxtrain.ops._shapes import dims, static_shape
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


def _source_plane(out, tap, attrs, pad_front, depth):
    """The unpadded input depth that tap `tap` reads at output depth `out`, or None (a padded plane)."""
    d = out * attrs.sd + tap * attrs.dd - pad_front
    return d if 0 <= d < depth else None


def _runs_on(index, i):
    """Whether position i continues position i - 1's run of index (both None, or consecutive planes)."""
    a, b = index[i - 1], index[i]
    return (a is None and b is None) or (a is not None and b is not None and b == a + 1)


def _tap_sum(indices, take, fills, planes, shape):
    """sum over kd ascending of [N, len, ...]: tap kd's plane indices[kd][i], or fills[kd] (all
    ones but the last axes: it broadcasts) where that is None (a plane the tap does not reach).
    take(kd, a, b) gives the tap's planes a..b-1; planes[kd] is how many it has; shape is a
    plane's [N, 1, ...] (for positions that no tap reaches).

    Where every tap's index runs in steps of one (stride 1 along depth: the edge segments and
    the middle) a segment is one slice per tap, the slices added and the segments
    concatenated; a ragged index (the input gradient of a strided depth) is a gather per tap."""
    length = len(indices[0])
    cuts = [0] + [i for i in range(1, length) if not all(_runs_on(ix, i) for ix in indices)] + [length]

    def planes_of(fill, count):
        return tf.broadcast_to(fill, tf.stack([shape[0], count, *shape[2:]]))

    if len(cuts) <= 6:  # at most 5 segments (3-tap windows: two edges on each side and the middle)
        segments = []
        for a, b in zip(cuts, cuts[1:]):
            total = None
            for kd, ix in enumerate(indices):
                term = fills[kd] if ix[a] is None else take(kd, ix[a], ix[a] + b - a)
                total = term if total is None else total + term  # kd order; a fill broadcasts
            if all(ix[a] is None for ix in indices):
                total = planes_of(total, b - a)
            segments.append(total)
        return segments[0] if len(segments) == 1 else tf.concat(segments, 1)
    total = None
    for kd, ix in enumerate(indices):
        source = tf.concat([take(kd, 0, planes[kd]), planes_of(fills[kd], 1)], 1)
        term = tf.gather(source, [planes[kd] if i is None else i for i in ix], axis=1)
        total = term if total is None else total + term
    return total


def _planes(t, first, count, step):
    """Planes first, first + step, ... (count of them) of t [N, P, ...]: a slice, or a gather for
    step > 1 (TF's strided slice with a step is several times slower than the gather)."""
    if step == 1:
        return t if (first, count) == (0, t.shape[1]) else t[:, first : first + count]
    return tf.gather(t, list(range(first, first + step * count, step)), axis=1)


def _tap_slices(x, attrs, kernel_depth, out_depth, pads):
    """Per depth tap, the input slice [N, OD, H, W, C] that tap multiplies (padded planes +0)."""
    xp = tf.pad(x, [[0, 0], list(pads), [0, 0], [0, 0], [0, 0]]) if pads != (0, 0) else x
    return [_planes(xp, kd * attrs.dd, out_depth, attrs.sd) for kd in range(kernel_depth)]


def _split_channels(t, groups):
    """t [..., C] as [..., G, C / G] (a view)."""
    return tf.reshape(t, dims(t)[:-1] + [groups, -1])


def _padded_plane_sums(w, groups):
    """Per tap, the AM conv2d sums over an all-padding input plane, KD x [1, 1, 1, 1, G, O/G].

    Every product there is a signed zero (a NaN against an inf or NaN weight), so a sum from +0
    is +0, or NaN where that tap's filter of the output channel holds a non-finite weight; the
    same at every (oh, ow), whatever the padding of height and width."""
    finite = tf.reduce_all(tf.math.is_finite(w), axis=[1, 2, 3])  # [KD, O]
    sums = tf.where(finite, 0.0, float("nan"))
    return tf.unstack(tf.reshape(sums, [w.shape[0], 1, 1, 1, 1, groups, -1]))


class Conv3DKernels:
    """The three products of a 3-D conv with `DepthAttrs` attrs, in the orders above.

    Forward and dX run the depth taps in one AM conv2d op each (the taps side by side in the
    filter's output or input channels: each tap's sums are still its own conv2d sums from +0),
    then add the taps' partial sums in kd order; dW is one filter gradient of the taps' input
    slices side by side in the input channels (one per tap for grouped convs).  Inside, the
    channels are split [G, C/G] so a tap's slot is one slice of the last axis."""

    @staticmethod
    def forward(x, w, op_table, attrs):
        depth, kernel_depth = _static(x.shape[1], "conv3d input depth"), _static(w.shape[0], "conv3d filter depth")
        out_depth = attrs.out_depth(depth, kernel_depth)
        pad_front = attrs.depth_pads(depth, kernel_depth, out_depth)[0]
        batch, _, h, wd, c = dims(x)
        groups, per_group = attrs.groups, dims(w)[4] // attrs.groups
        # Taps grouped by the input planes they read (one class at depth stride 1): a class runs
        # one conv2d on its planes only, so a strided depth computes no plane it does not use.
        classes = {}
        for kd in range(kernel_depth):
            classes.setdefault((kd * attrs.dd - pad_front) % attrs.sd, []).append(kd)
        indices, planes, source, fills = [None] * kernel_depth, [0] * kernel_depth, {}, [None] * kernel_depth
        shape = None  # a plane's [N, 1, OH, OW, G, O/G]
        am_fills = None
        for first, taps in classes.items():
            count = len(range(first, depth, attrs.sd))
            # The taps' filters side by side in the output channels (g, slot, o within g).
            wide = tf.concat([_split_channels(w[kd], groups) for kd in taps], -1)
            wide = tf.reshape(wide, dims(wide)[:3] + [-1])
            z = None
            if count:
                xs = _planes(x, first, count, attrs.sd)
                z = _conv.forward(tf.reshape(xs, [batch * count, h, wd, c]), wide, op_table, attrs.plane)
                z = tf.reshape(z, [batch, count] + dims(z)[1:3] + [groups, -1])
                shape = [batch, 1] + dims(z)[2:5] + [per_group]
            for slot, kd in enumerate(taps):
                ix = [_source_plane(od, kd, attrs, pad_front, depth) for od in range(out_depth)]
                indices[kd] = [None if i is None else (i - first) // attrs.sd for i in ix]
                planes[kd], source[kd] = count, (z, slot)
            if not any(None in indices[kd] for kd in taps):
                continue
            if op_table is None or not count:
                # The padded plane through the op itself: TF's native conv2d adds its zero
                # products its own way (a -0 can come out); a class without planes needs its shape.
                plane = _conv.forward(tf.zeros(tf.stack([1, h, wd, c])), wide, op_table, attrs.plane)
                plane = tf.reshape(plane, [1, 1] + dims(plane)[1:3] + [groups, -1])
                shape = shape or [batch, 1] + dims(plane)[2:5] + [per_group]
                for slot, kd in enumerate(taps):
                    fills[kd] = plane[..., slot * per_group : (slot + 1) * per_group]
            else:
                am_fills = am_fills or _padded_plane_sums(w, groups)
                for kd in taps:
                    fills[kd] = am_fills[kd]

        def take(kd, a, b):
            z, slot = source[kd]
            return z[:, a:b, ..., slot * per_group : (slot + 1) * per_group]

        y = _tap_sum(indices, take, fills, planes, shape)
        return tf.reshape(y, dims(y)[:4] + [-1])

    @staticmethod
    def input_grad(input_sizes, w, dy, op_table, attrs):
        known = static_shape(input_sizes)
        depth = _static(known[1], "conv3d input depth")
        kernel_depth, out_depth = _static(w.shape[0], "conv3d filter depth"), _static(dy.shape[1], "dy depth")
        pad_front = attrs.depth_pads(depth, kernel_depth, out_depth)[0]
        input_sizes = tf.cast(input_sizes, tf.int32)
        # Static sizes stay ints: the strided plane input gradient runs per phase only on static shapes.
        batch, h, wd, c = (input_sizes[i] if known[i] is None else known[i] for i in (0, 2, 3, 4))
        dy_dims = dims(dy)
        dy2 = tf.reshape(dy, [dy_dims[0] * out_depth] + dy_dims[2:])
        groups, per_group = attrs.groups, dims(w)[3]
        # The taps side by side in the input channels (g, kd, c within g): each its own (kh, kw, o) sums.
        wide = tf.concat(tf.unstack(w), 2)
        plane_sizes = tf.stack([batch * out_depth, h, wd, kernel_depth * c])
        dxz = plane_input_grad(plane_sizes, wide, dy2, op_table, attrs.plane, groups)
        dxz = tf.reshape(dxz, [batch, out_depth] + dims(dxz)[1:3] + [groups, -1])
        indices = []  # per tap and input depth d, the output depth whose tap lands on d, or None (+0)
        for kd in range(kernel_depth):
            index = []
            for d in range(depth):
                od, rem = divmod(d + pad_front - kd * attrs.dd, attrs.sd)
                index.append(od if rem == 0 and 0 <= od < out_depth else None)
            indices.append(index)

        def take(kd, a, b):
            return dxz[:, a:b, ..., kd * per_group : (kd + 1) * per_group]

        zero = tf.zeros([1] * 6)
        shape = [batch, 1, h, wd, groups, per_group]
        dx = _tap_sum(indices, take, [zero] * kernel_depth, [out_depth] * kernel_depth, shape)
        return tf.reshape(dx, tf.stack([batch, depth, h, wd, c]))

    @staticmethod
    def filter_grad(x, filter_sizes, dy, op_table, attrs):
        depth, kernel_depth = (
            _static(x.shape[1], "conv3d input depth"),
            _static(static_shape(filter_sizes)[0], "conv3d filter depth"),
        )
        out_depth = _static(dy.shape[1], "dy depth")
        pads = attrs.depth_pads(depth, kernel_depth, out_depth)
        batch, _, h, wd, c = dims(x)
        dy_dims = dims(dy)
        dy2 = tf.reshape(dy, [dy_dims[0] * out_depth] + dy_dims[2:])
        filter_sizes = tf.cast(filter_sizes, tf.int32)
        kh, kw, cin, o = (filter_sizes[i] for i in range(1, 5))
        slices = _tap_slices(x, attrs, kernel_depth, out_depth, pads)
        if attrs.groups > 1:
            return tf.stack(
                [
                    _conv.filter_grad(
                        tf.reshape(xs, [batch * out_depth, h, wd, c]),
                        filter_sizes[1:],
                        dy2,
                        op_table,
                        attrs.plane,
                        attrs.groups,
                    )
                    for xs in slices
                ]
            )
        # One filter gradient of the slices side by side in the channels (kd, c): its row
        # (kh, kw, (kd, c)) is tap kd's own sum over (n, od, oh, ow), in the same order.
        xs = tf.reshape(tf.concat(slices, -1), [batch * out_depth, h, wd, kernel_depth * c])
        dw = _conv.filter_grad(xs, tf.stack([kh, kw, kernel_depth * cin, o]), dy2, op_table, attrs.plane, 1)
        return tf.transpose(tf.reshape(dw, tf.stack([kh, kw, kernel_depth, cin, o])), [2, 0, 1, 3, 4])


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
