"""What a (sparse) model's weights achieve: weight sparsity, channel sparsity, multiplies skipped."""

import keras
import numpy as np

from approxtrain.sparsity.masks import prunable


def _uses_per_weight(target):
    """How often one kernel weight is multiplied per example: the output positions it is applied
    at (1 for a Dense on vectors, height x width of the output for a Conv2D or DepthwiseConv2D).
    1 for the other layers (EinsumDense, transposed and separable convs) and when unknown."""
    kl = keras.layers
    if not isinstance(target.layer, (kl.Dense, kl.Conv1D, kl.Conv2D, kl.Conv3D, kl.DepthwiseConv2D)):
        return 1
    try:
        shape = target.layer.output.shape
    except (AttributeError, ValueError):  # a layer called more than once, or never built in a graph
        return 1
    return int(np.prod([int(d) for d in shape[1:-1]])) if len(shape) > 2 else 1


def sparsity_report(model):
    """{"weight_sparsity", "channel_sparsity", "multiplies_skipped", "layers": [...]} from the
    kernels' zeros. weight_sparsity: zero weights / weights of the prunable kernels;
    channel_sparsity: all-zero output channels / output channels of the Dense/Conv kernels but
    the last (the outputs); multiplies_skipped: share of the prunable layers' multiplies per
    example whose weight is zero (each weight counted at every output position it is applied)."""
    targets = prunable(model, required=False)
    if not targets:
        return {"weight_sparsity": 0.0, "channel_sparsity": 0.0, "multiplies_skipped": 0.0, "layers": []}
    layers, zeros, total, macs, skipped, channels, dead = [], 0, 0, 0, 0, 0, 0
    for i, target in enumerate(targets):
        w = np.asarray(target.kernel.numpy() if hasattr(target.kernel, "numpy") else target.kernel)
        zero = int((w == 0).sum())
        uses = _uses_per_weight(target)
        row = {"kernel": target.name, "weights": int(w.size), "zero": zero, "sparsity": zero / w.size}
        if target.channels and i < len(targets) - 1:
            empty = int((np.abs(w).reshape(-1, w.shape[-1]).sum(axis=0) == 0).sum())
            row.update(channels=int(w.shape[-1]), removed_channels=empty)
            channels, dead = channels + int(w.shape[-1]), dead + empty
        zeros, total, macs, skipped = zeros + zero, total + w.size, macs + w.size * uses, skipped + zero * uses
        layers.append(row)
    return {
        "weight_sparsity": zeros / total,
        "channel_sparsity": dead / channels if channels else 0.0,
        "multiplies_skipped": skipped / macs,
        "layers": layers,
    }


def _producer(layer):
    """The layer whose output is `layer`'s single input in a functional model, else None."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    history = getattr(nodes[0].input_tensors[0], "_keras_history", None)
    return None if history is None else history.operation


def _kept_share(layer):
    """The share of its output units (row) or kernel row tiles (tile) a dropout-fused Dense keeps."""
    from approxtrain.layers import _dropout_patterns as patterns

    dropout = getattr(layer, "dropout", None)
    if dropout is None or dropout.rate == 0.0:
        return 1.0
    n_in, units = layer.kernel.shape
    if dropout.pattern == "row":
        return patterns.kept_count(units, dropout.rate) / units
    row_tiles = patterns.tile_grid(n_in, units, dropout.tile)[0]
    return patterns.kept_count(row_tiles, dropout.rate) / row_tiles


def dropout_report(model):
    """{"multiplies_skipped", "layers": [...]}: the share of the Dense layers' training multiplies
    (forward, per example; the gradient products shrink alike) that approximate random dropout
    skips. A dropout-fused Dense (`ApproxDropoutDense`) skips its dropped units or tiles; the AM
    Dense right after a row pattern drawn for the whole batch skips its dropped inputs too
    (approxtrain/layers/_kept_units.py). 0.0 for a model without approximate dropout."""
    from approxtrain.layers import AMDense, ApproxDropoutDense
    from approxtrain.layers import _kept_units as kept_units

    layers, macs, performed = [], 0, 0.0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Dense) or len(layer.kernel.shape) != 2:
            continue
        n_in, units = (int(d) for d in layer.kernel.shape)
        share = _kept_share(layer) if isinstance(layer, ApproxDropoutDense) else 1.0
        producer = _producer(layer)
        if (
            isinstance(layer, AMDense)
            and kept_units.takes(layer)
            and isinstance(producer, ApproxDropoutDense)
            and kept_units.hands_on(producer)
        ):
            share *= _kept_share(producer)
        layers.append({"layer": layer.name, "macs": n_in * units, "kept": share})
        macs, performed = macs + n_in * units, performed + n_in * units * share
    return {"multiplies_skipped": 1.0 - performed / macs if macs else 0.0, "layers": layers}
