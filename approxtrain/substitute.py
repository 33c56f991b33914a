"""approxtrain.substitute: a copy of a Keras model whose supported layers are AM layers."""
import sys
import types

import keras
from keras.src.models.functional import Functional

from approxtrain import layers as am

# Keras layer -> AM twin. The AM layers map to themselves, so an AM model can be re-targeted
# to another multiplier. Exact types only: a user's subclass of Dense may change `call`,
# and replacing it would silently drop that change.
TWINS = {
    keras.layers.Dense: am.AMDense,
    keras.layers.Conv1D: am.AMConv1D,
    keras.layers.Conv2D: am.AMConv2D,
    keras.layers.DepthwiseConv2D: am.AMDepthwiseConv2D,
    keras.layers.SeparableConv2D: am.AMSeparableConv2D,
    keras.layers.MultiHeadAttention: am.AMMultiHeadAttention,
}
TWINS.update({twin: twin for twin in list(TWINS.values())})

_MULTIPLIER_KEYS = ("multiplier", "grad_input_multiplier", "grad_weight_multiplier")


def substitute(model, multiplier, grad_input_multiplier=None, grad_weight_multiplier=None, include=None, exclude=None):
    """Return a new model in which every supported layer is replaced by its AM twin.

    Supported: Dense, Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, MultiHeadAttention
    (and the AM layers themselves, which get the new multipliers). Each twin is built from
    the original's `get_config()` plus the multiplier arguments, and gets the original's
    weights. Every other layer is cloned with its weights. Nested Functional/Sequential
    models are handled recursively. `model` itself is left untouched.

    Args:
        model: a built Functional or Sequential Keras model.
        multiplier: forward multiplier of the AM layers (name, `Multiplier` or ``"fp32"``).
        grad_input_multiplier: multiplier for gradients w.r.t. layer inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for gradients w.r.t. weights (None: `multiplier`).
        include: if given, only these layers are replaced: layer names and/or layer classes
            (a class selects every layer that is an instance of it).
        exclude: layers (names and/or classes) that stay as they are.

    Returns:
        A new model of the same kind (Functional or Sequential) with the weights copied;
        compile it before training.

    Raises:
        TypeError: `model` is not a Functional or Sequential model, or a selector is neither
            a str nor a class.
        ValueError: a selector names no layer of the model, or include names a layer that
            has no AM twin, or a twin rejects its configuration (e.g. channels_first).
    """
    if not isinstance(model, (keras.Sequential, Functional)):
        raise TypeError(
            f"substitute needs a Functional or Sequential model, got {type(model).__name__} "
            "(a subclassed model's layers are not known until it runs)"
        )
    include = _selectors(include, "include")
    exclude = _selectors(exclude, "exclude")
    all_layers = list(_walk(model))
    _check_names(all_layers, include, "include")
    _check_names(all_layers, exclude, "exclude")
    _check_include_replaceable(all_layers, include)

    multipliers = dict(
        multiplier=multiplier,
        grad_input_multiplier=grad_input_multiplier,
        grad_weight_multiplier=grad_weight_multiplier,
    )
    copied = []  # (original, clone) pairs whose weights get copied once the clone is built

    def clone(layer):
        twin = TWINS.get(type(layer))
        replace = twin is not None and (include is None or _selected(layer, include))
        replace = replace and not (exclude and _selected(layer, exclude))
        config = layer.get_config()
        if replace:
            config.update(multipliers)
            try:
                new = twin.from_config(config)
            except (ValueError, TypeError) as e:
                raise type(e)(f"cannot make layer {layer.name!r} an {twin.__name__}: {e}") from e
        else:
            new = layer.__class__.from_config(config)
        copied.append((layer, new))
        return new

    new_model = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for original, new in copied:
        if original.weights:
            new.set_weights(original.get_weights())
    return new_model


def _selectors(value, argument):
    """None, or a tuple of names / classes; a single name or class is accepted too."""
    if value is None:
        return None
    if isinstance(value, (str, type)):
        value = (value,)
    value = tuple(value)
    for item in value:
        if not isinstance(item, (str, type)):
            raise TypeError(f"{argument} takes layer names (str) and/or layer classes, got {item!r}")
    return value


def _selected(layer, selectors):
    return any(layer.name == s if isinstance(s, str) else isinstance(layer, s) for s in selectors)


def _walk(model):
    """Every layer of model, nested models' layers included (the nested models too)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def _check_names(layers, selectors, argument):
    if not selectors:
        return
    names = {layer.name for layer in layers}
    missing = [s for s in selectors if isinstance(s, str) and s not in names]
    if missing:
        raise ValueError(f"{argument} names layers the model does not have: {missing}")


def _check_include_replaceable(layers, include):
    """Every include selector must pick at least one layer that has an AM twin."""
    if not include:
        return
    for selector in include:
        picked = [layer for layer in layers if _selected(layer, (selector,))]
        if not any(type(layer) in TWINS for layer in picked):
            if isinstance(selector, str):
                what = f"layer {selector!r} ({type(picked[0]).__name__})"
            else:
                what = f"class {selector.__name__}"
            raise ValueError(
                f"include selects {what}, which matches no layer with an AM twin; "
                f"supported: {sorted(t.__name__ for t in TWINS if t not in TWINS.values())}"
            )


class _CallableModule(types.ModuleType):
    """Importing the submodule approxtrain.substitute rebinds the package attribute
    `approxtrain.substitute` to this module (Python's import system does that after the
    package's lazy __getattr__ has returned the function once); making the module callable
    keeps `approxtrain.substitute(model, ...)` working either way."""

    def __call__(self, *args, **kwargs):
        return substitute(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
