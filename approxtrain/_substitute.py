"""approxtrain.substitute(): a Keras model whose multiply-heavy layers are AM layers.

How it works: the model is copied (Keras's own config round trip, the one `.keras` files use,
then every variable copied), and the copy is rewritten in place -- or the model itself with
``inplace=True``. The rewrite reaches every layer, wherever it sits:

- in a Functional graph (nodes of layers and of `keras.ops` operations; shared layers and
  layers called several times): the graph's nodes are pointed at the AM layer;
- in a Sequential model: its layer list and its internal graph;
- as an attribute of a custom layer or a subclassed model, at any depth (alone, or in a
  list, tuple or dict): the attribute and Keras's tracking lists (`_layers`) are updated.

A layer reached twice (shared) is replaced once, so the AM copy is shared too.

Saving: where a layer was replaced inside a model or layer that rebuilds its sublayers from its
own arguments (keras_hub backbones and their transformer layers, subclassed models, custom
layers), the model's own config would load native layers; such a model is marked to save as a
substituted model, and `keras.models.load_model` (after `import approxtrain.layers`) puts the
AM layers back (approxtrain/_substituted_save.py).
"""

import sys
import warnings
from copy import copy as shallow_copy
from copy import deepcopy

import keras
from keras.src.models.functional import Functional
from keras.src.ops.node import KerasHistory

from approxtrain import _substituted_save
from approxtrain import layers as am

# Keras layer -> AM twin, from each AM layer's `keras_twin`. The AM layers map to themselves,
# so an AM model can be re-targeted to another multiplier. Exact types only: a user's subclass
# of Dense may change `call`, and replacing it would silently drop that change.
TWINS = {layer.keras_twin: layer for layer in am.AM_LAYERS}
TWINS.update({layer: layer for layer in am.AM_LAYERS})


def _twins():
    """TWINS, plus the keras_hub layers' twins when keras_hub is loaded (never imported here: slow)."""
    if "keras_hub" not in sys.modules:
        return TWINS
    from approxtrain.layers import keras_hub_twins

    return {**TWINS, **keras_hub_twins.TWINS}


def _keras_layers(*names):
    """The named keras.layers classes this Keras version has."""
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


# THE list of Keras layers whose work is multiplies (GEMMs, convolutions, attention products,
# recurrent matmuls). substitute() warns about (strict: refuses) any of them it leaves native,
# coverage() counts their MACs, and the tests check whole models against it. Embedding, the
# normalisations and the elementwise layers are not on it: their few multiplies stay native.
MULTIPLY_HEAVY = _keras_layers(
    "Dense",
    "EinsumDense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "Attention",
    "AdditiveAttention",
    "SimpleRNN",
    "GRU",
    "LSTM",
    "SimpleRNNCell",
    "GRUCell",
    "LSTMCell",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
)


def is_multiply_heavy(layer):
    """True for an instance of a class of MULTIPLY_HEAVY (AM layers included: they subclass their twin)."""
    return isinstance(layer, MULTIPLY_HEAVY)


def left_native(model):
    """The multiply-heavy layers of `model` (at any depth) that are not AM layers, in walk order.

    A multiply-heavy layer counts as one: its own sublayers (e.g. the EinsumDense projections
    of a MultiHeadAttention, the cell of an LSTM) are part of it, not listed again.
    """
    return [layer for layer in _leaves(model) if not isinstance(layer, am.AMLayer)]


def _leaves(model):
    """Every multiply-heavy layer reachable from model, each once, not descending into them."""
    found, seen = [], set()

    def visit(layer):
        for sub in layer._layers:
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if is_multiply_heavy(sub):
                found.append(sub)
            else:
                visit(sub)

    visit(model)
    return found


