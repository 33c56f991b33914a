"""The exact integer GEMM of 8-bit codes through an integer multiplier's table.

    sum_k (qa[m, k] - za) * (qb[k, n] - zb)
      = sum_k P[qa, qb] - sum_k qa * zb - za * sum_k qb + sum_k za * zb

The first sum is the table op (AMIntMatMul: the products of the codes as stored, what
the hardware multiplier sees, accumulated in int32); the zero-point terms are exact
integer sums, in int64.  Signed operands have zero point 0 and need none of them.

Where no GPU is, a scalar zb or one per column makes the whole sum one op,
AMIntMatMulZeroPoint (int64 out, the terms added as the output is written, K split inside);
otherwise (a GPU, a zb per row or per batch) AMIntMatMul per int32-safe chunk of K and the
terms as TF ops.  Both give the same integers.
"""

import functools
import threading

import numpy as np
import tensorflow as tf

_INT32_LIMIT = 2**31
_lock = threading.Lock()
_cache = {}  # name -> (products array the tensor was made from, tf.Tensor)


def products_tensor(multiplier):
    """The multiplier's int32 [256, 256] products as a host tensor, cached per name (made eagerly)."""
    with _lock:
        cached = _cache.get(multiplier.name)
        if cached is not None and (cached[0] is multiplier.products or np.array_equal(cached[0], multiplier.products)):
            return cached[1]
        with tf.init_scope(), tf.device("/CPU:0"):
            tensor = tf.constant(multiplier.products, dtype=tf.int32)
        _cache[multiplier.name] = (multiplier.products, tensor)
        return tensor


def patterns_matmul(a, b, products):
    """AMIntMatMul: uint8 patterns [..., M, K] x [..., K, N] -> int32 [..., M, N] (helper C1's op)."""
    from approxtrain.ops._int_matmul_op import int_matmul_patterns

    return int_matmul_patterns(a, b, products)


def _k_chunk(multiplier):
    """The most products an int32 accumulator holds for any codes of this table."""
    largest = max(1, int(np.abs(multiplier.products.astype(np.int64)).max()))
    return (_INT32_LIMIT - 1) // largest


def table_sum(pa, pb, multiplier):
    """sum_k P[pa[..., m, k], pb[..., k, n]] as int64; K split into int32-safe chunks."""
    products = products_tensor(multiplier)
    if not tf.executing_eagerly():
        products = tf.identity(products)  # see approxtrain.ops._matmul: no eager capture in loop gradients
    k = pa.shape[-1]
    chunk = _k_chunk(multiplier)
    if k is None or k <= chunk:
        return tf.cast(patterns_matmul(pa, pb, products), tf.int64)
    total = None
    for start in range(0, k, chunk):
        part = tf.cast(
            patterns_matmul(pa[..., start : start + chunk], pb[..., start : start + chunk, :], products), tf.int64
        )
        total = part if total is None else total + part
    return total


@functools.cache
def fused_op_usable():
    """AMIntMatMulZeroPoint has a CPU kernel only: used where no GPU is (else AMIntMatMul's
    GPU kernel and the zero-point terms as TF ops)."""
    return not tf.config.list_logical_devices("GPU")


def _column_zero_points(zb, zb_per_row, n):
    """zb as AMIntMatMulZeroPoint takes it (a scalar, or [N]: one per column, every batch alike),
    or None where it is not one of those (per row of qb, or per batch)."""
    if zb.shape.rank == 0:
        return zb
    if zb_per_row or n is None or not zb.shape.is_fully_defined():
        return None
    dims = zb.shape.as_list()
    if dims[-1] != n or any(d != 1 for d in dims[:-1]):
        return None
    return tf.reshape(zb, [n])


def _zero_point_matmul(pa, pb, za, zb, multiplier):
    """AMIntMatMulZeroPoint: sum_k (pa - za)(pb - zb) in int64 (signed: za = zb = 0)."""
    from approxtrain.ops._int_matmul_op import int_matmul_zero_point

    products = products_tensor(multiplier)
    if not tf.executing_eagerly():
        products = tf.identity(products)  # as table_sum
    return int_matmul_zero_point(pa, pb, products, za, zb)


def exact_product(qa, qb, za, zb, multiplier, zb_per_row=False):
    """sum_k (qa - za)(qb - zb) with the products of the codes taken from the table, int64 [..., M, N].

    qa: int32 codes [..., M, K] (or their uint8 patterns: the codes themselves when unsigned);
    qb: int32 codes [..., K, N] (or uint8 patterns likewise); za: int32 scalar; zb: int32 scalar,
    or broadcastable to [..., 1, N] (a zero point per column), or with zb_per_row broadcastable
    to [..., K] (one per row of qb: per term of the sum).

    On the CPU, a scalar zb or one per column is one op (AMIntMatMulZeroPoint: the table sums and
    the zero-point terms added as the output is written, no pass over the operands in TF).
    """
    from approxtrain.quant.quantize import patterns

    if fused_op_usable():
        zb_columns = tf.zeros([], tf.int32) if multiplier.signed else _column_zero_points(zb, zb_per_row, qb.shape[-1])
        if zb_columns is not None:
            za_scalar = tf.zeros([], tf.int32) if multiplier.signed else tf.cast(za, tf.int32)
            return _zero_point_matmul(patterns(qa), patterns(qb), za_scalar, tf.cast(zb_columns, tf.int32), multiplier)
    total = table_sum(patterns(qa), patterns(qb), multiplier)
    if multiplier.signed:
        return total  # symmetric quantization: every zero point is 0
    qa64, qb64 = tf.cast(qa, tf.int64), tf.cast(qb, tf.int64)
    za64, zb64 = tf.cast(za, tf.int64), tf.cast(zb, tf.int64)
    k = tf.cast(tf.shape(qa)[-1], tf.int64)
    if zb_per_row and zb64.shape.rank:
        zb_col = zb64[..., :, None]  # zb [..., K]: one zero point per term of the sum
        a_by_zb = tf.linalg.matmul(qa64, zb_col)
        zb_sum = tf.reduce_sum(zb_col, axis=-2, keepdims=True)
    else:
        a_by_zb = tf.reduce_sum(qa64, axis=-1, keepdims=True) * zb64
        zb_sum = k * zb64
    return total - a_by_zb - za64 * tf.reduce_sum(qb64, axis=-2, keepdims=True) + za64 * zb_sum
