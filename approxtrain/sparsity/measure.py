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
