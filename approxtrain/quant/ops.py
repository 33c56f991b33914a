"""Products through an integer multiplier: quantize, multiply the 8-bit codes through the table,
accumulate exactly in integers, dequantize; with their gradients (docs/integer.md).

Operands: the left one (``a`` of matmul, ``x`` of conv2d) is the activation, quantized per tensor
and calibrated by ``QuantConfig.calibration`` (or the range a layer passes as ``input_range``);
the right one (the weights) is calibrated by its min/max, per tensor or per output channel (its
last axis).  The table row is the left operand, as for float multipliers.

Gradients (the quantizers pass the gradient where the operand lies in its calibrated range and
stop it outside, see quantize.in_range):

- default (``integer_backward=False``, no grad multiplier given): the straight-through
  estimator, dX = dY . W^T and dW = X^T . dY as native float32 products of the dequantized
  operands;
- ``integer_backward=True``: the same integer table; dX = dY_q . W_q^T (A = dY) with dY scaled by
  the weights' per-channel scales before it is quantized per tensor (so the sum over output
  channels has one scale), and dW = X_q^T . dY_q (A = X) with dY quantized per tensor;
- a grad multiplier given explicitly: an integer one (same signedness as the forward) runs
  that product as integer_backward does with its table; a float `Multiplier` runs the float AM
  op on the dequantized operands; ``"fp32"`` the native op.

Every op has all three: matmul (operands broadcast over batch axes too), conv2d (with depthwise
and conv1d), conv3d and the transposed convolutions.  The integer gradients, exact integer sums
scaled once (so the order of the integer additions does not change a bit):

- matmul: the GEMMs of the codes per output batch index; an operand broadcast over batch axes
  gets the int64 sum of its per-batch products over those axes (a rank-2 b shared by every batch:
  one GEMM whose sum runs over all rows, the same integers);
- conv2d: dX = col2im of the patch gradients dY_q . W_q^T per group (float64 integers),
  dW = patches(X_q)^T . dY_q per group;
- conv2d_transpose (x [N, H, W, C] by w [KH, KW, O, C]; conv1d_transpose with H = 1): dX is the
  forward integer conv2d of dY_q by W_q (A = dY; the weights' zero points zw[o] per term of the
  sum over (kh, kw, o)), dW the conv2d filter gradient with x and dY exchanged,
  dW[kh, kw, o, c] = sum over (n, h, w) of X_q[n, h, w, c] * dY_q padded[n, h*sh + kh*dh, w*sw + kw*dw, o]
  (A = X; the padding holds dY's zero point);
- conv3d, canonical order: with the depth padded (front, back) by the zero point and tap kd's
  slice xs_kd[(n, od)] = x_padded[n, od*sd + kd*dd] (as approxtrain.ops._conv3d),
      dX[n, d] = sum over kd ascending of tap kd's 2-D dX sums (conv2d above) placed at padded
                 depth od*sd + kd*dd, cropped (float64 integers), then scaled,
      dW[kd]   = the 2-D dW sums of tap kd (xs_kd by dY flattened to [N*OD, ...]), then scaled;
- conv3d_transpose: per depth tap kd the 2-D transposed gradients above on the depth-padded dY's
  tap slices, dX the int64 sum over kd ascending, dW[kd] tap kd's.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from approxtrain._conv_padding import conv_paddings
from approxtrain.multipliers import IntegerMultiplier
from approxtrain.ops import _matmul
from approxtrain.ops._checks import float32_tensor
from approxtrain.ops._op_table import op_table_for
from approxtrain.quant._conv_grads import (
    col2im,
    depth_col2im,
    depth_taps,
    filter_sums,
    input_sums,
    patch_rows,
    quantized_gradient,
    transposed_filter_sums,
    transposed_input_sums,
)
from approxtrain.quant._gemm import exact_product, fused_op_usable
from approxtrain.quant.config import quant_config
from approxtrain.quant.multipliers import describe, resolve_any
from approxtrain.quant.quantize import (
    batch_range,
    dequantize,
    dequantize_steps,
    in_range,
    minmax,
    params_from_range,
    patterns_of_steps,
    quantize,
    quantize_steps,
)


class GradRule(NamedTuple):
    """How one backward product runs: 'native', 'float' (a float AM multiplier) or 'integer'."""

    kind: str
    multiplier: object = None


def _grad_rule(value, forward, config, what, op):
    if value is None:
        return GradRule("integer", forward) if config.integer_backward else GradRule("native")
    m = resolve_any(value)
    if m is None:
        return GradRule("native")
    if isinstance(m, IntegerMultiplier):
        if m.signed != forward.signed:
            raise ValueError(
                f"{op}: {what} {m.name!r} is {'signed' if m.signed else 'unsigned'} but the forward multiplier "
                f"{forward.name!r} is not; an integer backward reuses the forward's codes, so both must match"
            )
        return GradRule("integer", m)
    return GradRule("float", m)


def resolve_rules(multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, op):
    """(forward IntegerMultiplier, QuantConfig, input GradRule, weight GradRule)."""
    forward = resolve_any(multiplier)
    config = quant_config(quantization)
    if not isinstance(forward, IntegerMultiplier):
        raise ValueError(
            f"{op}: quantization=, input_range=, weight_range= and integer grad multipliers need an integer "
            f"forward multiplier (the backward reuses its quantized operands), got multiplier={describe(multiplier)!r}"
        )
    return (
        forward,
        config,
        _grad_rule(grad_input_multiplier, forward, config, "grad_input_multiplier", op),
        _grad_rule(grad_weight_multiplier, forward, config, "grad_weight_multiplier", op),
    )


def activation_params(x, config, signed, input_range, op):
    """QuantParams of the left operand: the layer's range, or this batch's."""
    if input_range is not None:
        lo, hi = input_range
    elif config.calibration == "moving_average":
        raise ValueError(
            f"{op}: calibration='moving_average' keeps a running range in a layer's state; the stateless op "
            "takes calibration='minmax' or 'percentile', or the range itself as input_range=(lo, hi)"
        )
    else:
        lo, hi = batch_range(x, config, signed)
    return params_from_range(tf.stop_gradient(lo), tf.stop_gradient(hi), signed)


def weight_params(w, config, signed, weight_range=None):
    """QuantParams of the right operand: its own min/max (per tensor or channel), or the range given."""
    lo, hi = minmax(w, per_channel=config.granularity == "per_channel") if weight_range is None else weight_range
    return params_from_range(tf.stop_gradient(lo), tf.stop_gradient(hi), signed)


def calibrated_by_itself(config, given_range):
    """Whether an operand's range is its own min/max (no range given; an activation calibrated by
    'minmax', a weight by its min/max per tensor or channel): then every element lies in it."""
    return given_range is None and (config is None or config.calibration == "minmax")


def masked(grad, x, params, by_itself):
    """grad where x lies in its calibrated range and 0 elsewhere (quantize.in_range); an operand
    calibrated by its own min/max lies in it everywhere, so grad as it is, with no pass over x
    (a NaN in x makes its range NaN, and the whole product with it)."""
    return grad if by_itself else grad * in_range(x, params)


def dequantized_product(acc, scale):
    """An exact int64 sum back to float32: float32(sum) * scale (the scales' product, float32)."""
    return tf.cast(acc, tf.float32) * scale


# --- matmul ------------------------------------------------------------------------------------


def _same_batch(x, y):
    return x.shape.rank == y.shape.rank and x.shape[:-2].is_fully_defined() and x.shape[:-2] == y.shape[:-2]


def _summed_to(acc, operand, dy):
    """Per-output-batch int64 sums [..., R, C] summed exactly over the batch axes `operand` is
    broadcast over (a missing leading axis, or a size-1 one), in `operand`'s shape."""
    if _same_batch(operand, dy):
        return acc
    axes, _ = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(operand)[:-2], s1=tf.shape(dy)[:-2])
    return tf.reshape(tf.reduce_sum(acc, axis=axes), tf.shape(operand))


