"""AMDense: keras.layers.Dense whose matmul goes through an approximate multiplier."""

import keras
import tensorflow as tf

from approxtrain import ops
from approxtrain.layers import _kept_units as kept_units
from approxtrain.layers._am_layer import AMLayer, add_bias_and_activate, from_float32, range_kwargs, to_float32


def dense_matmul(layer, inputs, kernel, bound_rank, input_range=None):
    """inputs [*free, *bound] . kernel [*bound, *out] -> [*free, *out] as ONE 2-D AM matmul.

    The free axes are flattened into rows and the `bound_rank` trailing axes into k, so each
    output element sums its products k ascending (docs/design.md, "Canonical summation
    orders"); the inputs are the table row. Computed in float32 with `layer.am_multipliers`,
    returned in the layer's compute dtype. AMDense (bound_rank 1) and the projections of
    AMMultiHeadAttention use it. input_range: the range of the inputs' quantization, given by
    the caller (the recurrent layers); None: the layer's own (`range_kwargs`).
    """
    x, kernel = to_float32(layer, inputs, kernel)
    free_rank = x.shape.rank - bound_rank
    out_shape = kernel.shape[bound_rank:]
    flat = tf.reshape(x, [-1, x.shape[free_rank:].num_elements()])
    if (bound_rank, kernel.shape.rank) != (1, 2):
        kernel = tf.reshape(kernel, [flat.shape[-1], out_shape.num_elements()])
    ranges = range_kwargs(layer, flat) if input_range is None else {"input_range": input_range}
    y = ops.matmul(flat, kernel, **layer.am_multipliers.op_kwargs(), **ranges)
    y = tf.reshape(y, tf.concat([tf.shape(x)[:free_rank], out_shape.as_list()], axis=0))
    y.set_shape(x.shape[:free_rank].concatenate(out_shape))
    return from_float32(layer, y)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMDense(AMLayer, keras.layers.Dense):
    """Densely-connected layer, `activation(inputs @ kernel + bias)`, with AM products.

    Same arguments, weights and behaviour as `keras.layers.Dense` (inputs of any rank >= 2,
    the kernel applies to the last axis), except that the matmul and its gradients use
    approximate multipliers.

    Args:
        units: dimensionality of the output space.
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.Dense` argument (activation, use_bias, initializers,
            regularizers, constraints, lora_rank, dtype, name, ...).

    Example:
        >>> layer = AMDense(64, activation="relu", multiplier="mbm7")
    """

    keras_twin = keras.layers.Dense
    quantized_inputs = ("inputs",)

    def call(self, inputs, training=None):
        stash = kept_units.of(inputs, self.kernel.shape[0]) if training and kept_units.takes(self) else None
        if stash is not None:  # after a row-dropped layer: its dropped units cost no multiply here either
            y = from_float32(self, kept_units.product(self, stash.compact, self.kernel, stash))
            return add_bias_and_activate(self, y)
        return add_bias_and_activate(self, dense_matmul(self, inputs, self.kernel, bound_rank=1))
