"""`.keras` save and load of a substituted model whose own config cannot say which layers are AM.

A Functional or Sequential model stores each layer's config, so its AM layers come back as AM
layers. A model that rebuilds its layers in its own `__init__`/`build` (keras_hub backbones:
`BertBackbone.from_config` calls `BertBackbone(vocabulary_size=..., ...)`; custom layers such
as keras_hub's TransformerEncoder, whose `build` makes its Dense layers) would come back with
native layers, and the saved AM weights would not even find their places.

So substitute() marks such a model (`mark`): its class becomes a subclass of the original
(same name, this module; `isinstance` holds) whose config is

    {"base": the original class's serialised config (what it would save unsubstituted),
     "replaced": [the AM layers' serialised configs, in substitute()'s walk order]}

registered as "approxtrain>SubstitutedModel". Loading (`keras.models.load_model` after
`import approxtrain.layers`, which registers the AM layers and this name) builds the base
model from its own config, walks it in substitute()'s order and puts the recorded AM layers in
place (each built from its build config, given the variable paths of the layer it replaces),
marks it again, and only then Keras loads the weights into it: the reloaded model is the
substituted one, bit for bit. A recorded layer that is not where the walk expects it (the base
class changed its layers since) is an error naming it, never a silently native layer.
Without approxtrain imported, Keras cannot locate the class (the file names this module).
"""

from copy import deepcopy

import keras
from keras.src.saving import object_registration

REGISTERED_NAME = "approxtrain>SubstitutedModel"
_CLASSES = {}  # original class -> its marked subclass


def needs_mark(holders):
    """Whether a layer replaced inside `holders` (its containers, outermost first) is lost by a
    config round trip: some container is neither a plain Functional/Sequential model nor a Keras
    layer (whose configs store their sublayers' configs)."""
    from keras.src.models.functional import Functional

    for holder in holders:
        if type(holder) in (Functional, keras.Sequential):
            continue
        if type(holder).__module__.startswith("keras.src.") and not isinstance(holder, keras.Model):
            continue  # a Keras wrapper (Bidirectional, TimeDistributed, ...): stores its layer's config
        return True
    return False


def record(new):
    """The record of one AM layer: its serialised config (with its build config)."""
    return keras.saving.serialize_keras_object(new)


def mark(model, records):
    """Make `model` save as a substituted model (in place): see the module docstring."""
    base = original_class(type(model))
    model.__class__ = _marked_class(base)
    object.__setattr__(model, "_approxtrain_replaced", list(records))


def original_class(cls):
    return getattr(cls, "_approxtrain_base", cls) if cls in _CLASSES.values() else cls


def _marked_class(base):
    if base not in _CLASSES:
        cls = type(
            base.__name__,
            (base,),
            {
                # Named as the original, but this module's: without approxtrain imported, loading
                # fails with "Could not locate class" instead of calling the original's from_config.
                "__module__": __name__,
                "__qualname__": base.__qualname__,
                "_approxtrain_base": base,
                "get_config": _get_config,
                "from_config": classmethod(_from_config),
            },
        )
        object_registration.GLOBAL_CUSTOM_NAMES[cls] = REGISTERED_NAME
        _CLASSES[base] = cls
    return _CLASSES[base]


def _get_config(self):
    base = type(self)._approxtrain_base
    config = {
        "module": base.__module__,
        "class_name": base.__name__,
        "registered_name": object_registration.get_registered_name(base),
        "config": base.get_config(self),
    }
    build_config = self.get_build_config()
    if build_config:
        config["build_config"] = build_config
    return {"base": config, "replaced": list(self._approxtrain_replaced)}


def _from_config(cls, config):
    if "base" not in config:  # the original's own config (a custom-object scope named this class)
        return cls._approxtrain_base.from_config(config)
    return SubstitutedModel.from_config(config)


@keras.saving.register_keras_serializable(package="approxtrain", name="SubstitutedModel")
class SubstitutedModel:
    """What `.keras` files name a marked model by; from_config returns the rebuilt model itself
    (never an instance of this class: a marked model's config comes from its own class)."""

    def get_config(self):  # Keras registers only classes that have one
        raise NotImplementedError("SubstitutedModel is never instantiated")

    @classmethod
    def from_config(cls, config):
        from approxtrain._substitute import replay

        model = keras.saving.deserialize_keras_object(deepcopy(config["base"]))  # it consumes its argument
        records = list(config["replaced"])
        replay(model, records)
        mark(model, records)
        return model
