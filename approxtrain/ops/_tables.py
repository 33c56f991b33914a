"""Multiplier resolution and the uint16 table tensors the AM ops take."""
import threading

import numpy as np
import tensorflow as tf

from approxtrain import multipliers
from approxtrain.multipliers._multiplier import Multiplier

FP32 = "fp32"

_lock = threading.Lock()
_cache = {}  # name -> (lut array the tensor was made from, tf.Tensor)


def resolve(multiplier):
    """A :class:`Multiplier` for ``multiplier``, or ``None`` for ``"fp32"`` (the native op).

    Accepts a registry name, ``"fp32"`` or a Multiplier; an unknown name is a
    ValueError listing the known ones.
    """
    if isinstance(multiplier, Multiplier):
        return multiplier
    if isinstance(multiplier, str):
        if multiplier == FP32:
            return None
        try:
            return multipliers.get(multiplier)
        except ValueError as e:
            raise ValueError(f"unknown multiplier {multiplier!r}; known: {', '.join([FP32] + multipliers.names())}") from e
    raise TypeError(f"multiplier must be a name, 'fp32' or a Multiplier, got {type(multiplier).__name__}")


def resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier):
    """(forward, grad-input, grad-weight) Multipliers or None; a None grad multiplier = the forward one."""
    if multiplier is None:
        raise TypeError("multiplier is required (a name, 'fp32' or a Multiplier)")
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
        raise ValueError("'fp32' has no table: it means the native TensorFlow op")
    with _lock:
        cached = _cache.get(m.name)
        if cached is not None and (cached[0] is m.lut or np.array_equal(cached[0], m.lut)):
            return cached[1]
        with tf.init_scope(), tf.device("/CPU:0"):
            tensor = tf.constant(m.lut, dtype=tf.uint16)
        _cache[m.name] = (m.lut, tensor)
        return tensor
