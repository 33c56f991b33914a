"""QuantConfig: how a layer or op with an integer multiplier quantizes its operands."""

from dataclasses import asdict, dataclass

GRANULARITIES = ("per_tensor", "per_channel")
CALIBRATIONS = ("minmax", "moving_average", "percentile")


@dataclass(frozen=True)
class QuantConfig:
    """Quantization of the operands of integer-multiplier products (docs/integer.md).

    Args:
        granularity: ``"per_tensor"`` or ``"per_channel"``: one scale for the whole weight
            tensor, or one per output channel (the last axis of a Dense/conv kernel, the
            columns of the right operand of a matmul).  Activations are always per tensor.
        calibration: how an activation's range is found: ``"minmax"`` (the batch's min and max),
            ``"percentile"`` (the ``percentile``-th percentile of |x| for signed multipliers, the
            (100 - p, p) percentiles for unsigned ones), or ``"moving_average"`` (a layer's state,
            an exponential moving average of the batch min/max, updated in training only; the
            stateless ops refuse it).  Weights are always calibrated by their min/max.
        percentile: in (50, 100], for ``calibration="percentile"``.
        momentum: in [0, 1), the moving average's weight of the old range.
        integer_backward: False: straight-through estimator (the input and weight gradients are
            float products of the dequantized operands and dY).  True: dY is quantized too and
            dX = dY_q . W_q^T, dW = X_q^T . dY_q go through the same integer table.
    """

    granularity: str = "per_tensor"
    calibration: str = "minmax"
    percentile: float = 99.99
    momentum: float = 0.99
    integer_backward: bool = False

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"QuantConfig granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"QuantConfig calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)):
            raise ValueError(f"QuantConfig percentile must be a number in (50, 100], got {self.percentile!r}")
        if not 50 < self.percentile <= 100:
            raise ValueError(f"QuantConfig percentile must be in (50, 100], got {self.percentile!r}")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)):
            raise ValueError(f"QuantConfig momentum must be a number in [0, 1), got {self.momentum!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"QuantConfig momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.integer_backward, bool):
            raise ValueError(f"QuantConfig integer_backward must be True or False, got {self.integer_backward!r}")
        object.__setattr__(self, "percentile", float(self.percentile))
        object.__setattr__(self, "momentum", float(self.momentum))

    def get_config(self):
        return asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def quant_config(value):
    """A QuantConfig from a `quantization=` argument: None (the defaults), a QuantConfig or its dict."""
    if value is None:
        return QuantConfig()
    if isinstance(value, QuantConfig):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(QuantConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"quantization: unknown QuantConfig field(s) {unknown}")
        return QuantConfig(**value)
    raise ValueError(f"quantization must be None, a QuantConfig or a dict of its fields, got {value!r}")
