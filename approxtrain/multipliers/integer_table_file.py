"""The integer multiplier's table file: same `.amlut` name and store as float tables, own header.

Layout (little-endian)::

    magic            6 bytes  b"AMINT\\0"  (float tables: b"AMLUT\\0")
    format version   uint16   (FORMAT_VERSION)
    bits             uint8    operand width, 8
    signed           uint8    1 two's-complement operands, 0 unsigned
    name             uint16 length + UTF-8 bytes
    symbol           uint16 length + UTF-8 bytes   (C function the table came from)
    description      uint16 length + UTF-8 bytes
    power_mw         float64  (NaN: not published)
    area_um2         float64  (NaN: not published)
    delay_ns         float64  (NaN: not published)
    source SHA-256   32 bytes (of the model file; zeros when unknown)
    products SHA-256 32 bytes (of the product bytes below)
    products         2^(2 bits) int32, row-major [pattern_a, pattern_b]

Written atomically like float tables (table_file.atomic_write_bytes / publish_new_bytes);
a file that cannot be read is a table_file.DamagedTableError naming the file and the reason.
"""

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import table_file
from ._integer import INTEGER_BITS, IntegerMultiplier

MAGIC = b"AMINT\0"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
_FIXED = struct.Struct("<6sHBB")
_LENGTH = struct.Struct("<H")
_FIGURES = struct.Struct("<3d")
_DIGEST_BYTES = 32


@dataclass(frozen=True)
class IntegerTableHeader:
    name: str
    signed: bool
    bits: int = 8
    symbol: str = ""
    description: str = ""
    power_mw: float | None = None
    area_um2: float | None = None
    delay_ns: float | None = None
    source_sha256: bytes = bytes(_DIGEST_BYTES)
    products_sha256: bytes = bytes(_DIGEST_BYTES)

    @property
    def entry_count(self):
        return 1 << (2 * self.bits)

    @property
    def figures(self):
        return {"power_mw": self.power_mw, "area_um2": self.area_um2, "delay_ns": self.delay_ns}


def is_integer_file(path):
    """True when path starts with the integer table magic (a float table, or anything else, is not)."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _figure_bytes(header):
    values = []
    for key, value in header.figures.items():
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a positive number or None, got {value!r}")
        values.append(math.nan if value is None else float(value))
    return _FIGURES.pack(*values)


def encode(header, products):
    """The bytes of an integer table file; the header's products_sha256 is computed here."""
    products = np.asarray(products)
    if header.bits not in INTEGER_BITS:
        raise ValueError(f"bits must be one of {INTEGER_BITS}, got {header.bits!r}")
    side = 1 << header.bits
    if products.shape != (side, side) or not np.issubdtype(products.dtype, np.integer):
        raise ValueError(f"products must be an integer array of shape ({side}, {side}), got {products.shape}")
    body = np.ascontiguousarray(products, "<i4").tobytes()
    parts = [_FIXED.pack(MAGIC, FORMAT_VERSION, int(header.bits), int(bool(header.signed)))]
    for text in (header.name, header.symbol, header.description):
        raw = text.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"header text too long ({len(raw)} bytes): {text[:40]!r}...")
        parts += [_LENGTH.pack(len(raw)), raw]
    if len(header.source_sha256) != _DIGEST_BYTES:
        raise ValueError("source_sha256 must be 32 bytes")
    parts += [_figure_bytes(header), bytes(header.source_sha256), hashlib.sha256(body).digest(), body]
    return b"".join(parts)


def write_table(path, header, products):
    table_file.atomic_write_bytes(path, encode(header, products))


def _parse_header(data, path):
    damaged = table_file.damaged

    def need(offset, count, what):
        if len(data) < offset + count:
            raise damaged(path, f"truncated integer table file (ends inside the header's {what})")

    need(0, len(MAGIC), "magic")
    if data[: len(MAGIC)] != MAGIC:
        raise damaged(path, f"not an integer multiplier table (bad magic {bytes(data[:6])!r}, expected {MAGIC!r})")
    need(0, _FIXED.size, "fixed fields")
    _, version, bits, signed = _FIXED.unpack_from(data, 0)
    if version not in READABLE_VERSIONS:
        newer = "written by a newer approxtrain: upgrade approxtrain, or rebuild the table"
        raise damaged(
            path,
            f"integer table format version {version} is not supported (this approxtrain reads version "
            f"{', '.join(map(str, READABLE_VERSIONS))}); "
            + (newer if version > FORMAT_VERSION else "the file is damaged: rebuild the table"),
        )
    if bits not in INTEGER_BITS:
        raise damaged(path, f"operand bits {bits} unsupported (corrupted header)")
    if signed not in (0, 1):
        raise damaged(path, f"signedness code {signed} unknown (corrupted header)")
    offset = _FIXED.size
    texts = []
    for what in ("name", "symbol", "description"):
        need(offset, _LENGTH.size, what)
        (n,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        need(offset, n, what)
        try:
            texts.append(bytes(data[offset : offset + n]).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise damaged(path, f"header {what} is not UTF-8 (corrupted header)") from e
        offset += n
    need(offset, _FIGURES.size + 2 * _DIGEST_BYTES, "figures and checksums")
    figures = [None if math.isnan(v) else v for v in _FIGURES.unpack_from(data, offset)]
    offset += _FIGURES.size
    source = bytes(data[offset : offset + _DIGEST_BYTES])
    digest = bytes(data[offset + _DIGEST_BYTES : offset + 2 * _DIGEST_BYTES])
    offset += 2 * _DIGEST_BYTES
    header = IntegerTableHeader(texts[0], bool(signed), bits, texts[1], texts[2], *figures, source, digest)
    return header, offset


def read_header(path):
    """The header of an integer table file, without reading or checking the products."""
    return _parse_header(Path(path).read_bytes(), path)[0]


def read_table(path):
    """(IntegerTableHeader, int32 products (256, 256)) of a file, checking its length and checksum."""
    data = Path(path).read_bytes()
    header, offset = _parse_header(data, path)
    expected = 4 * header.entry_count
    found = len(data) - offset
    if found != expected:
        what = "truncated integer table file" if found < expected else "wrong integer table length"
        raise table_file.damaged(
            path, f"{what}: {header.entry_count} int32 products need {expected} bytes, found {found}"
        )
    body = data[offset:]
    if hashlib.sha256(body).digest() != header.products_sha256:
        raise table_file.damaged(path, "checksum mismatch: the products are corrupted; rebuild or re-register it")
    side = 1 << header.bits
    return header, np.frombuffer(body, "<i4").astype(np.int32).reshape(side, side)


def multiplier_of(header, products):
    """The IntegerMultiplier a header and its products describe."""
    return IntegerMultiplier(
        header.name,
        header.signed,
        products,
        header.bits,
        header.description,
        header.power_mw,
        header.area_um2,
        header.delay_ns,
    )
