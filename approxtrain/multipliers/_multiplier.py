"""The Multiplier record every other part of approxtrain takes."""

from dataclasses import dataclass, field

import numpy as np

ROUNDINGS = ("truncate", "nearest")


@dataclass(frozen=True, eq=False)
class Multiplier:
    """An approximate multiplier as a table (docs/design.md, "Number semantics").

    Args:
        name: registry name, e.g. ``"mbm7"``.
        mantissa_bits: M, the fraction bits each operand is reduced to (1..11).
        operand_rounding: ``"truncate"`` or ``"nearest"`` (round-to-nearest-even).
        lut: uint16 array of 2^(2M) entries, index ``ia * 2^M + ib``.
        description: one line for listings.
    """

    name: str
    mantissa_bits: int
    operand_rounding: str
    lut: np.ndarray = field(repr=False)
    description: str = ""

    kind = "float"  # class attribute: IntegerMultiplier.kind is "integer"

    def __post_init__(self):
        if not isinstance(self.mantissa_bits, (int, np.integer)) or not 1 <= self.mantissa_bits <= 11:
            raise ValueError(f"mantissa_bits must be an integer in [1, 11], got {self.mantissa_bits!r}")
        if self.operand_rounding not in ROUNDINGS:
            raise ValueError(f"operand_rounding must be one of {ROUNDINGS}, got {self.operand_rounding!r}")
        lut = np.ascontiguousarray(self.lut)
        if lut.dtype != np.uint16 or lut.ndim != 1:
            raise ValueError(f"lut must be a 1-D uint16 array, got {lut.dtype} with shape {lut.shape}")
        if lut.size != 1 << (2 * self.mantissa_bits):
            raise ValueError(
                f"lut for mantissa_bits={self.mantissa_bits} must have {1 << (2 * self.mantissa_bits)} entries, "
                f"got {lut.size}"
            )
        lut.flags.writeable = False
        object.__setattr__(self, "lut", lut)

    @property
    def core_args(self):
        """(lut, mantissa_bits, rounding): the table arguments of every _core function."""
        return self.lut, int(self.mantissa_bits), self.operand_rounding
