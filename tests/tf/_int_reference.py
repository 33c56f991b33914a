"""NumPy references for the quantized integer-multiplier products (tests only).

Written from docs/integer.md's definitions, independently of approxtrain.quant: the fake-quant
arithmetic in float32, the table looked up product by product and summed in int64.
"""

import importlib.util

import numpy as np
import tensorflow as tf

from approxtrain.multipliers import IntegerMultiplier

F = np.float32


def exact_table(signed):
    """The exact 8-bit product table, indexed by bit patterns."""
    values = np.arange(256, dtype=np.int64)
    if signed:
        values = np.where(values >= 128, values - 256, values)
    return np.multiply.outer(values, values).astype(np.int32)


def exact_multiplier(signed, name=None):
    return IntegerMultiplier(name or ("t8s_exact" if signed else "t8u_exact"), signed, exact_table(signed))


def truncated_multiplier(signed, drop=4):
    """Exact products with the low `drop` bits of the magnitude cleared: an approximate table."""
    table = exact_table(signed).astype(np.int64)
    mag = (np.abs(table) >> drop) << drop
    return IntegerMultiplier(f"t8{'s' if signed else 'u'}_trunc{drop}", signed, (np.sign(table) * mag).astype(np.int32))


def random_multiplier(signed, seed=0):
    """Exact products plus a random error of up to +-300: no structure to hide a wrong index."""
    rng = np.random.default_rng(seed)
    table = exact_table(signed).astype(np.int64) + rng.integers(-300, 301, size=(256, 256))
    low, high = (-32768, 32767) if signed else (0, 65535)
    return IntegerMultiplier(
        f"t8{'s' if signed else 'u'}_rand{seed}", signed, np.clip(table, low, high).astype(np.int32)
    )


# --- quantization, as TensorFlow's FakeQuantWithMinMaxVars computes it --------------------------


def params(lo, hi, signed):
    """(scale, zero_point, nudged_min, nudged_max, qmin) as float32 / int64 arrays."""
    lo = np.minimum(np.asarray(lo, F), F(0))
    hi = np.maximum(np.asarray(hi, F), F(0))
    qmin, qmax = (-127, 127) if signed else (0, 255)
    if signed:
        hi = np.maximum(-lo, hi)
        lo = -hi
    span = (hi - lo).astype(F)
    scale = np.where(span > 0, span / F(qmax - qmin), F(1)).astype(F)
    if signed:
        zp = np.zeros_like(scale)
    else:
        from_min = (F(qmin) - lo / scale).astype(F)
        zp = np.clip(np.floor(from_min + np.float64(0.5)), qmin, qmax).astype(F)  # std::round, from_min >= 0
    nudged_min = ((F(qmin) - zp) * scale).astype(F)
    nudged_max = ((F(qmax) - zp) * scale).astype(F)
    return scale, zp.astype(np.int64), nudged_min, nudged_max, qmin


def quantize(x, p):
    scale, _, nmin, nmax, qmin = p
    clamped = np.clip(np.asarray(x, F), nmin, nmax).astype(F)
    shifted = ((clamped - nmin).astype(F) * (F(1) / scale)).astype(F) + F(0.5)
    return np.floor(shifted.astype(F)).astype(np.int64) + qmin


def dequantize(codes, p):
    scale, zp = p[0], p[1]
    return (codes - zp).astype(F) * scale


def minmax_params(x, signed, per_channel=False):
    x = np.asarray(x, F)
    axes = tuple(range(x.ndim - 1)) if per_channel else None
    return params(x.min(axis=axes), x.max(axis=axes), signed)


# --- the integer GEMM ---------------------------------------------------------------------------


def table_matmul(qa, qb, za, zb, table):
    """sum_k P[pattern(qa), pattern(qb)] - qa*zb - za*qb + za*zb, int64, qa [..., M, K], qb [..., K, N].

    zb: scalar or [N] (per column of qb)."""
    pa, pb = np.asarray(qa) & 255, np.asarray(qb) & 255
    looked_up = table.astype(np.int64)[pa[..., :, :, None], pb[..., None, :, :]]  # [..., M, K, N]
    zb = np.asarray(zb, np.int64)
    terms = looked_up - qa[..., :, :, None] * zb - za * qb[..., None, :, :] + za * zb
    return terms.sum(axis=-2)


def quantized_matmul(a, b, multiplier, per_channel=False):
    """The forward of an integer-multiplier matmul by minmax calibration: float32 [..., M, N]."""
    pa = minmax_params(a, multiplier.signed)
    pb = minmax_params(b, multiplier.signed, per_channel)
    qa, qb = quantize(a, pa), quantize(b, pb)
    acc = table_matmul(qa, qb, pa[1], pb[1], multiplier.products)
    return acc.astype(F) * (pa[0] * pb[0]).astype(F), (pa, pb, qa, qb)


# --- conv2d by explicit loops ---------------------------------------------------------------


def windows(codes, kh, kw, strides, dilations, pads, fill):
    """[N, OH, OW, KH, KW, C] windows of the padded codes, by explicit loops."""
    top, bottom, left, right = pads
    xp = np.pad(codes, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    n, h, w, c = xp.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, oh, ow, kh, kw, c), np.int64)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    out[:, i, j, a, b] = xp[:, i * sh + a * dh, j * sw + b * dw]
    return out, xp.shape


def reference_conv(x, w, m, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), per_channel=False):
    kh, kw, cg, o = w.shape
    groups = x.shape[-1] // cg
    og = o // groups
    px, pw = minmax_params(x, m.signed), minmax_params(w, m.signed, per_channel)
    qx, qw = quantize(x, px), quantize(w, pw)
    win, _ = windows(qx, kh, kw, strides, dilations, pads, px[1])
    n, oh, ow = win.shape[:3]
    acc = np.zeros((n, oh, ow, o), np.int64)
    zw = np.broadcast_to(pw[1], (o,))
    for g in range(groups):
        rows = win[..., g * cg : (g + 1) * cg].reshape(-1, kh * kw * cg)
        filt = qw[..., g * og : (g + 1) * og].reshape(kh * kw * cg, og)
        acc[..., g * og : (g + 1) * og] = table_matmul(
            rows, filt, px[1], zw[g * og : (g + 1) * og], m.products
        ).reshape(n, oh, ow, og)
    return acc.astype(F) * (px[0] * pw[0]).astype(F), (px, pw, qx, qw)


# --- a TF stand-in for AMIntMatMul until helper C1's op exists ----------------------------------


def reference_patterns_matmul(a, b, products):
    """uint8 patterns [..., M, K] x [..., K, N] through an int32 [256, 256] table: int32 [..., M, N]."""
    a = tf.cast(a, tf.int32)
    b = tf.cast(b, tf.int32)
    index = a[..., :, :, None] * 256 + b[..., None, :, :]
    looked_up = tf.gather(tf.reshape(products, [-1]), index)
    return tf.cast(tf.reduce_sum(tf.cast(looked_up, tf.int64), axis=-2), tf.int32)


def have_int_matmul_op():
    """Helper C1's wrapper is there and the built op library has its AMIntMatMul."""
    if importlib.util.find_spec("approxtrain.ops._int_matmul_op") is None:
        return False
    from approxtrain._op_library import library

    return hasattr(library(), "am_int_mat_mul")
