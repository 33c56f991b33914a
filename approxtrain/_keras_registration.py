"""Makes ``import approxtrain`` enough for Keras to load .keras files that hold AM layers.

Keras finds a custom layer class only once the module defining it has run, while
``import approxtrain`` leaves TensorFlow alone (the core and the registry work without it).
So the layers are imported as soon as Keras and TensorFlow are loaded: at once when they
already are, else right after the outermost import in progress finishes. Outermost matters:
TensorFlow's import loads parts of Keras and Keras's loads TensorFlow, and an approxtrain
module that imports TensorFlow must finish before approxtrain.layers can import from it.
"""

import importlib
import importlib.abc
import sys
import warnings

_NEEDED = ("keras", "tensorflow")


def _watched(name):
    return name in _NEEDED or name.startswith("approxtrain.")


def _initializing(name, finishing):
    """True while module `name` runs (`finishing`: the one whose exec just returned counts as done)."""
    module = sys.modules.get(name)
    return name != finishing and getattr(getattr(module, "__spec__", None), "_initializing", False)


def _register_layers(finishing=None):
    if not all(sys.modules.get(name) is not None and not _initializing(name, finishing) for name in _NEEDED):
        return False
    if any(_initializing(name, finishing) for name in list(sys.modules) if name.startswith("approxtrain.")):
        return False  # that module's end calls again
    _uninstall()
    try:
        importlib.import_module("approxtrain.layers")
    except ImportError as e:  # keep the user's own import working; say why loading AM layers will fail
        warnings.warn(f"approxtrain could not register its Keras layers: {e}", stacklevel=2)
    return True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Wraps the loaders of keras, tensorflow and approxtrain's modules so their end calls _register_layers."""

    def find_spec(self, fullname, path=None, target=None):
        if not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _register_layers(finishing=fullname)

        loader.exec_module = exec_module
        return spec


_finder = _AfterImport()


def _uninstall():
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def install():
    """Register the AM layers now if Keras and TensorFlow are loaded, else once they are."""
    if not _register_layers() and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
