"""Error metrics of an integer multiplier over all 65536 operand pairs (docs/multipliers.md,
"Integer multipliers"), as EvoApproxLib reports them for its circuits.

With e = approx - exact over every pair of operand values (two's complement for signed):
MAE = mean |e|, WCE = max |e|, MRE = mean |e| / max(1, |exact|) (a pair whose exact product is 0
counts its absolute error), EP = the fraction of pairs with e != 0, bias = mean e; MAE% and
WCE% are MAE and WCE relative to 2^16, the range of a 16-bit product.
"""

import numpy as np

from .integer_builder import operand_values


def exact_products(multiplier):
    """The exact products of every table pair, int64 (256, 256), row = first operand."""
    values = operand_values(np.arange(1 << multiplier.bits), multiplier.signed)
    return np.outer(values, values)


def integer_error_metrics(multiplier):
    """{"mae", "mae_percent", "wce", "wce_percent", "mre_percent", "ep_percent", "bias", "count"}."""
    exact = exact_products(multiplier)
    error = multiplier.products.astype(np.int64) - exact
    magnitude = np.abs(error)
    span = float(1 << (2 * multiplier.bits))
    mae = float(magnitude.mean())
    wce = int(magnitude.max())
    return {
        "mae": mae,
        "mae_percent": 100 * mae / span,
        "wce": wce,
        "wce_percent": 100 * wce / span,
        "mre_percent": 100 * float((magnitude / np.maximum(1, np.abs(exact))).mean()),
        "ep_percent": 100 * float((error != 0).mean()),
        "bias": float(error.mean()),
        "count": int(error.size),
    }
