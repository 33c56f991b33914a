"""AMConv1DTranspose, AMConv2DTranspose, AMConv3DTranspose: Keras transposed convolutions with AM products.

Keras's `call` of these layers calls the backend op directly, so they override `call` (the
output shape is Keras's own `compute_conv_transpose_output_shape`, as its TF backend uses);
build, weights and serialisation stay Keras's.  The products (approxtrain.ops.conv*_transpose):
forward and dW with the layer input as the table row, dX with dY as the row.
"""

import keras
import tensorflow as tf
from keras.src.backend.common.backend_utils import compute_conv_transpose_output_shape

from approxtrain import ops
from approxtrain.layers._am_layer import (
    AMLayer,
    add_bias_and_activate,
    check_rank,
    from_float32,
    range_kwargs,
    to_float32,
)


class _AMConvTranspose(AMLayer):
    """What the three transposed convolutions share; `_op` is the approxtrain.ops function."""

    _op = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def _output_shape(self, x):
        shape = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape)]
        return compute_conv_transpose_output_shape(
            shape,
            self.kernel_size,
            self.filters,
            self.strides,
            self.padding,
            self.output_padding,
            self.data_format,
            self.dilation_rate,
        )

    def _op_window(self):
        """strides and dilations as the op takes them."""
        return tuple(self.strides), tuple(self.dilation_rate)

    def call(self, inputs):
        check_rank(self, inputs, self.rank + 2)
        x, w = to_float32(self, inputs, self.kernel)
        strides, dilations = self._op_window()
        y = type(self)._op(
            x,
            w,
            output_shape=tf.stack(self._output_shape(x)),
            strides=strides,
            padding=self.padding.upper(),
            dilations=dilations,
            **self.am_multipliers.op_kwargs(),
            **range_kwargs(self, x),
        )
        return add_bias_and_activate(self, from_float32(self, y))


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv1DTranspose(_AMConvTranspose, keras.layers.Conv1DTranspose):
    """Transposed 1-D convolution (NWC) with AM products; the arguments of
    `keras.layers.Conv1DTranspose` (filters, kernel_size, strides, padding, output_padding,
    dilation_rate, activation, use_bias, ...) plus `multiplier`, `grad_input_multiplier`,
    `grad_weight_multiplier`. data_format must be "channels_last"."""

    keras_twin = keras.layers.Conv1DTranspose
    quantized_inputs = ("inputs",)
    _op = staticmethod(ops.conv1d_transpose)

    def _op_window(self):
        return self.strides[0], self.dilation_rate[0]


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv2DTranspose(_AMConvTranspose, keras.layers.Conv2DTranspose):
    """Transposed 2-D convolution (NHWC) with AM products; the arguments of
    `keras.layers.Conv2DTranspose` plus `multiplier`, `grad_input_multiplier`,
    `grad_weight_multiplier`. data_format must be "channels_last"."""

    keras_twin = keras.layers.Conv2DTranspose
    quantized_inputs = ("inputs",)
    _op = staticmethod(ops.conv2d_transpose)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv3DTranspose(_AMConvTranspose, keras.layers.Conv3DTranspose):
    """Transposed 3-D convolution (NDHWC) with AM products; the arguments of
    `keras.layers.Conv3DTranspose` plus `multiplier`, `grad_input_multiplier`,
    `grad_weight_multiplier`. data_format must be "channels_last"; the input depth must be
    known when the layer is built."""

    keras_twin = keras.layers.Conv3DTranspose
    quantized_inputs = ("inputs",)
    _op = staticmethod(ops.conv3d_transpose)
