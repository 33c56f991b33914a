"""NumPy reference of the integer table GEMM and the tables its tests use (no TensorFlow).

The reference looks every product up with np.take on the flattened table and sums in int64:
nothing shared with the kernels but the definition C[i, j] = sum_k products[a[i, k], b[k, j]].
"""

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def reference(pa, pb, products, transpose_a=False, transpose_b=False):
    """int64 sums of products[pa[..., i, k], pb[..., k, j]] (batch dimensions broadcast)."""
    pa = np.asarray(pa, np.uint8)
    pb = np.asarray(pb, np.uint8)
    if transpose_a:
        pa = np.swapaxes(pa, -1, -2)
    if transpose_b:
        pb = np.swapaxes(pb, -1, -2)
    flat = np.asarray(products, np.int64).reshape(-1)
    index = pa[..., :, :, None].astype(np.int64) * 256 + pb[..., None, :, :].astype(np.int64)
    return np.take(flat, index).sum(axis=-2, dtype=np.int64)


def table(kind, seed=0):
    """A (256, 256) int32 table: 'signed' random 16-bit two's-complement products, 'unsigned'
    random 16-bit ones, each with its extremes placed at a few patterns; 'wide' random int32
    values up to 2^30 in magnitude with INT32_MIN and INT32_MAX in it (no 16-bit view, and
    int32 sums overflow after two products)."""
    rng = np.random.default_rng(seed + {"signed": 0, "unsigned": 100, "wide": 200}[kind])
    if kind == "signed":
        t = rng.integers(-32768, 32768, size=(256, 256))
        t[0x80, 0x80], t[0x7F, 0x80], t[0x80, 0x7F], t[0xFF, 0x01] = -32768, 32767, -32768, 32767
    elif kind == "unsigned":
        t = rng.integers(0, 65536, size=(256, 256))
        t[0xFF, 0xFF], t[0x00, 0xFF], t[0xFF, 0x00], t[0x01, 0x02] = 65535, 0, 65535, 65535
    else:
        t = rng.integers(-(1 << 30), (1 << 30) + 1, size=(256, 256))
        t[0x00, 0x01], t[0x01, 0x00], t[0xFF, 0xFF] = INT32_MIN, INT32_MAX, INT32_MAX
    return t.astype(np.int32)


def patterns(rng, shape):
    """Random uint8 patterns with every extreme (0, 0x7f, 0x80, 0xff) well represented."""
    p = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pick = rng.random(shape) < 0.2
    p[pick] = rng.choice(np.array([0x00, 0x7F, 0x80, 0xFF], np.uint8), size=int(pick.sum()))
    return p
