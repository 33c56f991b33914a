"""The exact integer sums of the convolutions' integer gradients (docs/integer.md, "Backward"),
shared by conv2d, conv3d and the transposed convolutions.

Every integer gradient quantizes dY the same way (`quantized_gradient`): per tensor by its
min/max, after folding the weights' per-channel scales into it for an input gradient (so the sum
over the weights' output channels has one scale).  The weights and the input keep their forward
codes and zero points.  Sums are int64, or float64 where col2im adds them up (float64 holds
these integers exactly), so every order of addition gives the same bits; the caller scales once.

A ``geometry`` is approxtrain.quant.ops.Im2Col: the static window of one 2-D convolution.
"""

import tensorflow as tf

from approxtrain.quant._gemm import exact_product
from approxtrain.quant.quantize import minmax, params_from_range, patterns, quantize


def quantized_gradient(dy, signed, weight_scale=None):
    """(codes, QuantParams) of dY, quantized per tensor by its min/max; for an input gradient
    ``weight_scale`` (the weights' scales, a scalar or one per channel of dY's last axis) is
    multiplied in first."""
    if weight_scale is not None:
        dy = dy * weight_scale
    params = params_from_range(*minmax(dy), signed)
    return quantize(dy, params), params


def patch_rows(codes, zero_point, geometry):
    """The grouped patch rows [G, M, KH*KW*C/G] (uint8 patterns) of codes [N, H, W, C] padded with
    the code of real 0 (as an integer accelerator pads), and the patches' shape [N, OH, OW, KH*KW*C]."""
    patches = geometry.patches(geometry.pad(patterns(codes), tf.cast(zero_point, tf.uint8)))
    return geometry.grouped_rows(patches), tf.shape(patches)


def col2im(d_patches, geometry, padded_static):
    """Patch gradients d_patches [N, OH, OW, KH*KW*C] (float64 integers) added onto the padded
    plane [N, *padded_static] where each patch element was taken from (the gradient of the patches)."""
    with tf.GradientTape() as tape:
        zeros = tf.zeros(tf.concat([tf.shape(d_patches)[:1], padded_static], 0), tf.float64)
        zeros = tf.ensure_shape(zeros, [None, *padded_static])
        tape.watch(zeros)
        patches = geometry.patches(zeros)
    return tape.gradient(patches, zeros, output_gradients=d_patches)


# --- conv2d: dX = col2im(dY . W^T), dW = patches(X)^T . dY ------------------------------------


def input_sums(qg, zg, qw, zw, geometry, plane, multiplier):
    """conv2d's input gradient as exact sums, float64 [N, H, W, C]: per group the patch gradients
    dY_q . W_q^T (A = dY) summed back onto the input (col2im) and the padding cropped.

    qg: dY's codes [N, OH, OW, O], zero point zg; qw: the filter's codes [KH, KW, C/G, O], zero
    points zw (a scalar or one per output channel: per term of the sum over o); plane: the input's
    static (H, W, C)."""
    rows = geometry.grouped_outputs(qg)  # [G, M, O/G]
    wt = tf.linalg.matrix_transpose(geometry.grouped_filter(qw))  # [G, O/G, KH*KW*C/G]
    if zw.shape.rank:
        zw = tf.reshape(zw, [geometry.groups, -1])
    acc = exact_product(rows, wt, zg, zw, multiplier, zb_per_row=True)
    height, width, channels = plane
    top, bottom, left, right = geometry.pads
    patches_shape = tf.concat([tf.shape(qg)[:3], [geometry.kh * geometry.kw * channels]], 0)
    d_patches = geometry.ungrouped_rows(tf.cast(acc, tf.float64), patches_shape)
    summed = col2im(d_patches, geometry, [height + top + bottom, width + left + right, channels])
    return summed[:, top : top + height, left : left + width, :]


def filter_sums(rows, zx, qd, zd, geometry, filter_shape, multiplier):
    """conv2d's filter gradient X^T . dY (A = X) per group as exact int64 sums in the filter's layout.

    rows: the input's grouped patch rows [G, M, KH*KW*C/G] (patch_rows), zero point zx; qd: dY's
    codes [N, OH, OW, O], zero point zd."""
    acc = exact_product(tf.linalg.matrix_transpose(rows), geometry.grouped_outputs(qd), zx, zd, multiplier)
    # [G, KH*KW*C/G, O/G] -> [KH*KW*C/G, G, O/G] -> [KH, KW, C/G, O]
    return tf.reshape(tf.transpose(acc, [1, 0, 2]), filter_shape)


