"""AMDense: keras.layers.Dense whose matmul goes through an approximate multiplier."""
import keras
import tensorflow as tf

from approxtrain import ops
from approxtrain.layers._am_layer import AMLayer, from_float32, to_float32


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

    def call(self, inputs, training=None):
        x, kernel = to_float32(self, inputs, self.kernel)
        units = kernel.shape[-1]
        # One 2-D GEMM over all leading axes: the canonical k-ascending sum per output element.
        flat = tf.reshape(x, [-1, x.shape[-1]])
        y = ops.matmul(flat, kernel, **self.am_multipliers.op_kwargs())
        y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [units]], axis=0))
        y.set_shape(x.shape[:-1].concatenate([units]))
        return self._add_bias_and_activate(from_float32(self, y))
