"""TensorFlow ops whose every multiplication goes through an approximate multiplier's table.

    import approxtrain as at
    y = at.ops.matmul(x, w, "mbm7")                        # batched, broadcasting
    y = at.ops.conv2d(x, w, "mbm7", strides=2, padding="SAME")
    y = at.ops.conv2d(x, w, "bf16", grad_input_multiplier="fp32")

A multiplier is a registry name, a :class:`~approxtrain.multipliers.Multiplier`
or ``"fp32"`` (the native TensorFlow op), read by ``approxtrain.multipliers.resolve``.  Gradients are AM ops too
(docs/design.md, "Ops, layers and gradients"): the input gradient uses ``grad_input_multiplier``, the
weight gradient ``grad_weight_multiplier`` (None: same as ``multiplier``).
They are attached with tf.custom_gradient, so they work eagerly, in
tf.function, under tf.distribute strategies and in Keras ``fit``; the bare
ops (AMMatMul, AMConv2D, AMConv2DBackpropInput, AMConv2DBackpropFilter) also
have registered gradients that reuse the op's own table.
"""

import tensorflow as tf

from approxtrain._op_library import OpLibraryError, library
from approxtrain.multipliers import resolve  # noqa: F401  (kept here for existing callers; not in __all__)
from approxtrain.ops import _conv, _matmul
from approxtrain.ops._conv import conv1d, conv2d, depthwise_conv2d
from approxtrain.ops._conv3d import conv3d, conv3d_transpose
from approxtrain.ops._conv_transpose import conv1d_transpose, conv2d_transpose
from approxtrain.ops._matmul import matmul
from approxtrain.ops._tables import table


def _register_gradients():
    for op_type, fn in (
        ("AMMatMul", _matmul._am_matmul_gradient),
        ("AMConv2D", _conv._am_conv2d_gradient),
        ("AMConv2DBackpropInput", _conv._am_conv2d_backprop_input_gradient),
        ("AMConv2DBackpropFilter", _conv._am_conv2d_backprop_filter_gradient),
    ):
        try:
            tf.RegisterGradient(op_type)(fn)
        except KeyError:  # already registered (module reloaded)
            pass


_register_gradients()

# The public API: the ops, a multiplier's table tensor, and the raw op library (its AM ops by name).
__all__ = [
    "matmul",
    "conv2d",
    "depthwise_conv2d",
    "conv1d",
    "conv3d",
    "conv1d_transpose",
    "conv2d_transpose",
    "conv3d_transpose",
    "table",
    "library",
    "OpLibraryError",
]
