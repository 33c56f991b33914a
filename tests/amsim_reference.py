"""An independent NumPy implementation of docs/design.md, "Number semantics", for the tests.

It shares no code with the package: the core must agree with it bit for bit.
"""

import numpy as np

SIGN = np.uint32(0x80000000)
INF = np.uint32(0x7F800000)
NAN = np.uint32(0x7FC00000)


def _bits(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def _reduce(exp, frac, m, rounding):
    """Operand reduction: (exponent, M-bit fraction) as int64 arrays."""
    shift = 23 - m
    kept = frac >> shift
    exp = exp.copy()
    if rounding == "nearest":
        rest = frac & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        up = (rest > half) | ((rest == half) & ((kept & 1) == 1))
        kept = kept + up
        carried = kept == (1 << m)
        kept = np.where(carried, 0, kept)
        exp = exp + carried
    return exp, kept


def multiply(a, b, lut, m, rounding):
    """Elementwise AMSim product (a is the table row), float32 result."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    ua = _bits(a).astype(np.int64)
    ub = _bits(b).astype(np.int64)
    sign = (ua ^ ub) & 0x80000000
    ea, eb = (ua >> 23) & 0xFF, (ub >> 23) & 0xFF
    fa, fb = ua & 0x7FFFFF, ub & 0x7FFFFF
    nan = ((ea == 255) & (fa != 0)) | ((eb == 255) & (fb != 0))
    zero = (ea == 0) | (eb == 0)
    inf = (ea == 255) | (eb == 255)
    ra_e, ra_f = _reduce(ea, fa, m, rounding)
    rb_e, rb_f = _reduce(eb, fb, m, rounding)
    idx = np.where(zero | inf | nan, 0, (ra_f << m) | rb_f)
    entry = np.asarray(lut, np.int64)[idx]
    e = ra_e + rb_e - 127 + (entry >> 15)
    out = sign | (np.clip(e, 0, 255) << 23) | ((entry & 0x7FFF) << 8)
    out = np.where(e <= 0, sign, out)
    op_inf = (ra_e >= 255) | (rb_e >= 255)
    out = np.where((e >= 255) | op_inf, sign | 0x7F800000, out)
    out = np.where(zero, sign, out)
    out = np.where(inf & zero, 0x7FC00000, np.where(inf, sign | 0x7F800000, out))
    out = np.where(nan, 0x7FC00000, out)
    return out.astype(np.uint32).view(np.float32).reshape(a.shape)


def flush(x):
    """Flush subnormal float32 values to a zero of the same sign."""
    x = np.asarray(x, np.float32)
    u = _bits(x)
    tiny = (u & INF) == 0
    return np.where(tiny, (u & SIGN).view(np.float32), x).astype(np.float32)


def accumulate(products, axis):
    """Sum along axis from +0 in ascending order, one float32 add per term, FTZ."""
    products = np.moveaxis(np.asarray(products, np.float32), axis, 0)
    s = np.zeros(products.shape[1:], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for p in products:
            s = flush(s + p)
    return s


def matmul(a, b, lut, m, rounding):
    """C[i, j] = sum_k a[i, k] (x) b[k, j], k ascending (2-D)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    prods = multiply(a[:, :, None], b[None, :, :], lut, m, rounding)  # [M, K, N]
    return accumulate(prods, axis=1)


def conv2d_patches(x, kh, kw, strides, dilations, pads):
    """im2col: [N, OH, OW, KH, KW, C] with zeros at padded positions."""
    n, h, w, c = x.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pb, pl, pr = pads
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), np.float32)
    xp[:, pt : pt + h, pl : pl + w, :] = x
    oh = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    ow = (w + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    out = np.empty((n, oh, ow, kh, kw, c), np.float32)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = xp[
                :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :
            ]
    return out


def conv2d(x, w, lut, m, rounding, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """Forward conv in the canonical order: sum over (kh, kw, c) ascending."""
    kh, kw, cg, o = w.shape
    og = o // groups
    patches = conv2d_patches(x, kh, kw, strides, dilations, pads)
    n, oh, ow = patches.shape[:3]
    y = np.empty((n, oh, ow, o), np.float32)
    for g in range(groups):
        p = patches[..., g * cg : (g + 1) * cg].reshape(n * oh * ow, kh * kw * cg)
        wg = w[..., g * og : (g + 1) * og].reshape(kh * kw * cg, og)
        y[..., g * og : (g + 1) * og] = matmul(p, wg, lut, m, rounding).reshape(n, oh, ow, og)
    return y


def conv2d_input_grad(
    input_shape, w, dy, lut, m, rounding, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1
):
    """dx[n, ih, iw, c] = sum over (kh, kw, o) ascending of dy (x) w, dy the left operand."""
    n, h, wd, c = input_shape
    kh, kw, cg, o = w.shape
    og = o // groups
    _, oh, ow, _ = dy.shape
    sh, sw = strides
    dh, dw_ = dilations
    pt, _, pl, _ = pads
    # Patch of dy for each input position: [N, H, W, KH, KW, O], zero where no output maps there.
    patch = np.zeros((n, h, wd, kh, kw, o), np.float32)
    for ih in range(h):
        for i in range(kh):
            th = ih + pt - i * dh
            if th < 0 or th % sh or th // sh >= oh:
                continue
            for iw in range(wd):
                for j in range(kw):
                    tw = iw + pl - j * dw_
                    if tw < 0 or tw % sw or tw // sw >= ow:
                        continue
                    patch[:, ih, iw, i, j, :] = dy[:, th // sh, tw // sw, :]
    dx = np.empty((n, h, wd, c), np.float32)
    for g in range(groups):
        p = patch[..., g * og : (g + 1) * og].reshape(n * h * wd, kh * kw * og)
        # B[(kh, kw, o), c] = w[kh, kw, c, g*og + o]
        wg = np.transpose(w[..., g * og : (g + 1) * og], (0, 1, 3, 2)).reshape(kh * kw * og, cg)
        dx[..., g * cg : (g + 1) * cg] = matmul(p, wg, lut, m, rounding).reshape(n, h, wd, cg)
    return dx


def conv2d_filter_grad(
    x, filter_shape, dy, lut, m, rounding, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1
):
    """dw[kh, kw, c, o] = sum over (n, oh, ow) ascending of x (x) dy, x the left operand."""
    kh, kw, cg, o = filter_shape
    og = o // groups
    patches = conv2d_patches(x, kh, kw, strides, dilations, pads)
    n, oh, ow = patches.shape[:3]
    dw = np.empty(filter_shape, np.float32)
    for g in range(groups):
        p = patches[..., g * cg : (g + 1) * cg].reshape(n * oh * ow, kh * kw * cg)
        d = dy[..., g * og : (g + 1) * og].reshape(n * oh * ow, og)
        dw[..., g * og : (g + 1) * og] = matmul(p.T, d, lut, m, rounding).reshape(kh, kw, cg, og)
    return dw


def exact_table(m, truncate_product=False):
    """The exact-product table for M bits (bf16's when m = 7): entry of 1.ia x 1.ib."""
    ia = np.arange(1 << m, dtype=np.int64)[:, None]
    ib = np.arange(1 << m, dtype=np.int64)[None, :]
    prod = ((1 << m) + ia) * ((1 << m) + ib)  # value = prod / 2^(2m), in [1, 4)
    carry = prod >= (1 << (2 * m + 1))
    # fraction bits of the normalised product, as a fixed-point number with 2m(+carry) bits
    frac = np.where(carry, prod - (1 << (2 * m + 1)), prod - (1 << (2 * m)))
    fbits = 2 * m + carry.astype(np.int64)
    # top 15 fraction bits (truncated)
    f15 = np.where(fbits >= 15, frac >> np.maximum(fbits - 15, 0), frac << np.maximum(15 - fbits, 0))
    if truncate_product:
        f15 = (f15 >> (15 - m)) << (15 - m)
    return ((carry.astype(np.int64) << 15) | f15).astype(np.uint16).reshape(-1)


def random_floats(rng, size, normal_fraction=0.5):
    """float32 values drawn from all bit patterns, mixed with 'ordinary' normal values."""
    bits = rng.integers(0, 1 << 32, size=size, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = (rng.standard_normal(size) * np.exp2(rng.integers(-20, 20, size))).astype(np.float32)
    pick = rng.random(size) < normal_fraction
    return np.where(pick, normal, bits).astype(np.float32)


SPECIALS = np.array(
    [
        0.0,
        -0.0,
        1e-45,
        -1e-45,
        1e-39,
        -1.1754942e-38,
        1.17549435e-38,
        -1.17549435e-38,
        np.inf,
        -np.inf,
        np.nan,
        3.4028235e38,
        -3.4028235e38,
        1.7e38,
        2.0**127,
        2.0**-126,
        2.0**-63,
        2.0**64,
        1.0,
        -1.0,
        1.5,
        1.9999999,
        3.0,
        -0.75,
        1e-20,
        1e20,
        2.0**-100,
        2.0**100,
    ],
    dtype=np.float32,
)
