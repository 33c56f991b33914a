"""Turns an 8-bit integer multiplier model into its 256x256 table of products.

A model is a C or C++ function in one of the styles published circuit libraries use, taken
as it is (compiled by compiler.py with INTEGER_SIGNATURE, in a child process like float
models: builder.run_build_child)::

    int16_t  f(int8_t a, int8_t b)               style 1
    uint16_t f(uint8_t a, uint8_t b)             style 2
    uint64_t f(const uint64_t B, const uint64_t A)  style 3 (EvoApproxLib: operands in the low 8 bits)

The builder calls it for every pair of 8-bit patterns (pa, pb), pa on the FIRST parameter
(the table row) whatever it is called, and keeps the 16-bit product it returns, read with the
declared signedness: a signed circuit returning uint16_t (or uint64_t) gives the raw 16-bit
two's-complement pattern of its product, which is reinterpreted.  A uint64_t result must fit
16 bits (for a signed circuit, also its 64-bit sign extension); anything else names the pair.

A Python model is ``fn(a, b)`` on int64 arrays of operand values (-128..127 signed, 0..255
unsigned), every pair at once, returning the products.

EvoApproxLib-style header comments give the circuit's published figures, read by
read_figures: ``PDK45_PWR = 0.391 mW``, ``PDK45_AREA = 710.0 um2``, ``PDK45_DELAY = 1.43 ns``.
"""

import re
from pathlib import Path

import numpy as np

from . import builder
from ._integer import INTEGER_BITS
from .compiler import CompiledModel, ModelError, Signature, check_language, check_symbol

INTEGER_SIGNATURE = Signature(
    returns="int64_t",
    parameters="uint64_t a, uint64_t b",
    styles=(
        ("int16_t (*)(int8_t, int8_t)", "(int8_t)a, (int8_t)b", "(int64_t)"),
        ("uint16_t (*)(uint8_t, uint8_t)", "(uint8_t)a, (uint8_t)b", "(int64_t)"),
        ("uint64_t (*)(uint64_t, uint64_t)", "a, b", "(int64_t)"),
    ),
    nm_arguments=("(signed char, signed char)", "(unsigned char, unsigned char)", "(unsigned long, unsigned long)"),
    nm_returns=("", "short", "unsigned short", "unsigned long"),
    found_text="8-bit multiplier functions",
    none_text=(
        "8-bit multiplier function int16_t f(int8_t, int8_t), uint16_t f(uint8_t, uint8_t) or "
        "uint64_t f(uint64_t, uint64_t)"
    ),
    needed_text="8-bit multiplier function",
    example=(
        "int16_t {symbol}(int8_t a, int8_t b), uint16_t {symbol}(uint8_t a, uint8_t b) or "
        "uint64_t {symbol}(uint64_t a, uint64_t b)"
    ),
)
STYLES = ("int16_t f(int8_t, int8_t)", "uint16_t f(uint8_t, uint8_t)", "uint64_t f(uint64_t, uint64_t)")
SIDE = 256
# The default time limit of a build: the float builder's rule for 65536 entries (about 68 s).
DEFAULT_TIMEOUT_S = builder.BUILD_TIMEOUT_BASE_S + builder.BUILD_TIMEOUT_PER_MILLION_S * SIDE * SIDE / 1e6

FIGURE_KEYS = {"PDK45_PWR": ("power_mw", "mw"), "PDK45_AREA": ("area_um2", "um2"), "PDK45_DELAY": ("delay_ns", "ns")}
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_FIGURE = re.compile(
    r"\b(PDK45_PWR|PDK45_AREA|PDK45_DELAY)\s*=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z0-9^]*)"
)


def check_integer_bits(bits):
    if isinstance(bits, bool) or bits not in INTEGER_BITS:
        raise ValueError(f"integer_bits must be one of {INTEGER_BITS}, got {bits!r}")
    return int(bits)


def check_signed(signed):
    if not isinstance(signed, (bool, np.bool_)):
        raise ValueError(
            f"an integer multiplier needs signed=True (two's-complement operands) or signed=False, got {signed!r}"
        )
    return bool(signed)


def pattern_pairs():
    """(pa, pb): the 65536 pairs of 8-bit patterns, pa = index >> 8 (the table row is the first operand)."""
    index = np.arange(SIDE * SIDE, dtype=np.uint64)
    return index >> np.uint64(8), index & np.uint64(0xFF)


def operand_values(patterns, signed):
    """Integer operand values of 8-bit patterns (two's complement when signed)."""
    patterns = np.asarray(patterns).astype(np.int64)
    return np.where(patterns >= 128, patterns - 256, patterns) if signed else patterns


def _pair_text(pa, pb, signed):
    if not signed:
        return f"operands ({pa}, {pb})"
    va, vb = (int(v) for v in operand_values([pa, pb], True))
    return f"operands ({va}, {vb}) [patterns ({pa}, {pb})]"