def matmul(
    a,
    b,
    multiplier,
    transpose_a=False,
    transpose_b=False,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
    weight_range=None,
):
    """``op(a) . op(b)`` through an integer multiplier (see the module doc); a is the activation.
    weight_range=(lo, hi): b's range (per tensor) instead of its own min/max."""
    forward, config, rule_a, rule_b = resolve_rules(
        multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, "matmul"
    )
    a = float32_tensor(a, "matmul operand a")
    b = float32_tensor(b, "matmul operand b")
    for t, what in ((a, "a"), (b, "b")):
        if t.shape.rank is None or t.shape.rank < 2:
            raise ValueError(f"matmul operand {what} must have a known rank >= 2, got shape {t.shape}")
    # Transposes are materialised outside the custom gradient: their own gradient is a transpose.
    if transpose_a:
        a = tf.linalg.matrix_transpose(a)
    if transpose_b:
        b = tf.linalg.matrix_transpose(b)
    pa = activation_params(a, config, forward.signed, input_range, "matmul")
    pb = weight_params(b, config, forward.signed, weight_range)

    @tf.custom_gradient
    def product(a, b):
        sa, sb = quantize_steps(a, pa), quantize_steps(b, pb)
        qa, qb = patterns_of_steps(sa, pa), patterns_of_steps(sb, pb)  # uint8
        y = dequantized_product(exact_product(qa, qb, pa.zero_point, pb.zero_point, forward), pa.scale * pb.scale)

        def grad(dy):
            da = _matmul_input_grad(dy, a, b, qb, sb, pb, rule_a)
            db = _matmul_weight_grad(dy, a, b, qa, sa, pa, rule_b)
            return (
                masked(da, a, pa, calibrated_by_itself(config, input_range)),
                masked(db, b, pb, calibrated_by_itself(None, weight_range)),
            )

        return y, grad

    return product(a, b)


