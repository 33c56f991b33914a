"""AMIntMatMul: the TF op of the integer table GEMM on 8-bit operand patterns (no gradient).

The quantized layers (approxtrain.quant) call it on the codes' bit patterns and define their
own gradients at the quantized level, so no gradient is registered here.
"""

import tensorflow as tf

from approxtrain._op_library import library


def _tensor(x, dtype, what):
    t = tf.convert_to_tensor(x)
    if t.dtype != dtype:
        raise TypeError(f"int_matmul_patterns: {what} must be a {dtype.name} tensor, got {t.dtype.name}")
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
