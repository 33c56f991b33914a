"""Model zoo: Keras 3 functional models, plain Keras or with a chosen multiplier.

    model = approxtrain.models.build("lenet5", (28, 28, 1), 10)                      # plain Keras
    model = approxtrain.models.build("lenet5", (28, 28, 1), 10, multiplier="mbm7")   # AM layers

Every model is built from Keras layers, as keras.applications builds its models; with a
multiplier other than ``"fp32"`` (or gradient multipliers) the result is
``approxtrain.substitute(model, ...)`` of that model: its Dense, Conv and MultiHeadAttention
layers become their AM twins, with the same names and initial weights.
Models end in a softmax (outputs are class probabilities, float32).
"""

import inspect
import random

import keras

from approxtrain import multipliers
from approxtrain.models import lenet, mobilenet, resnet, transformer

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
    return {k: p.default for k, p in params.items() if k not in ("inputs", "num_classes")}


def build(
    name,
    input_shape,
    num_classes,
    multiplier=multipliers.NATIVE,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    **kw,
):
    """Builds zoo model `name` for inputs of `input_shape` (no batch dim) and `num_classes`.

    The multipliers are read as everywhere in approxtrain (a name, ``"fp32"`` or a
    `Multiplier`; None gradient multipliers: same as `multiplier`). Extra keyword arguments
    are model options (see options(name)), e.g. width=8 for a resnet, stem="cifar",
    alpha=0.5 for mobilenetv2, dim/depth/num_heads for transformer, approx_dropout="row"|"tile"
    and dropout_rate=0.5 for lenet300100 / lenet5 (approximate random dropout that skips the
    dropped units' multiplies, docs/approx-dropout.md; dropout_rate alone: plain Dropout).
    """
    builder = _builder(name)
    unknown = sorted(set(kw) - set(options(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {', '.join(unknown)}; its options are {options(name)}")
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d < 1 for d in input_shape):
        raise ValueError(f"input_shape must be positive dimensions without the batch, got {input_shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    forward = _resolve("multiplier", multiplier)
    grads = [
        _resolve(what, value)
        for what, value in (
            ("grad_input_multiplier", grad_input_multiplier),
            ("grad_weight_multiplier", grad_weight_multiplier),
        )
        if value is not None
    ]  # None: the same as multiplier
    native = forward is None and all(m is None for m in grads)
    dtype = transformer.input_dtype(input_shape, **kw) if name == "transformer" else "float32"
    inputs = keras.Input(shape=input_shape, dtype=dtype, name="inputs")
    logits = builder(inputs, num_classes, **kw)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    suffix = "" if native else f"_{multiplier if isinstance(multiplier, str) else multiplier.name}"
    model = keras.Model(inputs, outputs, name=f"{name}{suffix}")
    if native:
        return model
    from approxtrain._substitute import substitute

    # Replacing layers makes new ones, whose initialisers draw seeds from Python's RNG; their
    # weights are then overwritten, so the draws are put back: the caller's later random numbers
    # are those it would get had the AM layers been built in place.
    state = random.getstate()
    try:
        return substitute(model, multiplier, grad_input_multiplier, grad_weight_multiplier)
    finally:
        random.setstate(state)


def _resolve(what, value):
    """multipliers.resolve, with errors that name the argument (unknown names fail before any building)."""
    if value is None:
        raise ValueError(f"{what} must be a multiplier name such as 'fp32' or 'mbm7', or a Multiplier, got None")
    try:
        return multipliers.resolve(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: {e}") from None


def _builder(name):
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_BUILDERS)}") from None


__all__ = ["build", "names", "options"]