def _float_table(rule):
    return op_table_for(rule.multiplier) if rule.kind == "float" else None


def _straight_through(float_op, dy, dqx, dqw, rule_x, rule_w, *args, **kwargs):
    """(dX, dW) by the straight-through estimator: the gradients of `float_op` (an approxtrain op taking
    ``(x, w, multiplier, *args, ...)``) on the dequantized operands, each through its float grad
    multiplier, or native where that is not a float one."""
    with tf.GradientTape() as inner:
        inner.watch([dqx, dqw])
        y = float_op(
            dqx,
            dqw,
            "fp32",
            *args,
            grad_input_multiplier=rule_x.multiplier if rule_x.kind == "float" else "fp32",
            grad_weight_multiplier=rule_w.multiplier if rule_w.kind == "float" else "fp32",
            **kwargs,
        )
    return inner.gradient(y, [dqx, dqw], output_gradients=dy)


def _matmul_input_grad(dy, a, b, qb, sb, pb, rule):
    """dA = dY . B^T (qb: B's patterns, sb: its quantize_steps)."""
    if rule.kind != "integer":
        return _matmul.grad_a(dy, a, dequantize_steps(sb, pb), _float_table(rule), False, False)
    # per-channel weight scales folded into dY: one scale for the sum over n
    qg, pg = quantized_gradient(dy, rule.multiplier.signed, pb.scale)
    # AMIntMatMul broadcasts the batch axes: one GEMM per output batch index, summed below
    acc = exact_product(qg, tf.linalg.matrix_transpose(qb), pg.zero_point, pb.zero_point, rule.multiplier, True)
    return dequantized_product(_summed_to(acc, a, dy), pg.scale)


def _matmul_weight_grad(dy, a, b, qa, sa, pa, rule):
    """dB = A^T . dY (qa: A's patterns, sa: its quantize_steps)."""
    if rule.kind != "integer":
        return _matmul.grad_b(dy, dequantize_steps(sa, pa), b, _float_table(rule), False, False)
    qd, pd = quantized_gradient(dy, rule.multiplier.signed)
    if b.shape.rank == 2 and a.shape.rank > 2:  # b shared by every batch: one GEMM over all rows
        qa = tf.reshape(qa, [-1, tf.shape(qa)[-1]])
        qd = tf.reshape(qd, [-1, tf.shape(qd)[-1]])
        acc = exact_product(tf.linalg.matrix_transpose(qa), qd, pa.zero_point, pd.zero_point, rule.multiplier)
    else:
        acc = exact_product(tf.linalg.matrix_transpose(qa), qd, pa.zero_point, pd.zero_point, rule.multiplier)
        acc = _summed_to(acc, b, dy)
    return tf.reshape(dequantized_product(acc, pa.scale * pd.scale), tf.shape(b))


# --- conv2d as im2col + the integer GEMM -------------------------------------------------------


