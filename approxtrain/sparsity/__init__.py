"""Sparse training composed with approximate multipliers.

    import approxtrain as at
    pruning = at.sparsity.MagnitudePruning(0.9, schedule="gradual", start=0, end=2000, every=100)
    model.fit(data, epochs=5, callbacks=[pruning])            # or approxtrain.train.loop.fit
    chase = at.sparsity.Chase(0.9, channel_sparsity=0.3, update_every=100, end=3000)
    approxtrain.train.loop.fit(model, data, epochs=5, callbacks=[chase])
    slim = at.sparsity.export_slim(model)                     # removed channels physically gone
    at.sparsity.sparsity_report(model)                        # weight/channel sparsity, MACs skipped
    at.sparsity.dropout_report(model)                         # MACs approximate random dropout skips

All step counts (start, end, every, update_every) are optimizer steps. See docs/sparsity.md.
"""

from approxtrain.sparsity.chase import Chase
from approxtrain.sparsity.masks import MaskedTraining, magnitude_masks, prunable
from approxtrain.sparsity.measure import dropout_report, sparsity_report
from approxtrain.sparsity.pruning import MagnitudePruning
from approxtrain.sparsity.schedule import cosine_fraction, cubic_sparsity, erk_densities
from approxtrain.sparsity.slim import SlimError, export_slim

__all__ = [
    "Chase", "MagnitudePruning", "MaskedTraining", "SlimError", "cosine_fraction", "cubic_sparsity",
    "dropout_report", "erk_densities", "export_slim", "magnitude_masks", "prunable", "sparsity_report",
]  # fmt: skip