# --- the transposed conv2d of x [N, H, W, C] by w [KH, KW, O, C] ------------------------------
# `geometry` is that of the convolution it transposes: from [N, OH, OW, O] to [N, H, W, C].


def transposed_input_sums(qg, zg, qw, zw, geometry, multiplier):
    """dX of a transposed conv: the forward conv2d of dY's codes qg [N, OH, OW, O] (A = dY, zero
    point zg) by the same filter codes qw [KH, KW, O, C], as exact int64 sums [N, H, W, C].  zw:
    the weights' zero points, a scalar or one per o (per term of the sum over (kh, kw, o))."""
    rows, patches_shape = patch_rows(qg, zg, geometry)  # [1, N*H*W, KH*KW*O]
    if zw.shape.rank:  # row (kh, kw, o) of the filter matrix has zero point zw[o]
        zw = tf.reshape(tf.tile(zw, [geometry.kh * geometry.kw]), [1, -1])
    acc = exact_product(rows, geometry.grouped_filter(qw), zg, zw, multiplier, zb_per_row=True)
    return tf.reshape(acc, tf.concat([patches_shape[:3], [geometry.out_channels]], 0))


def transposed_filter_sums(qx, zx, qd, zd, geometry, multiplier):
    """dW of a transposed conv: conv2d's filter gradient with x and dY exchanged, A = X,
    ``dW[a, b, o, c] = sum over (n, h, w) of x[n, h, w, c] * dY_padded[n, h*sh + a*dh, w*sw + b*dw, o]``,
    as exact int64 sums [KH, KW, O, C].  qx: x's codes [N, H, W, C], zero point zx; qd: dY's codes
    [N, OH, OW, O], zero point zd (the padding holds zd: the code of real 0)."""
    rows, _ = patch_rows(qd, zd, geometry)  # [1, N*H*W, KH*KW*O]
    channels = qx.shape[-1]
    xt = tf.transpose(tf.reshape(qx, [-1, channels]))  # [C, N*H*W]
    acc = exact_product(xt, rows[0], zx, zd, multiplier)  # [C, KH*KW*O]
    acc = tf.reshape(acc, [channels, geometry.kh, geometry.kw, geometry.channels])
    return tf.transpose(acc, [1, 2, 3, 0])


# --- depth: a 3-D convolution as its depth taps' 2-D ones ---------------------------------------


def depth_taps(codes, zero_point, pads, kernel_depth, out_depth, sd, dd):
    """Per depth tap kd (ascending), the slice [N * OD, H, W, C] of codes [N, D, H, W, C] padded in
    depth with the zero point: ``padded[:, od * sd + kd * dd]`` for od < OD, batch outermost."""
    padded = tf.pad(codes, [[0, 0], list(pads), [0, 0], [0, 0], [0, 0]], constant_values=zero_point)
    span = (out_depth - 1) * sd + 1
    plane = codes.shape[2:]
    flat = [-1, *plane.as_list()] if plane.is_fully_defined() else tf.concat([[-1], tf.shape(codes)[2:]], 0)
    return [tf.reshape(padded[:, kd * dd : kd * dd + span : sd], flat) for kd in range(kernel_depth)]


def depth_col2im(per_tap, batch, out_depth, depth, pads, sd, dd):
    """The inverse of depth_taps for sums: tap kd's sums [N * OD, H, W, C] added at padded depth
    od * sd + kd * dd, the depth padding cropped: [N, D, H, W, C].  Exact (int64 or float64 integers)."""
    padded_depth = depth + pads[0] + pads[1]
    span = (out_depth - 1) * sd + 1
    total = None
    for kd, sums in enumerate(per_tap):
        plane = tf.shape(sums)[1:]
        s = tf.reshape(sums, tf.concat([[batch, out_depth], plane], 0))
        if sd > 1:  # zeros between the depths a tap reaches: [N, OD, sd, ...] -> [N, OD * sd, ...]
            s = tf.stack([s] + [tf.zeros_like(s)] * (sd - 1), axis=2)
            s = tf.reshape(s, tf.concat([[batch, out_depth * sd], plane], 0))[:, :span]
        start = kd * dd
        s = tf.pad(s, [[0, 0], [start, max(padded_depth - start - span, 0)], [0, 0], [0, 0], [0, 0]])
        total = s if total is None else total + s
    return total[:, pads[0] : pads[0] + depth]