class Im2Col(NamedTuple):
    """The static geometry of a conv2d lowered to GEMMs of patches."""

    kh: int
    kw: int
    strides: tuple
    dilations: tuple
    pads: list  # [top, bottom, left, right]
    groups: int
    channels: int
    out_channels: int

    def patches(self, padded):
        """[N, OH, OW, KH*KW*C] patches of a padded [N, H', W', C] tensor (row, column, channel order,
        as tf.image.extract_patches, which is several times slower): for uint8 codes where no GPU is
        the op AMIntIm2Col; else one gather of the taps' pixels, or with few channels at stride 1
        one strided slice per tap (col2im differentiates this TF form, on float64)."""
        (sh, sw), (dh, dw) = self.strides, self.dilations
        height, width = padded.shape[1], padded.shape[2]
        oh = (height - (self.kh - 1) * dh - 1) // sh + 1
        ow = (width - (self.kw - 1) * dw - 1) // sw + 1
        rows = [slice(a * dh, a * dh + (oh - 1) * sh + 1, sh) for a in range(self.kh)]
        columns = [slice(b * dw, b * dw + (ow - 1) * sw + 1, sw) for b in range(self.kw)]
        depth = self.kh * self.kw * self.channels
        if padded.dtype == tf.uint8 and fused_op_usable():  # the codes' patches: one pass in C++
            from approxtrain.ops._int_matmul_op import int_im2col

            return int_im2col(padded, (self.kh, self.kw), self.strides, self.dilations)
        if self.channels >= 4 or (sh, sw) != (1, 1):
            # One gather of every tap's pixel from the flattened plane: a run of C bytes per index.
            # TF's strided slices of uint8 are several times slower, and very slow with a stride.
            row = np.arange(oh)[:, None, None, None] * sh + np.arange(self.kh)[None, None, :, None] * dh
            column = np.arange(ow)[None, :, None, None] * sw + np.arange(self.kw)[None, None, None, :] * dw
            pixels = (row * width + column).reshape(-1).astype(np.int32)  # (oh, ow, kh, kw) order
            flat = tf.reshape(padded, [-1, height * width, self.channels])
            return tf.reshape(tf.gather(flat, pixels, axis=1), [-1, oh, ow, depth])
        # Few channels, stride 1: slicing [H, W, N, C] copies runs of N*C bytes instead of C
        # (about 2x faster than slicing [N, H, W, C], and than the gather of 1-byte runs).
        spatial_first = tf.transpose(padded, [1, 2, 0, 3])
        taps = tf.stack([spatial_first[r, c] for r in rows for c in columns], axis=2)  # [OH, OW, taps, N, C]
        return tf.reshape(tf.transpose(taps, [3, 0, 1, 2, 4]), [-1, oh, ow, depth])

    def grouped_rows(self, patches):
        """[N, OH, OW, KH*KW*C] -> [G, M, KH*KW*C/G]."""
        g, cg = self.groups, self.channels // self.groups
        if g == 1:
            return tf.reshape(patches, [1, -1, self.kh * self.kw * cg])
        t = tf.reshape(patches, [-1, self.kh * self.kw, g, cg])
        return tf.reshape(tf.transpose(t, [2, 0, 1, 3]), [g, -1, self.kh * self.kw * cg])

    def ungrouped_rows(self, rows, out_shape):
        """Inverse of grouped_rows: [G, M, KH*KW*C/G] -> [N, OH, OW, KH*KW*C]."""
        g, cg = self.groups, self.channels // self.groups
        if g == 1:
            return tf.reshape(rows, out_shape)
        t = tf.reshape(rows, [g, -1, self.kh * self.kw, cg])
        return tf.reshape(tf.transpose(t, [1, 2, 0, 3]), out_shape)

    def grouped_filter(self, w):
        """[KH, KW, C/G, O] -> [G, KH*KW*C/G, O/G]."""
        g = self.groups
        if g == 1:
            return tf.reshape(w, [1, -1, self.out_channels])
        t = tf.reshape(w, [-1, g, self.out_channels // g])
        return tf.transpose(t, [1, 0, 2])

    def grouped_channels(self, v):
        """[O] per-output-channel values -> [G, 1, O/G] (a scalar stays a scalar)."""
        if not v.shape.rank:
            return v
        return tf.reshape(v, [self.groups, 1, -1])

    def grouped_outputs(self, y):
        """[N, OH, OW, O] -> [G, M, O/G]."""
        g = self.groups
        if g == 1:
            return tf.reshape(y, [1, -1, self.out_channels])
        return tf.transpose(tf.reshape(y, [-1, g, self.out_channels // g]), [1, 0, 2])

    def ungrouped_outputs(self, y, out_shape):
        """[G, M, O/G] -> [N, OH, OW, O]."""
        if self.groups == 1:
            return tf.reshape(y, out_shape)
        return tf.reshape(tf.transpose(y, [1, 0, 2]), out_shape)

    def pad(self, codes, zero_code):
        top, bottom, left, right = self.pads
        return tf.pad(codes, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=zero_code)


def _im2col(x, w, attrs, groups, op):
    if not x.shape[1:].is_fully_defined() or not w.shape.is_fully_defined() or groups is None:
        raise ValueError(
            f"{op} with an integer multiplier needs static input height, width and channels and a static filter "
            f"shape, got input {x.shape} and filter {w.shape}"
        )
    kh, kw, _, out_channels = w.shape.as_list()
    strides, dilations = tuple(attrs.strides[1:3]), tuple(attrs.dilations[1:3])
    if attrs.padding == "EXPLICIT":
        e = attrs.explicit_paddings
        padding = [[e[2], e[3]], [e[4], e[5]]]
    else:
        padding = attrs.padding
    pads = conv_paddings(padding, x.shape[1:3].as_list(), (kh, kw), strides, dilations)
    return Im2Col(kh, kw, strides, dilations, pads, groups, x.shape[-1], out_channels)


def conv_sums(qx, px, qw, pw, geometry, multiplier):
    """The exact int64 sums [N, OH, OW, O] of a conv2d of codes qx [N, H, W, C] by qw, and the
    grouped patch rows [G, M, KH*KW*C/G] (uint8 patterns)."""
    rows, patches_shape = patch_rows(qx, px.zero_point, geometry)  # uint8 patterns (unsigned: the codes)
    acc = exact_product(
        rows, geometry.grouped_filter(qw), px.zero_point, geometry.grouped_channels(pw.zero_point), multiplier
    )
    out_shape = tf.concat([patches_shape[:3], [geometry.out_channels]], 0)
    return geometry.ungrouped_outputs(acc, out_shape), rows


def conv2d(
    x, w, multiplier, attrs, groups, grad_input_multiplier, grad_weight_multiplier, quantization, input_range, op
):
    """NHWC conv2d through an integer multiplier (x, w checked float32 tensors; attrs a ConvAttrs)."""
    from approxtrain.ops import _conv

    forward, config, rule_x, rule_w = resolve_rules(
        multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, op
    )
    geometry = _im2col(x, w, attrs, groups, op)
    px = activation_params(x, config, forward.signed, input_range, op)
    pw = weight_params(w, config, forward.signed)

    @tf.custom_gradient
    def conv(x, w):
        sx, sw = quantize_steps(x, px), quantize_steps(w, pw)
        qx, qw = patterns_of_steps(sx, px), patterns_of_steps(sw, pw)  # uint8
        acc, rows = conv_sums(qx, px, qw, pw, geometry, forward)
        y = dequantized_product(acc, px.scale * pw.scale)

        def grad(dy):
            if rule_x.kind == "integer":
                dx = _conv_input_grad_integer(dy, x.shape[1:], qw, pw, geometry, rule_x.multiplier)
            else:
                dqw = dequantize_steps(sw, pw)
                dx = _conv.input_grad(tf.shape(x), dqw, dy, _float_table(rule_x), attrs, groups)
            if rule_w.kind == "integer":
                dw = _conv_filter_grad_integer(dy, rows, px, w, geometry, rule_w.multiplier)
            else:
                dqx = dequantize_steps(sx, px)
                dw = _conv.filter_grad(dqx, tf.shape(w), dy, _float_table(rule_w), attrs, groups)
            return masked(dx, x, px, calibrated_by_itself(config, input_range)), dw  # w: its own min/max

        return y, grad

    return conv(x, w)


def _conv_filter_grad_integer(dy, rows, px, w, geometry, multiplier):
    """dW = X^T . dY over the patches (A = X), per group."""
    qd, pd = quantized_gradient(dy, multiplier.signed)
    sums = filter_sums(rows, px.zero_point, qd, pd.zero_point, geometry, tf.shape(w), multiplier)
    return dequantized_product(sums, px.scale * pd.scale)


def _conv_input_grad_integer(dy, plane, qw, pw, geometry, multiplier):
    """dX: dPatches = dY . W^T (A = dY) per group, summed back onto the input (col2im), exactly;
    plane: the input's static (H, W, C)."""
    qg, pg = quantized_gradient(dy, multiplier.signed, pw.scale)  # per-channel filter scales folded in
    sums = input_sums(qg, pg.zero_point, qw, pw.zero_point, geometry, plane, multiplier)
    return dequantized_product(sums, pg.scale)


# --- conv2d_transpose: the GEMM x . W^T, its columns summed onto the output (col2im) ----------


def transposed_sums(qx, px, qw, pw, geometry, padded_static, multiplier):
    """The exact sums (float64, integers) of a 2-D transposed conv of codes qx [N, H, W, C] by codes
    qw [KH, KW, C, O], on the padded output plane [N, *padded_static]: each input pixel's GEMM
    row (x the table row) added onto the output positions it reaches (col2im)."""
    kh, kw, channels, out_channels = qw.shape.as_list()
    columns = tf.reshape(tf.transpose(qw, [2, 0, 1, 3]), [channels, kh * kw * out_channels])
    zw = pw.zero_point if not pw.zero_point.shape.rank else tf.tile(pw.zero_point, [kh * kw])
    acc = exact_product(tf.reshape(qx, [-1, channels]), columns, px.zero_point, zw, multiplier)
    batch = tf.shape(qx)[:1]
    d_patches = tf.reshape(tf.cast(acc, tf.float64), tf.concat([batch, [qx.shape[1], qx.shape[2], -1]], 0))
    return col2im(d_patches, geometry, padded_static)  # float64 holds the sums exactly


def _transposed_grads(dy, qx, px, qw, pw, geometry, rules, straight_through):
    """(dX, dW) of a transposed conv2d whose forward codes are qx [N, H, W, C] and qw [KH, KW, O, C]
    (per-channel weight params per o), dY [N, OH, OW, O]; each product integer (its rule's
    multiplier) or the straight-through / float one, ``straight_through()``."""
    rule_x, rule_w = rules
    dx = dw = None
    if rule_x.kind != "integer" or rule_w.kind != "integer":
        dx, dw = straight_through()
    if rule_x.kind == "integer":
        qg, pg = quantized_gradient(dy, rule_x.multiplier.signed, pw.scale)  # the sum over o has one scale
        sums = transposed_input_sums(qg, pg.zero_point, qw, pw.zero_point, geometry, rule_x.multiplier)
        dx = dequantized_product(sums, pg.scale)
    if rule_w.kind == "integer":
        qd, pd = quantized_gradient(dy, rule_w.multiplier.signed)
        sums = transposed_filter_sums(qx, px.zero_point, qd, pd.zero_point, geometry, rule_w.multiplier)
        dw = dequantized_product(sums, px.scale * pd.scale)
    return dx, dw


def _static_output_shape(output_sizes, x, w, op):
    """The transposed conv's output shape (a TensorShape); its spatial and channel sizes, x's and
    w's must be static (the integer lowering is planned in Python)."""
    from tensorflow.python.framework import tensor_util

    out_shape = tensor_util.constant_value_as_shape(output_sizes)
    if not out_shape[1:].is_fully_defined() or not x.shape[1:].is_fully_defined() or not w.shape.is_fully_defined():
        raise ValueError(
            f"{op} with an integer multiplier needs static spatial and channel sizes, got input {x.shape}, "
            f"filter {w.shape} and output shape {out_shape}"
        )
    return out_shape


def conv2d_transpose(
    x, w, multiplier, output_sizes, attrs, grad_input_multiplier, grad_weight_multiplier, quantization, input_range, op
):
    """NHWC transposed conv2d through an integer multiplier: x [N, H, W, C] by w [KH, KW, O, C].

    Each input pixel's codes times the filter, ``d[n, h, w, (a, b, o)] = sum_c (qx - zx)(qw[a, b, o, c]
    - zw[o])`` (one table GEMM, x the table row), summed exactly onto the output positions the
    transposed conv sends them to, then scaled.  Per-channel weights: per output channel o.
    Gradients (module doc): dX the integer conv2d of dY by w, dW conv2d's filter gradient with x
    and dY exchanged; or straight-through / the float grad multipliers on the dequantized operands.
    """
    from approxtrain.ops import _conv_transpose

    forward, config, rule_x, rule_w = resolve_rules(
        multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, op
    )
    out_shape = _static_output_shape(output_sizes, x, w, op)
    kh, kw, out_channels, channels = w.shape.as_list()
    _, oh, ow, _ = out_shape.as_list()
    # The convolution this one transposes: from the output [N, OH, OW, O] to x's positions.
    conv_of_output = tf.TensorSpec([None, oh, ow, out_channels])
    geometry = _im2col(conv_of_output, w, attrs, 1, op)
    top, bottom, left, right = geometry.pads
    padded_static = [oh + top + bottom, ow + left + right, out_channels]
    px = activation_params(x, config, forward.signed, input_range, op)
    wt = tf.transpose(w, [0, 1, 3, 2])  # [KH, KW, C, O]: the output channel last, for per-channel scales
    pw = weight_params(wt, config, forward.signed)

    @tf.custom_gradient
    def conv_transpose(x, w):
        qx = quantize(x, px)
        qw = quantize(tf.transpose(w, [0, 1, 3, 2]), pw)  # [KH, KW, C, O]
        summed = transposed_sums(qx, px, qw, pw, geometry, padded_static, forward)
        y = dequantized_product(summed[:, top : top + oh, left : left + ow, :], px.scale * pw.scale)

        def grad(dy):
            dy = tf.ensure_shape(dy, [None, oh, ow, out_channels])
            dqx, dqw = dequantize(qx, px), tf.transpose(dequantize(qw, pw), [0, 1, 3, 2])
            dx, dw = _transposed_grads(
                dy,
                qx,
                px,
                tf.transpose(qw, [0, 1, 3, 2]),
                pw,
                geometry,
                (rule_x, rule_w),
                lambda: _straight_through(
                    _conv_transpose.conv2d_transpose,
                    dy,
                    dqx,
                    dqw,
                    rule_x,
                    rule_w,
                    output_sizes,
                    strides=tuple(attrs.strides[1:3]),
                    padding=[[top, bottom], [left, right]],
                    dilations=tuple(attrs.dilations[1:3]),
                ),
            )
            return masked(dx, x, px, calibrated_by_itself(config, input_range)), dw  # w: its own min/max

        return y, grad

    return conv_transpose(x, w)


# --- conv3d: the 2-D integer sums of the depth taps, added exactly -----------------------------


def conv3d(
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
    op,
):
    """NDHWC conv3d through an integer multiplier: per depth tap kd, the exact sums of the 2-D conv of
    the input slice by w[kd] (approxtrain.ops._conv3d's lowering), added in int64, then scaled.
    attrs: a _conv3d.DepthAttrs; window: (strides, padding, dilations) as given, for the gradient.
    Gradients: the module doc's canonical order (per tap the 2-D integer gradients), or
    straight-through / the float grad multipliers."""
    from approxtrain.ops import _conv3d

    forward, config, rule_x, rule_w = resolve_rules(
        multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, op
    )
    if not x.shape[1:].is_fully_defined() or not w.shape.is_fully_defined() or groups is None:
        raise ValueError(
            f"{op} with an integer multiplier needs static input sizes and a static filter shape, got input "
            f"{x.shape} and filter {w.shape}"
        )
    depth, kernel_depth = x.shape[1], w.shape[0]
    out_depth = attrs.out_depth(depth, kernel_depth)
    pads = attrs.depth_pads(depth, kernel_depth, out_depth)
    geometry = _im2col(tf.TensorSpec([None, *x.shape[2:]]), w[0], attrs.plane, groups, op)
    px = activation_params(x, config, forward.signed, input_range, op)
    pw = weight_params(w, config, forward.signed)

    @tf.custom_gradient
    def conv(x, w):
        qx, qw = quantize(x, px), quantize(w, pw)
        batch = tf.shape(x)[0]
        total, tap_rows = None, []
        for kd, taps in enumerate(depth_taps(qx, px.zero_point, pads, kernel_depth, out_depth, attrs.sd, attrs.dd)):
            acc, rows = conv_sums(taps, px, qw[kd], pw, geometry, forward)
            tap_rows.append(rows)
            total = acc if total is None else total + acc
        shape = tf.shape(total)
        total = tf.reshape(total, tf.stack([batch, out_depth, shape[1], shape[2], shape[3]]))
        y = dequantized_product(total, px.scale * pw.scale)

        def grad(dy):
            dx = dw = None
            if rule_x.kind != "integer" or rule_w.kind != "integer":
                dqx, dqw = dequantize(qx, px), dequantize(qw, pw)
                dx, dw = _straight_through(_conv3d.conv3d, dy, dqx, dqw, rule_x, rule_w, *window, groups)
            flat = tf.concat([[-1], tf.shape(dy)[2:]], 0)  # [N * OD, OH, OW, O]: the taps' 2-D batch
            if rule_x.kind == "integer":
                qg, pg = quantized_gradient(dy, rule_x.multiplier.signed, pw.scale)
                qg = tf.reshape(qg, flat)
                per_tap = [
                    input_sums(qg, pg.zero_point, qw[kd], pw.zero_point, geometry, x.shape[2:], rule_x.multiplier)
                    for kd in range(kernel_depth)
                ]
                sums = depth_col2im(per_tap, batch, out_depth, depth, pads, attrs.sd, attrs.dd)
                dx = dequantized_product(sums, pg.scale)
            if rule_w.kind == "integer":
                qd, pd = quantized_gradient(dy, rule_w.multiplier.signed)
                qd = tf.reshape(qd, flat)
                sums = [
                    filter_sums(rows, px.zero_point, qd, pd.zero_point, geometry, w.shape[1:], rule_w.multiplier)
                    for rows in tap_rows
                ]
                dw = dequantized_product(tf.stack(sums), px.scale * pd.scale)
            return masked(dx, x, px, calibrated_by_itself(config, input_range)), dw  # w: its own min/max

        return y, grad

    return conv(x, w)


def conv3d_transpose(
    x,
    w,
    multiplier,
    output_sizes,
    attrs,
    window,
    grad_input_multiplier,
    grad_weight_multiplier,
    quantization,
    input_range,
    op,
):
    """NDHWC transposed conv3d through an integer multiplier: x [N, D, H, W, C] by w [KD, KH, KW, O, C].

    Per depth tap kd, the 2-D transposed sums of every input depth slice by w[kd] (transposed_sums)
    land at output depth d * sd + kd * dd of the padded output; all are added exactly, cropped and
    scaled.  attrs: a _conv3d.DepthAttrs; window: (strides, padding, dilations) as given.
    Gradients: per depth tap the 2-D transposed integer gradients (module doc), or
    straight-through / the float grad multipliers."""
    from approxtrain.ops import _conv3d

    forward, config, rule_x, rule_w = resolve_rules(
        multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, op
    )
    out_shape = _static_output_shape(output_sizes, x, w, op)
    kd_, kh, kw, out_channels, channels = w.shape.as_list()
    _, od, oh, ow, _ = out_shape.as_list()
    depth = x.shape[1]
    front, back = attrs.depth_pads(od, kd_, depth)
    plane = tf.TensorSpec([None, oh, ow, out_channels])
    geometry = _im2col(plane, tf.TensorSpec([kh, kw, out_channels, channels]), attrs.plane, 1, op)
    top, bottom, left, right = geometry.pads
    padded_static = [oh + top + bottom, ow + left + right, out_channels]
    px = activation_params(x, config, forward.signed, input_range, op)
    wt = tf.transpose(w, [0, 1, 2, 4, 3])  # [KD, KH, KW, C, O]: the output channel last
    pw = weight_params(wt, config, forward.signed)
    padded_depth = od + front + back

    @tf.custom_gradient
    def conv_transpose(x, w):
        qx = quantize(x, px)
        qw = quantize(tf.transpose(w, [0, 1, 2, 4, 3]), pw)
        batch = tf.shape(x)[0]
        slices = tf.reshape(qx, [-1, *x.shape[2:]])  # [N * D, H, W, C]
        total = None
        for kd in range(kd_):
            sums = transposed_sums(slices, px, qw[kd], pw, geometry, padded_static, forward)
            sums = tf.reshape(sums, tf.stack([batch, depth, *padded_static]))
            if attrs.sd > 1:  # input depth d lands at d * sd: zeros in between
                spread = tf.stack([sums] + [tf.zeros_like(sums)] * (attrs.sd - 1), axis=2)
                sums = tf.reshape(spread, tf.stack([batch, depth * attrs.sd, *padded_static]))
                sums = sums[:, : (depth - 1) * attrs.sd + 1]
            start = kd * attrs.dd
            after = padded_depth - start - ((depth - 1) * attrs.sd + 1)
            sums = tf.pad(sums, [[0, 0], [start, after], [0, 0], [0, 0], [0, 0]])
            total = sums if total is None else total + sums
        cropped = total[:, front : front + od, top : top + oh, left : left + ow, :]
        y = dequantized_product(cropped, px.scale * pw.scale)

        def grad(dy):
            dy = tf.ensure_shape(dy, [None, od, oh, ow, out_channels])
            dx = dw = None
            if rule_x.kind != "integer" or rule_w.kind != "integer":
                dqx, dqw = dequantize(qx, px), tf.transpose(dequantize(qw, pw), [0, 1, 2, 4, 3])
                dx, dw = _straight_through(
                    _conv3d.conv3d_transpose, dy, dqx, dqw, rule_x, rule_w, output_sizes, *window
                )
            qw_oc = tf.transpose(qw, [0, 1, 2, 4, 3])  # [KD, KH, KW, O, C]
            # The conv this one transposes takes dY's depth od to x's depth: its depth taps of dY.
            if rule_x.kind == "integer":
                qg, pg = quantized_gradient(dy, rule_x.multiplier.signed, pw.scale)
                taps = depth_taps(qg, pg.zero_point, (front, back), kd_, depth, attrs.sd, attrs.dd)
                sums = None
                for kd, t in enumerate(taps):
                    s = transposed_input_sums(t, pg.zero_point, qw_oc[kd], pw.zero_point, geometry, rule_x.multiplier)
                    sums = s if sums is None else sums + s
                dx = dequantized_product(tf.reshape(sums, tf.shape(x)), pg.scale)
            if rule_w.kind == "integer":
                qd, pd = quantized_gradient(dy, rule_w.multiplier.signed)
                taps = depth_taps(qd, pd.zero_point, (front, back), kd_, depth, attrs.sd, attrs.dd)
                sums = [
                    transposed_filter_sums(slices, px.zero_point, t, pd.zero_point, geometry, rule_w.multiplier)
                    for t in taps
                ]
                dw = dequantized_product(tf.stack(sums), px.scale * pd.scale)
            return masked(dx, x, px, calibrated_by_itself(config, input_range)), dw  # w: its own min/max

        return y, grad

    return conv_transpose(x, w)
