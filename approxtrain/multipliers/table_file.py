"""The `.amlut` table file: a small header, then the uint16 entries.

Layout (little-endian)::

    magic            6 bytes  b"AMLUT\\0"
    format version   uint16   (FORMAT_VERSION)
    mantissa_bits    uint8    M, 1..11
    operand rounding uint8    0 truncate, 1 nearest
    name             uint16 length + UTF-8 bytes
    symbol           uint16 length + UTF-8 bytes   (C function the table came from)
    description      uint16 length + UTF-8 bytes
    source SHA-256   32 bytes (of the C file; zeros when unknown)
    entries SHA-256  32 bytes (of the entry bytes below)
    entries          2^(2M) uint16

Files are written atomically (temporary file in the same directory, then
os.replace), so a reader sees the old file or the new one, never half of one.
publish_new_bytes() instead links the temporary file to its name, which fails
when the name exists: a new registration never replaces a file silently.

This module owns the format's version: READABLE_VERSIONS lists the versions a
reader accepts; a file of any other version is a DamagedTableError saying
which version it is and what to do.
"""

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._multiplier import ROUNDINGS

MAGIC = b"AMLUT\0"
FORMAT_VERSION = 1  # the version written
READABLE_VERSIONS = (1,)  # the versions read: keep every earlier one readable when the format changes
SUFFIX = ".amlut"
_FIXED = struct.Struct("<6sHBB")
_LENGTH = struct.Struct("<H")
_DIGEST_BYTES = 32


class TableFileError(ValueError):
    """A table file that cannot be read or used."""


class DamagedTableError(TableFileError):
    """A table file that cannot be read: bad magic, unsupported version, truncated, checksum mismatch,
    or a file whose name is not the multiplier's name inside it.  The message names the file and
    the reason; ``path`` and ``reason`` hold them apart (for listings)."""

    def __init__(self, message, path=None, reason=None):
        super().__init__(message)
        self.path = path
        self.reason = reason if reason is not None else message


def damaged(path, reason):
    """The DamagedTableError of file path, for reason."""
    return DamagedTableError(f"{path}: {reason}", path, reason)


@dataclass(frozen=True)
class TableHeader:
    name: str
    mantissa_bits: int
    operand_rounding: str
    symbol: str = ""
    description: str = ""
    source_sha256: bytes = bytes(_DIGEST_BYTES)
    entries_sha256: bytes = bytes(_DIGEST_BYTES)

    @property
    def entry_count(self):
        return 1 << (2 * self.mantissa_bits)


def encode(header, entries):
    """The bytes of a table file; the header's entries_sha256 is computed here."""
    entries = np.asarray(entries)
    if entries.dtype != np.uint16 or entries.ndim != 1:
        raise ValueError(f"table entries must be a 1-D uint16 array, got {entries.dtype} with shape {entries.shape}")
    if not isinstance(header.mantissa_bits, (int, np.integer)) or not 1 <= header.mantissa_bits <= 11:
        raise ValueError(f"mantissa_bits must be in [1, 11], got {header.mantissa_bits!r}")
    if entries.size != header.entry_count:
        raise ValueError(
            f"a table with mantissa_bits={header.mantissa_bits} has {header.entry_count} entries, got {entries.size}"
        )
    if header.operand_rounding not in ROUNDINGS:
        raise ValueError(f"operand rounding must be one of {ROUNDINGS}, got {header.operand_rounding!r}")
    if len(header.source_sha256) != _DIGEST_BYTES:
        raise ValueError("source_sha256 must be 32 bytes")
    body = entries.astype("<u2").tobytes()
    parts = [_FIXED.pack(MAGIC, FORMAT_VERSION, int(header.mantissa_bits), ROUNDINGS.index(header.operand_rounding))]
    for text in (header.name, header.symbol, header.description):
        raw = text.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"header text too long ({len(raw)} bytes): {text[:40]!r}...")
        parts += [_LENGTH.pack(len(raw)), raw]
    parts += [bytes(header.source_sha256), hashlib.sha256(body).digest(), body]
    return b"".join(parts)


