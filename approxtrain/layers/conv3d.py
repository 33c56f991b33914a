"""AMConv3D: keras.layers.Conv3D whose products go through an approximate multiplier.

It overrides only Keras's `convolution_op` (as AMConv2D does); the products are AM 2-D
convolutions summed over the depth taps (approxtrain.ops.conv3d, whose module doc and
docs/design.md give the summation order).
"""

import keras

from approxtrain import ops
from approxtrain.layers._am_layer import AMLayer, check_rank, from_float32, range_kwargs, to_float32


@keras.saving.register_keras_serializable(package="approxtrain")
class AMConv3D(AMLayer, keras.layers.Conv3D):
    """3-D convolution (NDHWC) with AM products; the arguments of `keras.layers.Conv3D`.

    Args:
        filters: number of output channels.
        kernel_size: int or (kd, kh, kw).
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.Conv3D` argument (strides, padding "valid"/"same",
            dilation_rate, groups, activation, use_bias, ...). data_format must be "channels_last";
            the input depth must be known when the layer is built.
    """

    keras_twin = keras.layers.Conv3D
    quantized_inputs = ("inputs",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_channels_last()

    def convolution_op(self, inputs, kernel):
        check_rank(self, inputs, 5)
        x, w = to_float32(self, inputs, kernel)
        y = ops.conv3d(
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
