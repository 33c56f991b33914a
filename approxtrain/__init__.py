"""approxtrain: train Keras models with simulated approximate multipliers.

    import approxtrain as at
    m = at.multipliers.get("mbm7")
    at.core.matmul(a, b, m)                 # numpy, no TensorFlow
    at.layers.AMDense(64, multiplier="mbm7")  # Keras 3 (imports TensorFlow)

TensorFlow is imported only by the parts that need it (ops, layers,
substitute, models, data), so the core and the multiplier registry work on a
machine without it.
"""

from importlib import import_module

from approxtrain import _keras_registration, core, multipliers
from approxtrain._build_info import build_info
from approxtrain._version import __version__ as __version__  # re-exported

_LAZY = {
    "ops": "approxtrain.ops",
    "layers": "approxtrain.layers",
    "models": "approxtrain.models",
    "data": "approxtrain.data",
    "sparsity": "approxtrain.sparsity",
    "quant": "approxtrain.quant",
}

# Keras loads .keras files with AM layers after `import approxtrain` alone, in either import order.
_keras_registration.install()


def __getattr__(name):
    if name in _LAZY:
        return import_module(_LAZY[name])
    if name == "substitute":
        return import_module("approxtrain._substitute").substitute
    if name == "coverage":
        return import_module("approxtrain._coverage").coverage
    raise AttributeError(f"module 'approxtrain' has no attribute {name!r}")


__all__ = [
    "core",
    "multipliers",
    "build_info",
    "ops",
    "layers",
    "models",
    "data",
    "sparsity",
    "quant",
    "substitute",
    "coverage",
]
