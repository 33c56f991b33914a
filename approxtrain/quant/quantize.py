"""Quantization parameters, quantize and dequantize, and the calibration of a range.

The arithmetic is TensorFlow's fake-quant ops' (FakeQuantWithMinMaxVars): from a range
[lo, hi] (widened to hold 0) the scale is (hi - lo) / (qmax - qmin), the zero point
is qmin - lo / scale rounded half away from zero and clamped, the range is nudged to
[(qmin - zp) * scale, (qmax - zp) * scale], and a value x has the code
floor((clamp(x) - nudged_lo) * (1 / scale) + 0.5) + qmin.  So the codes are bit for bit
those of tf.quantization.fake_quant_with_min_max_vars(narrow_range = signed).

Signed multipliers: symmetric, codes in [-127, 127] (narrow range: -128 is never used,
so the code range is symmetric and the zero point is 0).  Unsigned multipliers:
asymmetric, codes in [0, 255] with an integer zero point, the code of real 0.
"""

from typing import NamedTuple

import tensorflow as tf

SIGNED_CODES = (-127, 127)
UNSIGNED_CODES = (0, 255)


def code_range(signed):
    return SIGNED_CODES if signed else UNSIGNED_CODES


class QuantParams(NamedTuple):
    """The quantization of one operand; tensors are scalars (per tensor) or [C] (per channel, last axis)."""

    scale: tf.Tensor  # float32
    zero_point: tf.Tensor  # int32, the code of real 0
    nudged_min: tf.Tensor  # float32, the real value of code qmin
    nudged_max: tf.Tensor  # float32, the real value of code qmax
    low: tf.Tensor  # float32, the calibrated range (widened to hold 0; symmetric when signed) ...
    high: tf.Tensor  # ... where the straight-through estimator passes the gradient
    signed: bool


def _divide(x, y):
    """x / y, correctly rounded in eager and graph mode alike.

    A plain float32 division inside a tf.function may come out an ulp off (TF's graph
    rewrites), which would make a traced model quantize differently from the same model
    run eagerly; DivNoNan is left alone (y is never 0 here)."""
    return tf.math.divide_no_nan(tf.cast(x, tf.float32), tf.cast(y, tf.float32))


def _round_half_away(v):
    """std::round for v >= 0 without the floor(v + 0.5) rounding slip at 0.49999997."""
    down = tf.floor(v)
    return down + tf.cast(v - down >= 0.5, v.dtype)


def params_from_range(lo, hi, signed):
    """QuantParams of the range [lo, hi] (float32 tensors of the same shape), widened to hold 0."""
    lo = tf.minimum(tf.cast(lo, tf.float32), 0.0)
    hi = tf.maximum(tf.cast(hi, tf.float32), 0.0)
    qmin, qmax = code_range(signed)
    if signed:
        hi = tf.maximum(-lo, hi)
        lo = -hi
    span = hi - lo
    # An all-zero operand: any scale represents it; 1 keeps 1/scale finite.
    scale = tf.where(span > 0, _divide(span, float(qmax - qmin)), tf.ones_like(span))
    if signed:
        zero_point = tf.zeros_like(scale)
    else:
        from_min = float(qmin) - _divide(lo, scale)
        zero_point = tf.clip_by_value(_round_half_away(tf.maximum(from_min, 0.0)), float(qmin), float(qmax))
    nudged_min = (float(qmin) - zero_point) * scale
    nudged_max = (float(qmax) - zero_point) * scale
    return QuantParams(scale, tf.cast(zero_point, tf.int32), nudged_min, nudged_max, lo, hi, bool(signed))


def quantize_steps(x, params):
    """code - qmin of float32 x as float32 (exact integers; per-channel params broadcast over the
    last axis): what quantize casts, kept by the hot ops to take patterns and dequantized values
    from without another pass through int32."""
    clamped = tf.clip_by_value(x, params.nudged_min, params.nudged_max)
    shifted = (clamped - params.nudged_min) * _divide(1.0, params.scale) + 0.5
    return tf.floor(shifted)


def quantize(x, params):
    """int32 codes of float32 x (per-channel params broadcast over the last axis)."""
    return tf.cast(quantize_steps(x, params), tf.int32) + code_range(params.signed)[0]


def patterns_of_steps(steps, params):
    """The uint8 patterns of the codes whose quantize_steps are `steps`: unsigned codes are the
    steps themselves (0..255, cast exactly); signed ones go through their int32 codes."""
    if not params.signed:
        return tf.cast(steps, tf.uint8)
    return patterns(tf.cast(steps, tf.int32) + code_range(True)[0])


def dequantize(codes, params):
    """The real values of int32 codes: (code - zero_point) * scale."""
    return tf.cast(codes - params.zero_point, tf.float32) * params.scale


def dequantize_steps(steps, params):
    """dequantize of the codes whose quantize_steps are `steps`, bit for bit: code - zero_point is
    the exact float32 integer steps + (qmin - zero_point), then times the scale."""
    offset = tf.cast(code_range(params.signed)[0] - params.zero_point, tf.float32)
    return (steps + offset) * params.scale


def in_range(x, params):
    """float32 1 where x lies in the calibrated range (the straight-through estimator passes it), else 0.

    The calibrated range, not the nudged one TF's fake-quant gradient uses: nudging moves the ends
    by less than half a step, and an operand calibrated by its own min/max is never clipped, so
    its extreme elements keep their gradient."""
    return tf.cast(tf.logical_and(x >= params.low, x <= params.high), tf.float32)


def patterns(codes):
    """The uint8 bit patterns of int32 codes, as the table indexes them (two's complement);
    uint8 input is taken as patterns already."""
    if codes.dtype == tf.uint8:
        return codes
    # A cast to an unsigned type keeps the low 8 bits (modulo 2^8, as C++ defines it): one pass.
    return tf.cast(codes, tf.uint8)


# --- calibration -------------------------------------------------------------------------------


def minmax(x, per_channel=False):
    """(lo, hi) of x: scalars, or per last-axis channel."""
    axes = list(range(x.shape.rank - 1)) if per_channel else None
    return tf.reduce_min(x, axis=axes), tf.reduce_max(x, axis=axes)


def _nearest_rank(sorted_values, p):
    """The p-th percentile of ascending values, nearest-rank: element ceil(p/100 * n) - 1."""
    n = tf.size(sorted_values, out_type=tf.int64)
    rank = tf.cast(tf.math.ceil(tf.cast(n, tf.float64) * (p / 100.0)), tf.int64)
    return tf.gather(sorted_values, tf.clip_by_value(rank, 1, tf.maximum(n, 1)) - 1)


def percentile_range(x, p, signed):
    """(lo, hi) clipping the tails: signed: +-(p-th percentile of |x|); unsigned: the (100-p)-th
    and p-th percentiles of x (nearest rank)."""
    flat = tf.reshape(x, [-1])
    if signed:
        top = _nearest_rank(tf.sort(tf.abs(flat)), p)
        return -top, top
    ordered = tf.sort(flat)
    return _nearest_rank(ordered, 100.0 - p), _nearest_rank(ordered, p)


def batch_range(x, config, signed):
    """The range of an activation from this batch alone: 'minmax' or 'percentile'."""
    if config.calibration == "percentile":
        return percentile_range(x, config.percentile, signed)
    return minmax(x)
