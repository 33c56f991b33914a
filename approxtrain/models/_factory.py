"""Layer factory: the one place the zoo decides between Keras layers and AM layers.

Model builders ask the factory for "a dense layer" or "a conv layer"; with every
multiplier `fp32` they get the native Keras layer (no approxtrain.layers import,
no op library needed), otherwise the AM twin with the same arguments.
"""
import keras

NATIVE = "fp32"


class LayerFactory:
    def __init__(self, multiplier=NATIVE, grad_input_multiplier=None, grad_weight_multiplier=None):
        for what, value in (("multiplier", multiplier),
                            ("grad_input_multiplier", grad_input_multiplier),
                            ("grad_weight_multiplier", grad_weight_multiplier)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{what} must be a multiplier name such as 'fp32' or 'mbm7', got {value!r}")
        if multiplier is None:
            raise ValueError("multiplier must be a multiplier name such as 'fp32' or 'mbm7', got None")
        self.multiplier = multiplier
        self.grad_input_multiplier = grad_input_multiplier
        self.grad_weight_multiplier = grad_weight_multiplier
        # None means "same as multiplier" (docs/design.md, "Ops, layers and gradients").
        effective = {multiplier, grad_input_multiplier or multiplier, grad_weight_multiplier or multiplier}
        self.native = effective == {NATIVE}
        self._am = None if self.native else _am_layers()

    def _make(self, keras_name, am_name, *args, **kw):
        if self.native:
            return getattr(keras.layers, keras_name)(*args, **kw)
        return getattr(self._am, am_name)(
            *args,
            multiplier=self.multiplier,
            grad_input_multiplier=self.grad_input_multiplier,
            grad_weight_multiplier=self.grad_weight_multiplier,
            **kw,
        )

    def dense(self, units, **kw):
        return self._make("Dense", "AMDense", units, **kw)

    def conv1d(self, filters, kernel_size, **kw):
        return self._make("Conv1D", "AMConv1D", filters, kernel_size, **kw)

    def conv2d(self, filters, kernel_size, **kw):
        return self._make("Conv2D", "AMConv2D", filters, kernel_size, **kw)

    def depthwise_conv2d(self, kernel_size, **kw):
        return self._make("DepthwiseConv2D", "AMDepthwiseConv2D", kernel_size, **kw)

    def separable_conv2d(self, filters, kernel_size, **kw):
        return self._make("SeparableConv2D", "AMSeparableConv2D", filters, kernel_size, **kw)

    def multi_head_attention(self, num_heads, key_dim, **kw):
        return self._make("MultiHeadAttention", "AMMultiHeadAttention", num_heads, key_dim, **kw)


def _am_layers():
    try:
        from approxtrain import layers
    except ImportError as e:
        raise RuntimeError(
            "approximate multipliers need approxtrain.layers and the TF op library, which failed to "
            f"import ({e}); build it with `python setup.py build_ext --inplace`, or use multiplier 'fp32'"
        ) from e
    return layers
