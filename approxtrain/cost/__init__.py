"""Cost model of a training step: what it multiplies, what could be skipped, what it would cost.

    report = approxtrain.cost.profile(model, dataset, multipliers="fp32,bf16", batches=2)

See docs/cost.md for the definitions, the outer-product tiling and the JSON schema.
"""
from approxtrain.cost.counts import PHASES, Counts  # noqa: F401
from approxtrain.cost.profile import profile  # noqa: F401
