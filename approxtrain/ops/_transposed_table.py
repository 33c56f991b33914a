"""A multiplier's table with its operands exchanged, for ops that reuse a kernel whose left
operand is not the one the contract puts in the table row.

For a table T indexed ia * 2^M + ib (ia from the left operand), T'[ib * 2^M + ia] =
T[ia * 2^M + ib].  Everything else of the AMSim product (sign, exponents, operand
reduction) is symmetric, so multiply(b, a, T') == multiply(a, b, T) bit for bit: a kernel
given (b, a) and T' computes the products of (a, b) with a as the table row.
"""

import threading

import numpy as np
import tensorflow as tf

from approxtrain.ops._op_table import OpTable

_lock = threading.Lock()
_cache = {}  # multiplier name -> (lut array the tensor was made from, transposed tf.Tensor)


def transposed_lut(lut, mantissa_bits):
    n = 1 << mantissa_bits
    return np.ascontiguousarray(np.asarray(lut, np.uint16).reshape(n, n).T).reshape(-1)


def transposed_op_table(multiplier):
    """OpTable of the resolved `multiplier` with its operands exchanged; None (native) stays None."""
    if multiplier is None:
        return None
    with _lock:
        cached = _cache.get(multiplier.name)
        if cached is None or not (cached[0] is multiplier.lut or np.array_equal(cached[0], multiplier.lut)):
            with tf.init_scope(), tf.device("/CPU:0"):
                tensor = tf.constant(transposed_lut(multiplier.lut, multiplier.mantissa_bits), dtype=tf.uint16)
            cached = _cache[multiplier.name] = (multiplier.lut, tensor)
        return OpTable(cached[1], multiplier.operand_rounding)
