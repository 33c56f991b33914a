"""AMDepthwiseConv2D, AMSeparableConv2D: Keras depthwise/separable convolutions with AM products.

Keras's `call` of these layers calls the backend op directly (no `convolution_op` hook),
so they override `call`; build, weights and serialisation stay Keras's.
"""

import keras

from approxtrain import ops
from approxtrain.layers._am_layer import (
    AMLayer,
    add_bias_and_activate,
    check_rank,
    from_float32,
    range_kwargs,
    to_float32,
)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMDepthwiseConv2D(AMLayer, keras.layers.DepthwiseConv2D):
    """Depthwise 2-D convolution (NHWC) with AM products; the arguments of
    `keras.layers.DepthwiseConv2D`.

    Args:
        kernel_size: int or (kh, kw).
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.DepthwiseConv2D` argument (strides, padding,
            depth_multiplier, dilation_rate, activation, use_bias, ...). data_format must be
            "channels_last".
    """

    keras_twin = keras.layers.DepthwiseConv2D
    quantized_inputs = ("inputs",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def call(self, inputs):
        check_rank(self, inputs, 4)
        x, w = to_float32(self, inputs, self.kernel)
        y = ops.depthwise_conv2d(
            x,
            w,
            strides=self.strides,
            padding=self.padding.upper(),
            dilations=self.dilation_rate,
            **self.am_multipliers.op_kwargs(),
            **range_kwargs(self, x),
        )
        return add_bias_and_activate(self, from_float32(self, y))


@keras.saving.register_keras_serializable(package="approxtrain")
class AMSeparableConv2D(AMLayer, keras.layers.SeparableConv2D):
    """Depthwise then pointwise (1x1) 2-D convolution (NHWC), both with AM products; the
    arguments of `keras.layers.SeparableConv2D`.

    The depthwise result is kept in float32 between the two products (also under a
    mixed-precision policy).

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw) of the depthwise kernel.
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernels (None: `multiplier`).
        **kwargs: every other `keras.layers.SeparableConv2D` argument. data_format must be
            "channels_last".
    """

    keras_twin = keras.layers.SeparableConv2D
    quantized_inputs = ("inputs", "pointwise")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def call(self, inputs):
        check_rank(self, inputs, 4)
        x, depthwise, pointwise = to_float32(self, inputs, self.depthwise_kernel, self.pointwise_kernel)
        multipliers = self.am_multipliers.op_kwargs()
        y = ops.depthwise_conv2d(
            x,
            depthwise,
            strides=self.strides,
            padding=self.padding.upper(),
            dilations=self.dilation_rate,
            **multipliers,
            **range_kwargs(self, x),
        )
        y = ops.conv2d(y, pointwise, strides=1, padding="VALID", **multipliers, **range_kwargs(self, y, "pointwise"))
        return add_bias_and_activate(self, from_float32(self, y))
