"""Where the compiled parts come from, and the one error when one is missing.

``import approxtrain`` never needs a compiled file: the native core ``_core``
(pybind11) is imported on its first use through :func:`core`, so a source tree
whose build was cleaned, or an install without a compiler, still imports and
says exactly which file is missing and which command rebuilds it the moment a
kernel is called.  The TensorFlow op library (``_op_library``) words its
errors with the same :func:`rebuild_hint`.
"""

import glob
import importlib
import os
import threading

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PACKAGE_DIR)
REBUILD_COMMAND = "pip install --no-build-isolation -e ."

_lock = threading.Lock()
_core = None


class NativeCoreError(ImportError):
    """approxtrain._core is missing or cannot be imported (the message says how to rebuild it)."""


def rebuild_hint():
    """The sentence that tells a user how to rebuild the native parts of this installation."""
    if os.path.exists(os.path.join(REPO_DIR, "setup.py")):
        return f"Rebuild it by running `{REBUILD_COMMAND}` in the repository ({REPO_DIR})."
    # An installed wheel: the library has to be built from a source checkout, against the TF that runs.
    return (
        "Rebuild it by running `pip install --no-build-isolation .` in a source checkout of approxtrain, "
        "with the TensorFlow you run installed."
    )


def core():
    """The compiled module approxtrain._core, imported once; a clear NativeCoreError without it."""
    global _core
    with _lock:
        if _core is None:
            try:
                _core = importlib.import_module("approxtrain._core")
            except ImportError as e:
                found = glob.glob(os.path.join(PACKAGE_DIR, "_core.*"))
                problem = (
                    f"{found[0]} exists but does not import ({e})"
                    if found
                    else f"{os.path.join(PACKAGE_DIR, '_core')}.*.so does not exist (never built, or the "
                    "build was cleaned)"
                )
                raise NativeCoreError(f"approxtrain's native core cannot be used: {problem}. {rebuild_hint()}") from e
        return _core


class LazyCore:
    """Stands for approxtrain._core in modules that call it: imports it on the first attribute."""

    def __getattr__(self, name):
        return getattr(core(), name)
