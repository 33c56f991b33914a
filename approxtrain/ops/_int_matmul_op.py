"""AMIntMatMul: the TF op of the integer table GEMM on 8-bit operand patterns (no gradient), and
AMIntMatMulZeroPoint: the same GEMM with the zero-point terms, in int64 (CPU only).

The quantized layers (approxtrain.quant) call it on the codes' bit patterns and define their
own gradients at the quantized level, so no gradient is registered here.
"""

import tensorflow as tf

from approxtrain._op_library import library


def _tensor(x, dtype, what, op="int_matmul_patterns"):
    t = tf.convert_to_tensor(x)
    if t.dtype != dtype:
        raise TypeError(f"{op}: {what} must be a {dtype.name} tensor, got {t.dtype.name}")
    return t


def int_matmul_patterns(a, b, products, transpose_a=False, transpose_b=False):
    """``C[..., i, j] = sum_k products[op(a)[..., i, k], op(b)[..., k, j]]`` in int32.

    a: uint8 [batch..., M, K] and b: uint8 [batch..., K, N] bit patterns (batch dimensions
    broadcast as in ``tf.linalg.matmul``; ``transpose_a``/``transpose_b`` transpose the last
    two), products: int32 [256, 256] with the row from a.  The op fails with
    InvalidArgumentError when K * max|products| >= 2^31 (an int32 sum could overflow): split K
    and add the parts in int64.
    """
    a = _tensor(a, tf.uint8, "a")
    b = _tensor(b, tf.uint8, "b")
    products = _tensor(products, tf.int32, "products")
    return library().am_int_mat_mul(a, b, products, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def int_matmul_zero_point(a, b, products, za, zb, transpose_a=False, transpose_b=False):
    """``C[..., i, j] = sum_k (op(a)[..., i, k] - za) * (op(b)[..., k, j] - zb[j])`` in int64, the
    products of the patterns as stored taken from ``products`` and the zero-point terms exact
    integer sums (AMIntMatMulZeroPoint, CPU only).

    a, b, products as in :func:`int_matmul_patterns`; za: int32 scalar; zb: int32 scalar or [N]
    (one per column, every batch alike).  K is not bounded (the table sums are split into
    int32-safe blocks inside the op).
    """
    op = "int_matmul_zero_point"
    a, b = _tensor(a, tf.uint8, "a", op), _tensor(b, tf.uint8, "b", op)
    products = _tensor(products, tf.int32, "products", op)
    za, zb = _tensor(za, tf.int32, "za", op), _tensor(zb, tf.int32, "zb", op)
    return library().am_int_mat_mul_zero_point(
        a, b, products, za, zb, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b)
    )


def int_im2col(padded, kernel, strides, dilations):
    """AMIntIm2Col (CPU only): the uint8 patches [N, OH, OW, KH*KW*C] of an already padded uint8
    [N, H, W, C] tensor, ``patches[n, oh, ow, (a*KW + b)*C + c] = padded[n, oh*sh + a*dh, ow*sw + b*dw, c]``.
    kernel, strides, dilations: (height, width) pairs of ints >= 1."""
    padded = _tensor(padded, tf.uint8, "padded", "int_im2col")
    window = [int(v) for v in (*kernel, *strides, *dilations)]
    return library().am_int_im2_col(padded, window=window)
