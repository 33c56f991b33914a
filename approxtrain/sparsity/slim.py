"""export_slim: a physically smaller copy of a channel-sparse model, with the same outputs."""

import keras
import numpy as np

# Layers that act per channel (or per element) and keep the channel axis last: the live
# channels pass through them unchanged. Dropout is the identity at inference.
_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
)


class SlimError(ValueError):
    """The model's graph is not one export_slim can shrink."""


def export_slim(model):
    """A new model without the removed output channels of its Dense/Conv1D/2D/3D layers.

    A channel is removed when its kernel slice and its bias are all 0 and the layer's activation
    maps 0 to 0 (what Chase leaves): its output is then 0 everywhere, so dropping it, and the next
    layer's input slice that multiplied it, changes no output (the sums lose only +0 terms). The
    last such layer (the outputs) keeps all its channels. Works for single-input chains of Dense,
    Conv, pooling, activation, dropout and Flatten layers (the zoo's lenet5 and lenet300100);
    any other graph or layer raises SlimError naming what it cannot shrink. Weights are copied;
    the new model is not compiled."""
    layers = _chain(model)
    heavy = [i for i, layer in enumerate(layers) if _is_channel_layer(layer)]
    last_heavy = heavy[-1] if heavy else -1
    shape = tuple(model.inputs[0].shape[1:])
    keep = None  # indices into the last axis of the current tensor (None: all of it)
    new_layers = []
    for i, layer in enumerate(layers):
        config = layer.get_config()
        if _is_channel_layer(layer):
            weights = [np.asarray(w) for w in layer.get_weights()]
            kernel, bias = weights[0], weights[1] if len(weights) > 1 else None
            if keep is not None:
                kernel = np.take(kernel, keep, axis=-2)
            live = np.arange(kernel.shape[-1])
            if i != last_heavy and _maps_zero_to_zero(layer):
                dead = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0) == 0
                if bias is not None:
                    dead &= bias == 0
                live = np.flatnonzero(~dead)
                if live.size == 0:
                    raise SlimError(f"layer {layer.name!r} has no live output channel left")
            config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = int(live.size)
            clone = type(layer).from_config(config)
            new_weights = [kernel[..., live]] + ([bias[live]] if bias is not None else [])
            new_layers.append((clone, new_weights))
            keep = None if live.size == kernel.shape[-1] else live
        elif isinstance(layer, keras.layers.Flatten):
            if keep is not None:
                in_shape = tuple(int(d) for d in layer.input.shape[1:])
                keep = np.arange(int(np.prod(in_shape))).reshape(in_shape)[..., keep].ravel()
            new_layers.append((type(layer).from_config(config), None))
        elif isinstance(layer, _PASS_THROUGH) or type(layer).__name__ == "ApproxRandomDropout":
            new_layers.append((type(layer).from_config(config), None))
        else:
            raise SlimError(
                f"export_slim cannot shrink through layer {layer.name!r} ({type(layer).__name__}): it shrinks "
                f"chains of Dense, Conv1D/2D/3D, pooling, activation, dropout and Flatten layers"
            )
    inputs = keras.Input(shape=shape, dtype=model.inputs[0].dtype, name=model.inputs[0].name)
    x = inputs
    for layer, _ in new_layers:
        x = layer(x)
    slim = keras.Model(inputs, x, name=f"{model.name}_slim")
    for layer, weights in new_layers:
        if weights is not None:
            layer.set_weights(weights)
    return slim


def _is_channel_layer(layer):
    kl = keras.layers
    return isinstance(layer, (kl.Dense, kl.Conv1D, kl.Conv2D, kl.Conv3D)) and getattr(layer, "groups", 1) == 1


def _maps_zero_to_zero(layer):
    activation = getattr(layer, "activation", None)
    if activation is None:
        return True
    return float(np.asarray(activation(np.zeros((1, 1), np.float32))).ravel()[0]) == 0.0


def _chain(model):
    """The model's layers after the input, checked to be one chain from its one input to its one output."""
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or model.inputs is None:
        raise SlimError(f"export_slim needs a functional or Sequential Keras model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise SlimError(
            f"export_slim shrinks single-input, single-output chains; {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        try:
            source = layer.input
        except (AttributeError, ValueError):
            raise SlimError(f"layer {layer.name!r} is used more than once or has no single input") from None
        if source is not previous:
            raise SlimError(
                f"{model.name!r} is not a plain chain: layer {layer.name!r} does not take the previous layer's "
                f"output (a branch, skip connection or merge)"
            )
        previous = layer.output
    if previous is not model.outputs[0]:
        raise SlimError(f"{model.name!r} is not a plain chain: its output is not its last layer's")
    return layers