def atomic_write_bytes(path, data):
    """Writes data to path through a temporary file in the same directory and os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; tables are shared data
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def publish_new_bytes(path, data):
    """Writes data to path, which must not exist: a temporary file in the same directory is linked
    to path (os.link fails with FileExistsError when the name exists, even if another process
    made it a moment ago), then the temporary name is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def write_table(path, header, entries):
    """Writes a table file atomically."""
    atomic_write_bytes(path, encode(header, entries))


def check_version(path, version):
    """A DamagedTableError unless this approxtrain reads table format version."""
    if version in READABLE_VERSIONS:
        return
    readable = ", ".join(map(str, READABLE_VERSIONS))
    if version > FORMAT_VERSION:
        raise damaged(
            path,
            f"table format version {version} is not supported: the file was written by a newer "
            f"approxtrain (this one reads version {readable}); upgrade approxtrain, or rebuild "
            "the table with this one",
        )
    raise damaged(
        path,
        f"table format version {version} is not supported (this approxtrain reads version "
        f"{readable}); the file is damaged or not a table: rebuild the table",
    )


def _parse_header(data, path):
    """(TableHeader, offset of the entries) from the leading bytes of a file."""

    def need(offset, count, what):
        if len(data) < offset + count:
            raise damaged(path, f"truncated table file (ends inside the header's {what})")

    need(0, len(MAGIC), "magic")
    if data[: len(MAGIC)] != MAGIC:
        raise damaged(path, f"not an approxtrain table (bad magic {bytes(data[: len(MAGIC)])!r}, expected {MAGIC!r})")
    need(0, _FIXED.size, "fixed fields")
    _, version, m, rounding = _FIXED.unpack_from(data, 0)
    check_version(path, version)
    if not 1 <= m <= 11:
        raise damaged(path, f"mantissa_bits {m} out of range [1, 11] (corrupted header)")
    if rounding >= len(ROUNDINGS):
        raise damaged(path, f"operand rounding code {rounding} unknown (corrupted header)")
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
    need(offset, 2 * _DIGEST_BYTES, "checksums")
    source = bytes(data[offset : offset + _DIGEST_BYTES])
    digest = bytes(data[offset + _DIGEST_BYTES : offset + 2 * _DIGEST_BYTES])
    offset += 2 * _DIGEST_BYTES
    header = TableHeader(texts[0], m, ROUNDINGS[rounding], texts[1], texts[2], source, digest)
    return header, offset


def read_header(path):
    """The header of a table file, without reading or checking the entries."""
    with open(path, "rb") as f:
        data = f.read(4096)  # any usual header; longer texts need the rest of the file
        try:
            return _parse_header(data, path)[0]
        except TableFileError:
            if len(data) < 4096:
                raise
            return _parse_header(data + f.read(), path)[0]


def read_table(path):
    """(TableHeader, entries) of a table file, checking its length and checksum."""
    data = Path(path).read_bytes()
    header, offset = _parse_header(data, path)
    expected = 2 * header.entry_count
    found = len(data) - offset
    if found < expected:
        raise damaged(
            path,
            f"truncated table file: mantissa_bits={header.mantissa_bits} needs "
            f"{header.entry_count} entries ({expected} bytes), found {found} bytes",
        )
    if found > expected:
        raise damaged(
            path,
            f"wrong table length: mantissa_bits={header.mantissa_bits} needs "
            f"{expected} bytes of entries, found {found} ({found - expected} extra)",
        )
    body = data[offset:]
    if hashlib.sha256(body).digest() != header.entries_sha256:
        raise damaged(path, "checksum mismatch: the table entries are corrupted; rebuild or re-register it")
    entries = np.frombuffer(body, dtype="<u2").astype(np.uint16)
    return header, entries
