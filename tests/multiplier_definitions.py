"""Tables of multipliers computed in NumPy from their definitions in docs/multipliers.md.

Independent of the package and of the C/C++ models in tests/fixtures: integer
arithmetic on the operands' M-bit fractions ia, ib (units of 2^-M), index
ia * 2^M + ib.  Each function returns (carry, fraction, fraction_bits): the
product is (1 + fraction / 2^fraction_bits) * 2^carry.
"""

import numpy as np


def operand_grid(m):
    """(ia, ib) over the whole table, row-major in ia (the left operand)."""
    i = np.arange(1 << m, dtype=np.int64)
    return np.repeat(i, 1 << m), np.tile(i, 1 << m)


def mbm(m):
    """docs/multipliers.md, mbm{1,3,5,7}: the result fraction has M bits."""
    ia, ib = operand_grid(m)
    one = 1 << m
    s = (ia | 1) + (ib | 1)  # x' + y', the lowest kept bit forced to 1
    c = s >= one
    # C = 2^-4 + 2^-6 cut to M bits (units of 2^-M), halved when the sum carries.
    corr = {7: (10, 5), 5: (2, 1), 3: (0, 0), 1: (0, 0)}[m]
    t = s + corr[0]  # c = 0: product 1 + t
    renorm = t >= one
    f = (s - one) + corr[1]  # c = 1: product 2 (1 + f)
    f = np.where(f >= one, s - one, f)
    carry = np.where(c, 1, renorm.astype(np.int64))
    fraction = np.where(c, f, np.where(renorm, (t - one) >> 1, t))
    return carry, fraction, m


def mitchell(m):
    """docs/multipliers.md, mitchell{1,3,5,7}: s = x + y; 1 + s, or 2s once s >= 1."""
    ia, ib = operand_grid(m)
    s = ia + ib
    carry = (s >= (1 << m)).astype(np.int64)
    return carry, np.where(carry == 1, s - (1 << m), s), m


def drum(k):
    """docs/multipliers.md, drum{4,5,6}: M = k - 1; each significand keeps its leading one and k-2 fraction
    bits and sets bit k-1; the shortened significands multiply exactly."""
    m = k - 1
    ia, ib = operand_grid(m)
    p = ((1 << m) + (ia | 1)) * ((1 << m) + (ib | 1))  # units of 2^-2M
    carry = (p >= (2 << (2 * m))).astype(np.int64)
    # (1 + fraction / 2^(2M+1)) * 2 when carried, else (1 + fraction / 2^(2M)): bring both to 2M+1 bits
    fraction = np.where(carry == 1, p - (2 << (2 * m)), 2 * (p - (1 << (2 * m))))
    return carry, fraction, 2 * m + 1


def truncated_product(m, keep):
    """The exact product of the M-bit significands, its fraction truncated to `keep` bits."""
    ia, ib = operand_grid(m)
    p = ((1 << m) + ia) * ((1 << m) + ib)  # units of 2^-2M
    carry = (p >= (2 << (2 * m))).astype(np.int64)
    shift = 2 * m + carry - keep  # drop the fraction bits below the top `keep`
    fraction = (p - (np.int64(1) << (2 * m + carry))) >> shift
    return carry, fraction, keep


def entries(carry, fraction, fraction_bits):
    """approxtrain uint16 entries: carry << 15 | the top 15 bits of the fraction."""
    fraction = np.asarray(fraction, np.int64)
    top = fraction << (15 - fraction_bits) if fraction_bits <= 15 else fraction >> (fraction_bits - 15)
    return ((np.asarray(carry, np.int64) << 15) | top).astype(np.uint16)


def approxtrain_uint8(carry, fraction, m):
    """ApproxTrain's uint8 .bin bytes (bit 7 = carry, the low M bits = the M-bit fraction)."""
    return ((np.asarray(carry, np.int64) << 7) | fraction).astype(np.uint8).tobytes()


def approxtrain_uint32(carry, fraction, m):
    """ApproxTrain's older uint32 .bin bytes (bit 31 = carry, the fraction in float32 bits 22..23-M)."""
    words = (np.asarray(carry, np.int64) << 31) | (np.asarray(fraction, np.int64) << (23 - m))
    return words.astype("<u4").tobytes()
