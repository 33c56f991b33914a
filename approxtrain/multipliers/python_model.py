"""Tables of multiplier models written in Python.

A Python model is a callable ``fn(a, b) -> product`` on NumPy float32 arrays:
it is called once over the whole operand grid (a = 1.ia, b = 1.ib for all
2^(2M) pairs, a the left operand) and then on a few scaled and sign-flipped
samples, and must return a float32 array of the operands' shape.  The checks
are those of C models (builder.table_of).  The operands are read-only: a
model that writes into them is an error rather than a silently wrong table.
"""

import numpy as np

from .builder import ModelError, check_mantissa_bits, table_of


def model_name(fn):
    """A name for a callable in messages and table headers."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _evaluator(fn, label):
    def evaluate(a, b):
        a, b = np.array(a, np.float32), np.array(b, np.float32)
        a.flags.writeable = b.flags.writeable = False
        try:
            r = fn(a, b)
        except Exception as e:  # the user's code: any failure is the model's error
            raise ModelError(f"{label} raised {type(e).__name__}: {e}") from e
        if not isinstance(r, np.ndarray):
            raise ModelError(f"{label} must return a NumPy float32 array of shape {a.shape}, got {type(r).__name__}")
        if r.dtype != np.float32:
            raise ModelError(
                f"{label} must return float32 products, got dtype {r.dtype} "
                "(compute in float32, or convert with .astype(np.float32))"
            )
        if r.shape != a.shape:
            raise ModelError(f"{label} must return one product per operand pair (shape {a.shape}), got shape {r.shape}")
        return np.ascontiguousarray(r)

    return evaluate


def table_from_function(fn, mantissa_bits, label=None):
    """The uint16 table of a Python model fn(a, b) -> float32 products."""
    if not callable(fn):
        raise TypeError(f"a Python model must be callable, got {type(fn).__name__}")
    m = check_mantissa_bits(mantissa_bits)
    label = f"Python model {label or model_name(fn)} ({model_name(fn)})"
    return table_of(_evaluator(fn, label), m, label)
