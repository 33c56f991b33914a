"""Shapes as the ops build their reshapes: static sizes as ints wherever TensorFlow knows them,
so graphs keep static shapes (and the conv ops' static-only paths stay reachable)."""

import tensorflow as tf
from tensorflow.python.framework import tensor_util


def dims(t):
    """t's shape as a list: static sizes as ints, the others as scalar tensors."""
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape.as_list())]


def static_shape(sizes):
    """What is known statically of a shape vector (tf.shape(t), or a stack of ints and tensors),
    None for each unknown size."""
    return tensor_util.constant_value_as_shape(tf.convert_to_tensor(sizes)).as_list()
