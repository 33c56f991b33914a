"""Quantized products through integer multipliers (docs/integer.md).

    import approxtrain as at
    y = at.ops.matmul(x, w, "mul8s_exact")                          # any op, any AM layer
    cfg = at.quant.QuantConfig(granularity="per_channel", calibration="moving_average")
    layer = at.layers.AMDense(64, multiplier="mul8u_trunc4", quantization=cfg)

An integer multiplier (`approxtrain.multipliers.IntegerMultiplier`) routes an op or layer here:
operands are quantized to 8-bit codes, every product of two codes is looked up in the
multiplier's 256x256 table, the sums are exact integers and the result is dequantized.
"""

from approxtrain.quant.config import CALIBRATIONS, GRANULARITIES, QuantConfig
from approxtrain.quant.multipliers import is_integer, resolve_any
from approxtrain.quant.quantize import QuantParams, dequantize, params_from_range, quantize

__all__ = [
    "QuantConfig",
    "GRANULARITIES",
    "CALIBRATIONS",
    "QuantParams",
    "params_from_range",
    "quantize",
    "dequantize",
    "is_integer",
    "resolve_any",
]
