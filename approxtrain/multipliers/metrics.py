"""Error metrics of a multiplier (docs/multipliers.md, "Error metrics").

Two views:
- table pairs: every entry against the exact product of its operands
  1.ia x 1.ib (what the table itself gets wrong);
- random float32 inputs through the native core's elementwise multiply (what
  the kernels compute, operand reduction included) against the exact product
  of the unreduced inputs, computed in float64 (exact: 24 x 24 bits fit in 53).

The kernel is reached through approxtrain._native, not approxtrain.core, which
itself reads multipliers through this package.
"""

import numpy as np

from .builder import table_operands

DEFAULT_SAMPLES = 10**6


def table_products(multiplier):
    """The significand products the table holds, [2^M, 2^M] float64 (row = ia)."""
    lut = multiplier.lut.astype(np.int64)
    value = (1.0 + (lut & 0x7FFF) / 2.0**15) * (1 + (lut >> 15))
    n = 1 << multiplier.mantissa_bits
    return value.reshape(n, n)


def table_relative_errors(multiplier):
    """approx / exact - 1 over all table pairs, [2^M, 2^M] float64 (row = ia, column = ib)."""
    ops = table_operands(multiplier.mantissa_bits).astype(np.float64)
    return table_products(multiplier) / np.outer(ops, ops) - 1.0


def random_operands(samples, seed=0, exponent_range=30):
    """Two float32 arrays: uniform significands in [1, 2), random signs, exponents in +-exponent_range."""
    rng = np.random.default_rng(seed)

    def draw():
        fraction = rng.integers(0, 1 << 23, samples, dtype=np.uint32)
        exponent = rng.integers(127 - exponent_range, 127 + exponent_range + 1, samples).astype(np.uint32)
        sign = rng.integers(0, 2, samples).astype(np.uint32)
        return ((sign << np.uint32(31)) | (exponent << np.uint32(23)) | fraction).view(np.float32)

    return draw(), draw()


def random_relative_errors(multiplier, samples=DEFAULT_SAMPLES, seed=0):
    """approx / exact - 1 for random float32 inputs through the native core's multiply."""
    from approxtrain._native import core  # the compiled kernels: measures what they do

    a, b = random_operands(samples, seed)  # contiguous float32 of one shape, as the kernel takes them
    approx = core().multiply(a, b, *multiplier.core_args).astype(np.float64)
    exact = a.astype(np.float64) * b.astype(np.float64)
    return approx / exact - 1.0


def summarize(relative_errors):
    """bias (mean), MRED (mean |.|), max and min of relative errors, as fractions."""
    e = np.asarray(relative_errors, np.float64).ravel()
    return {
        "bias": float(e.mean()),
        "mred": float(np.abs(e).mean()),
        "max": float(e.max()),
        "min": float(e.min()),
        "count": int(e.size),
    }


def error_metrics(multiplier, samples=DEFAULT_SAMPLES, seed=0):
    """{"table": summary over all table pairs, "random": summary over random float32 inputs}."""
    return {
        "table": summarize(table_relative_errors(multiplier)),
        "random": summarize(random_relative_errors(multiplier, samples, seed)),
    }
