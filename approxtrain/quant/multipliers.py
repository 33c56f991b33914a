"""Reading multiplier arguments when integer multipliers may be among them."""

from approxtrain import multipliers
from approxtrain.multipliers import IntegerMultiplier


def resolve_any(value):
    """An IntegerMultiplier, a Multiplier, or None (NATIVE), from a name or a record."""
    if isinstance(value, IntegerMultiplier):
        return value
    return multipliers.resolve(value)


def is_integer(value):
    """Whether a multiplier argument (name or record; None: no) stands for an integer multiplier."""
    return value is not None and isinstance(resolve_any(value), IntegerMultiplier)


def any_integer(*values):
    return any(is_integer(v) for v in values)


def describe(value):
    return value.name if hasattr(value, "name") else str(value)


def refuse_integer(op, multiplier, grad_input_multiplier, grad_weight_multiplier, quantization, input_range):
    """A clear error for an op that has no integer path yet (never a silent float fallback)."""
    values = (multiplier, grad_input_multiplier, grad_weight_multiplier)
    integer = [describe(v) for v in values if v is not None and isinstance(resolve_any(v), IntegerMultiplier)]
    if integer or quantization is not None or input_range is not None:
        which = f"integer multiplier {integer[0]!r}" if integer else "quantization=/input_range="
        raise ValueError(
            f"{op} does not support integer multipliers yet, got {which}; give this op (or layer) a float "
            "multiplier or 'fp32' (e.g. substitute(..., exclude=[...]))"
        )
