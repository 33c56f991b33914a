"""Model zoo: Keras 3 functional models whose heavy layers use a chosen multiplier.

    model = approxtrain.models.build("lenet5", (28, 28, 1), 10, multiplier="mbm7")

`multiplier="fp32"` (and no gradient multipliers) builds the plain Keras model.
Models end in a softmax (outputs are class probabilities, float32).
"""
import inspect

import keras

from approxtrain.models import lenet, mobilenet, resnet, transformer
from approxtrain.models._factory import LayerFactory

_BUILDERS = {
    "lenet300100": lenet.lenet300100,
    "lenet5": lenet.lenet5,
    **{name: resnet.cifar_resnet(depth) for name, depth in resnet.CIFAR_DEPTHS.items()},
    **{name: resnet.imagenet_resnet(name) for name in resnet.IMAGENET_DEPTHS},
    "mobilenetv2": mobilenet.mobilenetv2,
    "transformer": transformer.transformer,
}


def names():
    """Names accepted by build()."""
    return list(_BUILDERS)


def options(name):
    """Keyword arguments the named model accepts beyond the common ones, with defaults."""
    params = inspect.signature(_builder(name)).parameters
    return {k: p.default for k, p in params.items() if k not in ("inputs", "num_classes", "factory")}


def build(name, input_shape, num_classes, multiplier="fp32", grad_input_multiplier=None,
          grad_weight_multiplier=None, **kw):
    """Builds zoo model `name` for inputs of `input_shape` (no batch dim) and `num_classes`.

    Extra keyword arguments are model options (see options(name)), e.g. width=8 for a
    resnet, stem="cifar", alpha=0.5 for mobilenetv2, dim/depth/num_heads for transformer.
    """
    builder = _builder(name)
    unknown = sorted(set(kw) - set(options(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {', '.join(unknown)}; "
                         f"its options are {options(name)}")
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d < 1 for d in input_shape):
        raise ValueError(f"input_shape must be positive dimensions without the batch, got {input_shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    factory = LayerFactory(multiplier, grad_input_multiplier, grad_weight_multiplier)
    dtype = transformer.input_dtype(input_shape, **kw) if name == "transformer" else "float32"
    inputs = keras.Input(shape=input_shape, dtype=dtype, name="inputs")
    logits = builder(inputs, num_classes, factory, **kw)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    suffix = "" if factory.native else f"_{multiplier}"
    return keras.Model(inputs, outputs, name=f"{name}{suffix}")


def _builder(name):
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_BUILDERS)}") from None


__all__ = ["build", "names", "options", "LayerFactory"]
