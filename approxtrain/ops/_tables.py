"""The three multipliers of an op, and the uint16 table tensors the AM ops take."""

import threading

import numpy as np
import tensorflow as tf

from approxtrain.multipliers import NATIVE, resolve

_lock = threading.Lock()
_cache = {}  # name -> (lut array the tensor was made from, tf.Tensor)


def resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier):
    """(forward, grad-input, grad-weight) Multipliers or None; a None grad multiplier = the forward one."""
    if multiplier is None:
        raise TypeError(f"multiplier is required (a name, {NATIVE!r} or a Multiplier)")
    forward = resolve(multiplier)
    grad_input = forward if grad_input_multiplier is None else resolve(grad_input_multiplier)
    grad_weight = forward if grad_weight_multiplier is None else resolve(grad_weight_multiplier)
    return forward, grad_input, grad_weight


def table(multiplier):
    """The multiplier's table as a 1-D uint16 tensor on the host, cached per name.

    Made eagerly (also when first asked for inside a tf.function), so one
    tensor serves every graph and every replica.
    """
    m = resolve(multiplier)
    if m is None:
        raise ValueError(f"{NATIVE!r} has no table: it means the native TensorFlow op")
    with _lock:
        cached = _cache.get(m.name)
        if cached is not None and (cached[0] is m.lut or np.array_equal(cached[0], m.lut)):
            return cached[1]
        with tf.init_scope(), tf.device("/CPU:0"):
            tensor = tf.constant(m.lut, dtype=tf.uint16)
        _cache[m.name] = (m.lut, tensor)
        return tensor
