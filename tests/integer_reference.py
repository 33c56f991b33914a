"""NumPy reference of the integer multiplier fixtures (tests/fixtures/integer_models/).

Independent of the fixture C code: each product is the weighted sum of the kept partial-product
bits, computed here from the operand patterns with NumPy, never by calling the circuit.
"""

from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "integer_models"

# (i, j): partial product of bit i of the FIRST parameter and bit j of the second, left out.
# Asymmetric sets, so that a table built with its operands swapped differs.
FIXTURES = (
    {  # EvoApproxLib's uint64_t f(const uint64_t B, const uint64_t A): the row is B
        "name": "mul8u_fx64",
        "style": 3,
        "signed": False,
        "dropped": frozenset((i, j) for i in range(2) for j in range(3)),
        "figures": (0.391, 688.4, 1.37),
        "includes": True,
    },
    {  # a signed circuit on raw patterns, returning the 16-bit two's-complement pattern
        "name": "mul8s_fxu16",
        "style": 2,
        "signed": True,
        "dropped": frozenset((i, j) for i in range(3) for j in range(1)),
        "figures": (0.425, 702.1, 1.52),
        "includes": True,
    },
    {  # int16_t f(int8_t, int8_t), written without its own #include lines
        "name": "mul8s_fxs16",
        "style": 1,
        "signed": True,
        "dropped": frozenset((i, j) for i in range(8) for j in range(8) if i + j < 3),
        "figures": (0.36, 655.0, 1.41),
        "includes": False,
    },
)
BY_NAME = {f["name"]: f for f in FIXTURES}


def fixture_path(name):
    return FIXTURE_DIR / f"{name}.c"


def signed_values(patterns):
    patterns = np.asarray(patterns, np.int64)
    return np.where(patterns >= 128, patterns - 256, patterns)


def reference_products(style, signed, dropped):
    """int64 (256, 256) products [pattern of the first parameter, pattern of the second]."""
    pa = np.arange(256, dtype=np.int64)[:, None]
    pb = np.arange(256, dtype=np.int64)[None, :]
    total = np.zeros((256, 256), np.int64)
    for i in range(8):
        for j in range(8):
            if (i, j) in dropped:
                continue
            bit = ((pa >> i) & 1) & ((pb >> j) & 1)
            if signed and ((i == 7) != (j == 7)):
                bit = 1 - bit  # Baugh-Wooley: cross terms of the sign bits inverted
            total += bit << (i + j)
    if signed:
        total += (1 << 8) + (1 << 15)
    total &= 0xFFFF
    if signed:
        total = np.where(total >= 0x8000, total - 0x10000, total)
    return total


def fixture_products(name):
    f = BY_NAME[name]
    return reference_products(f["style"], f["signed"], f["dropped"])


def exact_products(signed):
    values = signed_values(np.arange(256)) if signed else np.arange(256, dtype=np.int64)
    return np.outer(values, values)
