"""AMConv1D, AMConv2D: Keras convolutions whose products go through an approximate multiplier.

Both override only Keras's `convolution_op`; Keras's `call` adds the bias and the
activation, so build, weights, LoRA and serialisation stay Keras's.
"""

import keras

from approxtrain import ops
from approxtrain.layers._am_layer import AMLayer, check_rank, from_float32, range_kwargs, to_float32


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv2D(AMLayer, keras.layers.Conv2D):
    """2-D convolution (NHWC) with AM products; the arguments of `keras.layers.Conv2D`.

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.Conv2D` argument (strides, padding "valid"/"same",
            dilation_rate, groups, activation, use_bias, initializers, ...). data_format must be
            "channels_last".
    """

    keras_twin = keras.layers.Conv2D
    quantized_inputs = ("inputs",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def convolution_op(self, inputs, kernel):
        check_rank(self, inputs, 4)
        x, w = to_float32(self, inputs, kernel)
        y = ops.conv2d(
            x,
            w,
            strides=self.strides,
            padding=self.padding.upper(),
            dilations=self.dilation_rate,
            groups=self.groups,
            **self.am_multipliers.op_kwargs(),
            **range_kwargs(self, x),
        )
        return from_float32(self, y)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv1D(AMLayer, keras.layers.Conv1D):
    """1-D convolution (NWC) with AM products; the arguments of `keras.layers.Conv1D`.

    Args:
        filters: number of output channels.
        kernel_size: int.
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.Conv1D` argument (strides, padding
            "valid"/"same"/"causal", dilation_rate, groups, activation, ...). data_format must be
            "channels_last".
    """

    keras_twin = keras.layers.Conv1D
    quantized_inputs = ("inputs",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def convolution_op(self, inputs, kernel):
        check_rank(self, inputs, 3)
        x, w = to_float32(self, inputs, kernel)
        y = ops.conv1d(
            x,
            w,
            strides=self.strides[0],
            padding=self.padding.upper(),  # the op pads "CAUSAL" itself
            dilations=self.dilation_rate[0],
            groups=self.groups,
            **self.am_multipliers.op_kwargs(),
            **range_kwargs(self, x),
        )
        return from_float32(self, y)

    def call(self, inputs):
        # Conv1D.call pads causal inputs and calls ops.conv directly; the shared BaseConv.call
        # goes through convolution_op, which handles causal padding in the op.
        return super(keras.layers.Conv1D, self).call(inputs)