def substitute(
    model,
    multiplier,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    include=None,
    exclude=None,
    strict=False,
    inplace=False,
):
    """Return the model with every multiply-heavy layer that has an AM twin replaced by it.

    Any Keras model: Functional (with `keras.ops` nodes, nested models, shared layers),
    Sequential, or subclassed; layers held as attributes of custom layers and subclassed
    models are reached at any depth. Each AM layer is made from the original's `get_config()`
    (name, dtype policy, trainability included) plus the multiplier arguments, built with the
    original's input shapes and given its weights; random-seed states are copied too, so
    dropout draws the masks the original's would. A layer used in several places (shared, or
    called several times) becomes one AM layer used in the same places. The graph's inputs,
    outputs and names are kept.

    Layers with multiplies but no AM twin yet (`MULTIPLY_HEAVY`, e.g. GRU, Attention; and any
    subclass of a Keras layer, whose `call` may differ) stay native: a UserWarning lists them,
    or with ``strict=True`` a ValueError. Layers the user keeps out with include/exclude are
    not listed.

    Args:
        model: a Keras model (built, or a subclassed model not yet built: its layers are
            then replaced unbuilt).
        multiplier: forward multiplier of the AM layers (name, `Multiplier` or ``"fp32"``).
        grad_input_multiplier: multiplier for gradients w.r.t. layer inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for gradients w.r.t. weights (None: `multiplier`).
        include: if given, only these layers (and layers inside them) are replaced: layer names
            and/or layer classes (a class selects every layer that is an instance of it).
        exclude: layers (names and/or classes) that stay as they are, with everything inside them.
        strict: raise instead of warning when a multiply-heavy layer stays native.
        inplace: rewrite `model` itself instead of a copy. Needed only for a model whose config
            does not round-trip (then the default's error says so).

    Returns:
        The new model (with ``inplace=True``: `model` itself); compile it before training.

    Raises:
        TypeError: `model` is not a Keras model, or a selector is neither a str nor a class.
        ValueError: a selector names no layer of the model, or include selects no layer with
            an AM twin, or a twin rejects its configuration (e.g. channels_first), or the model
            cannot be copied (use ``inplace=True``), or strict and a layer stays native.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"substitute needs a Keras model, got {type(model).__name__}")
    include = _selectors(include, "include")
    exclude = _selectors(exclude, "exclude")
    all_layers = list(model._flatten_layers(include_self=False))
    _check_names(all_layers, include, "include")
    _check_names(all_layers, exclude, "exclude")
    _check_include_replaceable(all_layers, include)
    multipliers = dict(
        multiplier=multiplier,
        grad_input_multiplier=grad_input_multiplier,
        grad_weight_multiplier=grad_weight_multiplier,
    )
    target = model if inplace else _copy(model)
    rewriter = _Rewriter(multipliers, include, exclude)
    rewriter.visit(target, selected=include is None)
    if rewriter.mark_needed:  # its own config would rebuild native layers: save it as substituted
        _substituted_save.mark(target, [_substituted_save.record(new) for new in rewriter.made])
    left = [layer for layer in rewriter.left if not isinstance(layer, am.AMLayer)]
    if left:
        listing = ", ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in left)
        message = f"{len(left)} layer(s) with multiplies have no AM twin and stay native: {listing}"
        if strict:
            raise ValueError(f"substitute(strict=True): {message}; exclude them to keep them native")
        warnings.warn(f"substitute: {message}", UserWarning, stacklevel=2)
    return target


class _Rewriter:
    """Replaces, in place, every selected layer with an AM twin, wherever the layer is held."""

    def __init__(self, multipliers, include, exclude):
        self.multipliers = multipliers
        self.include = include
        self.exclude = exclude
        self.new = {}  # id(original) -> its AM layer (a shared layer is replaced once)
        self.seen = set()  # ids of layers already visited (or replaced)
        self.left = []  # selected multiply-heavy layers left native
        self.replaced = []  # the originals, kept alive while their ids key self.new
        self.made = []  # the AM layers made, in walk order
        self.holders = []  # the layers being visited, outermost first
        self.mark_needed = False  # a layer was replaced where the model's config cannot say so

    def _selection(self, layer, selected):
        """Whether layer is selected, given its container's selection (inherited downwards)."""
        if self.exclude and _selected(layer, self.exclude):
            return False
        return selected or (self.include is not None and _selected(layer, self.include))

    def map(self, layer, selected):
        """The layer to hold instead of `layer` (itself when not replaced); visits what it holds."""
        if id(layer) in self.new:
            return self.new[id(layer)]
        if id(layer) in self.seen:
            return layer
        self.seen.add(id(layer))
        selected = self._selection(layer, selected)
        new = self._replacement(layer, selected)
        if new is not None and new is not layer:
            self.new[id(layer)] = new
            self.replaced.append(layer)
            self.seen.add(id(new))
            self.made.append(new)
            self.mark_needed = self.mark_needed or _substituted_save.needs_mark(self.holders)
            return new
        if is_multiply_heavy(layer):  # atomic: its sublayers are part of its own arithmetic
            if selected and not isinstance(layer, am.AMLayer):
                self.left.append(layer)
            return layer
        self.visit(layer, selected)
        return layer

    def _replacement(self, layer, selected):
        """The AM layer to put in `layer`'s place, or None."""
        twin = _twins().get(type(layer))
        if selected and twin is not None:
            return _make_twin(layer, twin, self.multipliers)
        return None

    def visit(self, layer, selected):
        """Rewrite what `layer` holds: graph nodes, Sequential's list, attributes."""
        self.holders.append(layer)
        try:
            self._visit(layer, selected)
        finally:
            self.holders.pop()

    def _visit(self, layer, selected):
        self.seen.add(id(layer))
        if isinstance(layer, keras.Sequential) and layer._functional is not None:
            self._rewrite_graph(layer._functional, selected)
        if isinstance(layer, Functional):
            self._rewrite_graph(layer, selected)
        for name, value in list(vars(layer).items()):
            if name in _NOT_LAYER_HOLDERS:
                continue
            new_value = self._map_value(value, selected)
            if new_value is not value:
                object.__setattr__(layer, name, new_value)
        self._retrack(layer)

    def _rewrite_graph(self, graph, selected):
        """Point a Functional graph's nodes (and the tensors' histories) at the AM layers."""
        for operation in list(graph._operations):
            if not isinstance(operation, keras.layers.Layer):
                continue  # a keras.ops node: stateless, no multiplies of a layer
            new = self.map(operation, selected)
            if new is not operation:
                _move_nodes(operation, new)
        # Node keys are f"{id(operation)}_ib-{index}" (keras make_node_key): re-key the replaced ones.
        renamed = {f"{old_id}_ib-": f"{id(new)}_ib-" for old_id, new in self.new.items()}
        graph._nodes = {_rekey(key, renamed) for key in graph._nodes}
        graph._operations = [self.new.get(id(op), op) for op in graph._operations]
        graph._operations_by_depth = {
            depth: [self.new.get(id(op), op) for op in ops] for depth, ops in graph._operations_by_depth.items()
        }

    def _map_value(self, value, selected):
        """An attribute value with every Layer in it mapped (lists and dicts in place)."""
        if isinstance(value, keras.layers.Layer):
            return self.map(value, selected)
        if isinstance(value, list):
            for i, item in enumerate(value):
                new_item = self._map_value(item, selected)
                if new_item is not item:
                    _set_item(value, i, new_item)
            return value
        if isinstance(value, dict):
            for key, item in list(value.items()):
                new_item = self._map_value(item, selected)
                if new_item is not item:
                    _set_item(value, key, new_item)
            return value
        if type(value) is tuple:
            items = tuple(self._map_value(item, selected) for item in value)
            return items if any(a is not b for a, b in zip(items, value)) else value
        return value

    def _retrack(self, layer):
        """Keras's tracker remembers its layers by id: swap the replaced ones' ids."""
        tracker = getattr(layer, "_tracker", None)
        if tracker is None:
            return
        for ids in tracker.stored_ids.values():
            for old_id in [i for i in ids if i in self.new]:
                ids.discard(old_id)
                ids.add(id(self.new[old_id]))


