"""Loads the TensorFlow op library ``_approxtrain_ops.so`` that sits next to this file.

The library is compiled against one TensorFlow version (recorded in the stamp
file ``_approxtrain_ops.tf_version`` by the build: line 1 the version, line 2
``devices=CPU`` or ``devices=CPU,GPU``, the devices it has kernels for).  A
missing library, a stamp that names another TensorFlow, or a library
TensorFlow refuses to load raises :class:`OpLibraryError` naming the one
command that rebuilds it.  The library is found relative to this package,
never the working directory.
"""

import os
import threading

from approxtrain._native import PACKAGE_DIR, REBUILD_COMMAND, rebuild_hint  # noqa: F401 - REBUILD_COMMAND re-exported

LIBRARY_FILE = "_approxtrain_ops.so"
STAMP_FILE = "_approxtrain_ops.tf_version"

_lock = threading.Lock()
_loaded = None


class OpLibraryError(ImportError):
    """The TF op library is missing, stale or unloadable (the message says how to rebuild)."""


def _error(problem):
    return OpLibraryError(f"approxtrain's TensorFlow op library cannot be used: {problem}. {rebuild_hint()}")


def read_stamp(directory):
    """(TF version, tuple of kernel devices) from the stamp in ``directory``, or None without one.

    A stamp without a devices line (older builds) means CPU kernels only.
    """
    path = os.path.join(directory, STAMP_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    version = lines[0] if lines else ""
    devices = ("CPU",)
    for line in lines[1:]:
        if line.startswith("devices="):
            devices = tuple(d for d in line[len("devices=") :].split(",") if d)
    return version, devices


def load_from(directory):
    """Loads and returns the op library module found in ``directory`` (checked, not cached)."""
    import tensorflow as tf

    library = os.path.join(directory, LIBRARY_FILE)
    stamp = os.path.join(directory, STAMP_FILE)
    if not os.path.exists(library):
        raise _error(f"{library} does not exist (built without TensorFlow, or never built)")
    stamped = read_stamp(directory)
    if stamped is None:
        raise _error(f"{stamp} is missing, so the TensorFlow version {library} was compiled against is unknown")
    built_for = stamped[0]
    if built_for != tf.__version__:
        raise _error(f"it was compiled against TensorFlow {built_for}, but TensorFlow {tf.__version__} is running")
    try:
        return tf.load_op_library(library)
    except Exception as e:  # tf.errors.NotFoundError (undefined symbols) and friends
        raise _error(f"TensorFlow failed to load {library}: {e}") from e


def library():
    """The op library of this installation, loaded once per process."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = load_from(PACKAGE_DIR)
        return _loaded
