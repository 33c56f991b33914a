"""Cost model of a training step: what it multiplies, what could be skipped, what it would cost.

    report = approxtrain.cost.profile(model, dataset, multipliers="fp32,bf16", batches=2)

See docs/cost.md for the definitions, the outer-product tiling and the JSON schema.
"""

from importlib import import_module

# profile() runs TensorFlow; it is imported on first use so that `approxtrain multipliers add
# --energy-pj` (which needs approxtrain.cost.energy only) starts without loading TensorFlow.
_LAZY = {
    "profile": ("approxtrain.cost.profile", "profile"),
    "PHASES": ("approxtrain.cost.counts", "PHASES"),
    "Counts": ("approxtrain.cost.counts", "Counts"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        # Importing approxtrain.cost.profile binds the submodule to this package's `profile`;
        # the function takes that name back, once.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'approxtrain.cost' has no attribute {name!r}")