class _Replayer(_Rewriter):
    """Puts a loaded substituted model's recorded AM layers back (approxtrain/_substituted_save.py):
    the same walk as substitute()'s, each recorded layer in the place of the layer it replaced
    there (same name, the class it is the twin of). A layer its config made AM already stays."""

    def __init__(self, records):
        super().__init__({}, None, None)
        self.records = records
        self.next = 0

    def _replacement(self, layer, selected):
        if self.next == len(self.records):
            return None
        entry = self.records[self.next]
        twin = _twins().get(type(layer))
        if twin is None or twin.__name__ != entry["class_name"] or layer.name != entry["config"].get("name"):
            return None
        self.next += 1
        if type(layer) is twin:
            return layer
        new = keras.saving.deserialize_keras_object(deepcopy(entry))  # built from its build config
        _copy_paths(layer, new)  # the paths of the layer its parent made in its name scope
        return new


def replay(model, records):
    """Put the recorded AM layers (records of approxtrain._substituted_save) into `model`, a model
    just built from its own config; raises if one of them has no place in it."""
    replayer = _Replayer(records)
    replayer.visit(model, selected=True)
    if replayer.next != len(records):
        entry = records[replayer.next]
        raise ValueError(
            f"cannot load the substituted {type(model).__name__} {model.name!r}: its AM layer "
            f"{entry['config'].get('name')!r} ({entry['class_name']}) has no place in the model its "
            "config builds (did the model's class change since it was saved?); loading it with "
            "native layers would silently drop the approximate multiplier"
        )


