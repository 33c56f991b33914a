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