def products_of(raw, style, signed, label):
    """int32 products (256, 256) from a model's raw returns (int64, style as INTEGER_SIGNATURE
    counts it), reinterpreted with the declared signedness; a ModelError naming the first pair
    whose return is not a 16-bit product."""
    raw = np.asarray(raw, np.int64).reshape(-1)
    kind = "signed" if signed else "unsigned"
    if style == 3:
        fits = (raw >= 0) & (raw <= 0xFFFF)
        if signed:
            fits |= (raw >= -0x8000) & (raw < 0)  # the 64-bit sign extension of a 16-bit product
        if not fits.all():
            k = int(np.flatnonzero(~fits)[0])
            pa, pb = k >> 8, k & 0xFF
            value = int(raw[k]) & 0xFFFFFFFFFFFFFFFF
            allowed = "0..0xffff (its two's-complement pattern) or -32768..-1 sign-extended" if signed else "0..0xffff"
            raise ModelError(
                f"{label}: for {_pair_text(pa, pb, signed)} it returned {value} (0x{value:x}), more than the 16 "
                f"bits of an 8x8-bit {kind} product (a uint64_t result must be {allowed}); "
                f"{int((~fits).sum())} of {raw.size} pairs are out of range"
            )
    patterns = raw & 0xFFFF  # style 1 and 2 returns are 16-bit by type
    products = np.where(patterns >= 0x8000, patterns - 0x10000, patterns) if signed else patterns
    return products.astype(np.int32).reshape(SIDE, SIDE)


def make_products(model, symbol, signed, bits=8, label=None):
    """The int32 (256, 256) products of symbol in a CompiledModel built with INTEGER_SIGNATURE."""
    check_integer_bits(bits)
    signed = check_signed(signed)
    symbol = model.default_symbol(label) if symbol is None else check_symbol(symbol)
    style = model.style(symbol)
    pa, pb = pattern_pairs()
    raw = model.evaluate_integer(symbol, pa, pb)
    return products_of(raw, style, signed, f"multiplier {label or symbol} ({model.source}:{symbol})")


def build_products(c_file, symbol, signed, bits=8, label=None, language=None):
    """Compiles an integer model file in this process and returns its products (shipped models)."""
    check_language(language)
    model = CompiledModel(c_file, language, INTEGER_SIGNATURE)
    return make_products(model, symbol, signed, bits, label)


def build_products_isolated(c_file, symbol, signed, bits=8, label=None, timeout=None, language=None):
    """build_products() in a child process: (products, symbol, language, style); a model that
    crashes, ends the process or hangs (past timeout s, default DEFAULT_TIMEOUT_S) is a ModelError."""
    check_integer_bits(bits)
    signed = check_signed(signed)
    check_language(language)
    if symbol is not None:
        check_symbol(symbol)
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    request = {"kind": "integer", "signed": signed, "bits": int(bits)}
    products, result = builder.run_build_child(c_file, symbol, label, language, timeout, request)
    return products, result["symbol"], result["language"], result["style"]


def products_from_function(fn, signed, label):
    """The products of a Python model fn(a, b) on int64 operand values (every pair at once)."""
    signed = check_signed(signed)
    pa, pb = pattern_pairs()
    a, b = operand_values(pa, signed), operand_values(pb, signed)
    out = np.asarray(fn(a, b))
    if out.shape != a.shape or not (np.issubdtype(out.dtype, np.integer) or np.issubdtype(out.dtype, np.floating)):
        raise ModelError(
            f"{label}: a Python integer model must return one number per pair (shape {a.shape}), "
            f"got {out.dtype} with shape {out.shape}"
        )
    if np.issubdtype(out.dtype, np.floating):
        whole = np.isfinite(out) & (out == np.round(out))
        if not whole.all():
            k = int(np.flatnonzero(~whole)[0])
            raise ModelError(
                f"{label}: for {_pair_text(k >> 8, k & 0xFF, signed)} it returned {out[k]!r}, not an integer"
            )
        out = out.astype(np.int64)
    out = out.astype(np.int64)
    low, high = (-0x8000, 0x7FFF) if signed else (0, 0xFFFF)
    bad = (out < low) | (out > high)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ModelError(
            f"{label}: for {_pair_text(k >> 8, k & 0xFF, signed)} it returned {int(out[k])}, outside the 16-bit "
            f"{'signed' if signed else 'unsigned'} range [{low}, {high}]; {int(bad.sum())} of {out.size} pairs "
            "are out of range"
        )
    return out.astype(np.int32).reshape(SIDE, SIDE)


def read_figures(c_file):
    """{"power_mw", "area_um2", "delay_ns"} published in a model file's comments (EvoApproxLib's
    ``PDK45_PWR = 0.391 mW`` lines), None where absent; a ModelError for a figure in another unit."""
    figures = dict.fromkeys(key for key, _ in FIGURE_KEYS.values())
    text = Path(c_file).read_text(encoding="utf-8", errors="replace")
    for comment in _COMMENT.findall(text):
        for key, number, unit in _FIGURE.findall(comment):
            field, expected = FIGURE_KEYS[key]
            if unit and unit.lower().replace("^", "") != expected:
                raise ModelError(f"{c_file}: {key} is given in {unit!r}; approxtrain reads it in {expected}")
            figures[field] = float(number)
    return figures