# Attributes that hold no sublayer to replace (graph bookkeeping is rewritten by _rewrite_graph).
_NOT_LAYER_HOLDERS = frozenset(
    {
        "_inbound_nodes",
        "_outbound_nodes",
        "_nodes",
        "_nodes_by_depth",
        "_operations",
        "_operations_by_depth",
        "_functional",
        "_tracker",
        "_inputs_struct",
        "_outputs_struct",
        "_inputs",
        "_outputs",
        "inputs",
        "outputs",
    }
)


def _rekey(key, renamed):
    prefix, _, index = key.rpartition("_ib-")
    new_prefix = renamed.get(prefix + "_ib-")
    return key if new_prefix is None else new_prefix + index


def _set_item(container, key, item):
    """container[key] = item, bypassing Keras's tracking wrappers (they would track `item` a second
    time; _retrack swaps the ids instead). TF's wrappers keep their own storage: plain assignment."""
    if type(container).__module__.startswith("keras"):
        (list if isinstance(container, list) else dict).__setitem__(container, key, item)
    else:
        container[key] = item


def _move_nodes(old, new):
    """Make `new` the operation of every graph node of `old` (same node indices, same tensors)."""
    new._inbound_nodes = old._inbound_nodes
    new._outbound_nodes = old._outbound_nodes
    for node_index, node in enumerate(new._inbound_nodes):
        node.operation = new
        for tensor_index, tensor in enumerate(node.outputs):
            tensor._keras_history = KerasHistory(new, node_index, tensor_index)


def _make_twin(layer, twin, multipliers):
    """The AM twin of `layer`: same config plus multipliers, built with its shapes, its state copied."""
    config = layer.get_config()
    config.update(multipliers)
    new = _from_config(twin, config, layer.name)
    if layer.built:
        build_config = layer.get_build_config()
        if not build_config:
            raise ValueError(
                f"cannot make layer {layer.name!r} an {twin.__name__}: it is built but "
                "does not say with which input shape (get_build_config() is empty)"
            )
        new.build_from_config(build_config)
        _copy_state(layer, new)
        _copy_paths(layer, new)
    return new


def _copy_paths(original, copy):
    """Give copy's variables the original's paths (e.g. "outer/block/proj/kernel"): a layer built
    outside its parent's call gets a path without the parent's name scope otherwise."""
    for source, target in zip(original.variables, copy.variables, strict=True):
        target._path = source.path


_COPY_ADVICE = (
    "; pass inplace=True to substitute the model itself (it is then modified), or give "
    "the custom layers a get_config() that round-trips"
)


def _copy(model):
    """A copy of model with all its variables (weights, seed states) copied.

    A plain Functional or Sequential model is copied node by node (keras.models.clone_model:
    its graph, shared layers and `keras.ops` nodes, without a config round trip of the graph,
    which Keras cannot do for every model, e.g. MobileNetV3's `x + 3.0`); its layers, and any
    other model, through their configs (as a .keras file stores them).
    """
    pairs = []  # (original, copy) whose variables are copied once the copy is built
    copy = _clone_graph(model, pairs) if type(model) in (Functional, keras.Sequential) else _config_copy(model)
    if type(model) not in (Functional, keras.Sequential):
        if model.built and not copy.built:
            _built(model, copy)
        pairs.append((model, copy))
    for original, new in pairs:
        _copy_variables(original, new)
    return copy


