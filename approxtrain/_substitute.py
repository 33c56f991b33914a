"""approxtrain.substitute(): a copy of a Keras model whose supported layers are AM layers."""
import keras
from keras.src.models.functional import Functional

from approxtrain import layers as am

# Keras layer -> AM twin, from each AM layer's `keras_twin`. The AM layers map to themselves,
# so an AM model can be re-targeted to another multiplier. Exact types only: a user's subclass
# of Dense may change `call`, and replacing it would silently drop that change.
TWINS = {layer.keras_twin: layer for layer in am.AM_LAYERS}
TWINS.update({layer: layer for layer in am.AM_LAYERS})


def substitute(model, multiplier, grad_input_multiplier=None, grad_weight_multiplier=None, include=None, exclude=None):
    """Return a new model in which every supported layer is replaced by its AM twin.

    Supported: Dense, Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, MultiHeadAttention
    (and the AM layers themselves, which get the new multipliers). Each twin is built from
    the original's `get_config()` plus the multiplier arguments, and gets the original's
    weights. Every other layer is cloned with its weights. Random-seed states are copied too,
    so the copy's dropout draws the masks the original's would. Nested Functional/Sequential
    models are handled recursively; layer and input names are kept. `model` itself is
    left untouched.

    Args:
        model: a built Functional or Sequential Keras model.
        multiplier: forward multiplier of the AM layers (name, `Multiplier` or ``"fp32"``).
        grad_input_multiplier: multiplier for gradients w.r.t. layer inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for gradients w.r.t. weights (None: `multiplier`).
        include: if given, only these layers are replaced: layer names and/or layer classes
            (a class selects every layer that is an instance of it).
        exclude: layers (names and/or classes) that stay as they are.

    Returns:
        A new model of the same kind (Functional or Sequential) with the weights (and seed
        states) copied;
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

    def clone_layer(layer):
        if isinstance(layer, (keras.Sequential, Functional)):
            return clone_model(layer)
        twin = TWINS.get(type(layer))
        replace = twin is not None and (include is None or _selected(layer, include))
        replace = replace and not (exclude and _selected(layer, exclude))
        config = layer.get_config()
        if replace:
            config.update(multipliers)
            new = _from_config(twin, config, layer.name)
        else:
            new = layer.__class__.from_config(config)
        copied.append((layer, new))
        return new

    def clone_model(model):
        inputs = None
        if not isinstance(model, keras.Sequential):  # keep the input names (fit/predict may key by them)
            inputs = keras.tree.map_structure(
                lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name),
                model.input,
            )
        return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)

    new_model = clone_model(model)
    for original, new in copied:
        _copy_state(original, new)
    return new_model


def _copy_state(original, new):
    """The original's weights and its random-seed states into its copy, so that the copy's
    dropout draws the masks the original's would (an AM twin has the same sublayers)."""
    if original.weights:
        new.set_weights(original.get_weights())
    for source, target in zip(_seed_states(original), _seed_states(new), strict=True):
        target.assign(source)


def _seed_states(layer):
    """The layer's variables that are not weights: the states of its (and its sublayers') SeedGenerators."""
    weights = {id(w) for w in layer.weights}
    return [v for v in layer.variables if id(v) not in weights]


def _from_config(twin, config, name):
    """twin.from_config, with the twin's own error (Keras wraps it in a TypeError that dumps the
    whole config) naming the layer."""
    try:
        return twin.from_config(config)
    except TypeError as e:
        cause = e.__context__ if isinstance(e.__context__, (ValueError, TypeError)) else e
        raise type(cause)(f"cannot make layer {name!r} an {twin.__name__}: {cause}") from cause

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
