"""The IntegerMultiplier record: an 8-bit integer circuit as its table of exact products.

The second kind of multiplier (docs/design.md, "Multipliers and their tables"): where a
`Multiplier` approximates float significand products, an `IntegerMultiplier` is a
published integer circuit (EvoApproxLib's ``mul8s_*``/``mul8u_*`` and the like), kept as
the 256x256 table of the integers it returns.  Quantized layers multiply 8-bit codes
through it and accumulate exactly in integers.
"""

from dataclasses import dataclass, field

import numpy as np

INTEGER_BITS = (8,)


@dataclass(frozen=True, eq=False)
class IntegerMultiplier:
    """An 8-bit integer approximate multiplier as a table of products.

    Args:
        name: registry name, e.g. ``"mul8s_exact"``.
        signed: True for two's-complement operands in [-128, 127], False for [0, 255].
        products: int32 array of shape (256, 256); ``products[pa, pb]`` is the product of the
            operands whose 8-bit patterns are ``pa`` (the table row: the first operand, the
            activation in forward) and ``pb``. For signed circuits the pattern of -1 is 255.
        bits: operand width; 8 is the only width supported.
        description: one line for listings.
        power_mw, area_um2, delay_ns: the circuit's published figures (e.g. EvoApproxLib's
            PDK45_PWR, PDK45_AREA, PDK45_DELAY), None where not published.
    """

    name: str
    signed: bool
    products: np.ndarray = field(repr=False)
    bits: int = 8
    description: str = ""
    power_mw: float | None = None
    area_um2: float | None = None
    delay_ns: float | None = None

    kind = "integer"  # class attribute: Multiplier.kind is "float"

    def __post_init__(self):
        if self.bits not in INTEGER_BITS:
            raise ValueError(f"integer multipliers must have bits in {INTEGER_BITS}, got {self.bits!r}")
        if not isinstance(self.signed, (bool, np.bool_)):
            raise ValueError(f"signed must be True or False, got {self.signed!r}")
        products = np.asarray(self.products)
        side = 1 << self.bits
        if products.shape != (side, side) or not np.issubdtype(products.dtype, np.integer):
            raise ValueError(
                f"products must be an integer array of shape ({side}, {side}), got {products.dtype} "
                f"with shape {products.shape}"
            )
        limit = 1 << (2 * self.bits)  # a product of two 8-bit operands needs at most 16 bits
        low, high = (-(limit >> 1), (limit >> 1) - 1) if self.signed else (0, limit - 1)
        if products.min() < low or products.max() > high:
            bad = np.argwhere((products < low) | (products > high))[0]
            raise ValueError(
                f"{self.name!r}: product of patterns ({bad[0]}, {bad[1]}) is {int(products[tuple(bad)])}, "
                f"outside the {2 * self.bits}-bit {'signed' if self.signed else 'unsigned'} range [{low}, {high}]"
            )
        products = np.ascontiguousarray(products, dtype=np.int32)
        products.flags.writeable = False
        object.__setattr__(self, "products", products)
        object.__setattr__(self, "signed", bool(self.signed))

    @property
    def code_range(self):
        """(lowest, highest) operand value: (-128, 127) signed, (0, 255) unsigned."""
        side = 1 << self.bits
        return (-(side >> 1), (side >> 1) - 1) if self.signed else (0, side - 1)

    @property
    def energy_pj(self):
        """Per-multiply energy estimate, power x delay (mW x ns = pJ); None without both figures."""
        if self.power_mw is None or self.delay_ns is None:
            return None
        return float(self.power_mw) * float(self.delay_ns)

    def patterns(self, values):
        """The 8-bit patterns (uint8) of integer operand values, as the table indexes them."""
        values = np.asarray(values)
        low, high = self.code_range
        if values.size and (values.min() < low or values.max() > high):
            raise ValueError(f"{self.name!r}: operand values must lie in [{low}, {high}]")
        return values.astype(np.int64).astype(np.uint8)

    def multiply(self, a, b):
        """Elementwise product of integer operand values through the table (NumPy, int32)."""
        return self.products[self.patterns(a), self.patterns(b)]