def _clone_graph(model, pairs):
    def clone(operation):
        if type(operation) in (Functional, keras.Sequential):
            return _clone_graph(operation, pairs)
        if not isinstance(operation, keras.layers.Layer):  # a keras.ops node: stateless
            new = shallow_copy(operation)
            new._inbound_nodes, new._outbound_nodes = [], []
            return new
        new = _config_copy(operation)
        pairs.append((operation, new))
        return new

    inputs = None
    if not isinstance(model, keras.Sequential):  # keep the input names (fit/predict may key by them)
        inputs = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name),
            model.input,
        )
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)


def _config_copy(layer):
    """layer rebuilt from its config; an error, saying what to do, where the config does not round-trip."""
    objects = {type(sub).__name__: type(sub) for sub in layer._flatten_layers(include_self=True)}
    try:
        with keras.saving.custom_object_scope(objects):
            config = keras.saving.serialize_keras_object(layer)
            config.pop("build_config", None)  # built by its caller: in the graph, or by _built
            arguments = deepcopy(config)  # deserialize consumes its argument
            if isinstance(arguments.get("config"), dict):  # Keras's auto-config leaves the name out
                arguments["config"].setdefault("name", layer.name)
            copy = keras.saving.deserialize_keras_object(arguments)
            round_trip = keras.saving.serialize_keras_object(copy)
            round_trip.pop("build_config", None)
    except (TypeError, ValueError, NotImplementedError, AttributeError, KeyError) as e:
        raise ValueError(
            f"cannot copy {layer.name!r} ({type(layer).__name__}) through its config "
            f"({type(e).__name__}: {e}){_COPY_ADVICE}"
        ) from e
    if round_trip != config or copy.name != layer.name:
        raise ValueError(
            f"cannot copy {layer.name!r} ({type(layer).__name__}): its config does not round-trip{_COPY_ADVICE}"
        )
    return copy


def _built(original, copy):
    try:
        copy.build_from_config(original.get_build_config())
    except (TypeError, ValueError, NotImplementedError, AttributeError, KeyError) as e:
        raise ValueError(
            f"cannot build the copy of {original.name!r} ({type(original).__name__}) "
            f"({type(e).__name__}: {e}){_COPY_ADVICE}"
        ) from e


def _copy_variables(original, copy):
    """Every variable (weights and seed states) of original into copy, which must have the same ones."""
    source, target = original.variables, copy.variables
    if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in target]:
        raise ValueError(
            f"cannot copy {original.name!r} ({type(original).__name__}): the copy made from "
            f"its config has other variables{_COPY_ADVICE}"
        )
    for s, t in zip(source, target):
        t.assign(s)
    _copy_paths(original, copy)


def _copy_state(original, new):
    """The original's weights and its random-seed states into its twin, so that the twin's
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


def _check_names(layers, selectors, argument):
    if not selectors:
        return
    names = {layer.name for layer in layers}
    missing = [s for s in selectors if isinstance(s, str) and s not in names]
    if missing:
        raise ValueError(f"{argument} names layers the model does not have: {missing}")


def _check_include_replaceable(layers, include):
    """Every include selector must pick at least one layer that has, or holds, an AM twin."""
    if not include:
        return
    for selector in include:
        picked = [layer for layer in layers if _selected(layer, (selector,))]
        inside = [sub for layer in picked for sub in layer._flatten_layers(include_self=True)]
        twins = _twins()
        if not any(type(layer) in twins for layer in inside):
            if isinstance(selector, str):
                what = f"layer {selector!r} ({type(picked[0]).__name__})"
            else:
                what = f"class {selector.__name__}"
            raise ValueError(
                f"include selects {what}, which matches no layer with an AM twin; "
                f"supported: {sorted(t.__name__ for t in twins if t not in twins.values())}"
            )
