"""Tables in other layouts: import them as approxtrain entries, export entries to them.

approxtrain's own entry (docs/design.md, "Number semantics"): uint16, bit 15 = carry,
bits 14..0 = the top 15 fraction bits of the product; index ia * 2^M + ib,
ia from the left operand.

Formats:

``approxtrain``
    The ``.bin`` lookup tables of the ApproxTrain reference implementation
    (its lut generator), raw little-endian entries with no header, row-major
    in the left operand (index ia * 2^M + ib), in one of two widths told
    apart by the file's size:

    - uint8 (2^(2M) bytes, M <= 7): bit 7 = carry, bits M-1..0 = the top M
      fraction bits of the product; bits 6..M are zero.
    - uint32 (4 * 2^(2M) bytes, older generator): bit 31 = carry, the top M
      fraction bits of the product in their float32 positions (bits
      22..23-M); every other bit is zero.

    An M-bit fraction f becomes the entry f << (15 - M).  Export writes the
    uint8 width, so only tables of M <= 7 whose entries have no fraction bits
    below the top M (results with M fraction bits) fit it.

``npy``
    A NumPy ``.npy`` file of approxtrain's uint16 entries, shape (2^(2M),)
    or (2^M, 2^M) ([ia, ib]).  Export writes shape (2^(2M),).
"""

import io
from pathlib import Path

import numpy as np

FORMATS = ("approxtrain", "npy")
_SUFFIX_FORMATS = {".bin": "approxtrain", ".npy": "npy"}
APPROXTRAIN_UINT8_MAX_M = 7
TFAPPROX_MAP_BYTES = 2 * 256 * 256  # integer_formats.py: TFApprox's uint16 multiplication map


class TableImportError(ValueError):
    """A table file that cannot be imported (wrong size, bits outside its layout, ...)."""


def table_format(path, format=None):
    """The format of a table file: as given, else from its suffix (.bin: approxtrain, .npy: npy)."""
    if format is None:
        format = _SUFFIX_FORMATS.get(Path(path).suffix.lower())
        if format is None:
            raise ValueError(
                f"cannot tell the table format of {path} from its suffix; pass format= "
                f"(--table-format / --format): one of {', '.join(FORMATS)}"
            )
    if format not in FORMATS:
        raise ValueError(f"table format must be one of {', '.join(FORMATS)}, got {format!r}")
    return format


def _pair(index, m):
    return f"entry {index} (ia={index >> m}, ib={index & ((1 << m) - 1)})"


def _approxtrain_layout(width, m):
    """(mask of the bits an entry may have, carry bit, text describing the layout)."""
    if width == 8:
        return (1 << 7) | ((1 << m) - 1), 7, f"bit 7 = carry, bits {m - 1}..0 = fraction"
    shift = 23 - m
    return (1 << 31) | (((1 << m) - 1) << shift), 31, f"bit 31 = carry, bits 22..{shift} = fraction"


def read_approxtrain(path, mantissa_bits):
    """approxtrain entries of an ApproxTrain .bin table (uint8 or uint32 entries, by size)."""
    m = mantissa_bits
    data = Path(path).read_bytes()
    count = 1 << (2 * m)
    if len(data) == count and m <= APPROXTRAIN_UINT8_MAX_M:
        width, raw = 8, np.frombuffer(data, np.uint8).astype(np.uint32)
    elif len(data) == 4 * count:
        width, raw = 32, np.frombuffer(data, "<u4").astype(np.uint32)
    else:
        sizes = (
            f"{count} bytes (uint8 entries) or {4 * count} bytes (uint32 entries)"
            if m <= APPROXTRAIN_UINT8_MAX_M
            else f"{4 * count} bytes (uint32 entries; uint8 entries hold at most {APPROXTRAIN_UINT8_MAX_M} "
            "fraction bits)"
        )
        tfapprox = (
            " (131072 bytes is the size of a TFApprox 8-bit multiplication map: import it as an integer "
            "multiplier, integer_bits=8 and signed=, --integer 8 --signed|--unsigned)"
            if len(data) == TFAPPROX_MAP_BYTES
            else ""
        )
        raise TableImportError(
            f"{path}: an ApproxTrain table with mantissa_bits={m} has {count} entries: "
            f"{sizes}; the file has {len(data)} bytes (is mantissa_bits right?){tfapprox}"
        )
    allowed, carry_bit, layout = _approxtrain_layout(width, m)
    stray = (raw & np.uint32(~allowed & 0xFFFFFFFF)) != 0
    if stray.any():
        k = int(np.flatnonzero(stray)[0])
        raise TableImportError(
            f"{path}: {_pair(k, m)} is 0x{int(raw[k]):0{width // 4}x}, which has bits outside ApproxTrain's "
            f"uint{width} layout for mantissa_bits={m} ({layout}); {int(stray.sum())} of {count} entries do "
            "(is mantissa_bits right?)"
        )
    carry = raw >> np.uint32(carry_bit)
    fraction = raw & np.uint32((1 << m) - 1) if width == 8 else (raw >> np.uint32(23 - m)) & np.uint32((1 << m) - 1)
    return ((carry << np.uint32(15)) | (fraction << np.uint32(15 - m))).astype(np.uint16)


def read_npy(path, mantissa_bits):
    """approxtrain entries of a .npy file of uint16 entries."""
    m = mantissa_bits
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise TableImportError(f"{path} is not a NumPy .npy file of table entries: {e}") from e
    if not isinstance(array, np.ndarray):
        raise TableImportError(f"{path} holds several arrays (an .npz?); expected one .npy array of entries")
    if array.dtype != np.uint16:
        raise TableImportError(
            f"{path}: table entries must be uint16 (bit 15 = carry, bits 14..0 = the top 15 "
            f"fraction bits), got dtype {array.dtype}"
        )
    side = 1 << m
    if array.shape not in ((side * side,), (side, side)):
        raise TableImportError(
            f"{path}: a table with mantissa_bits={m} has shape ({side * side},) or "
            f"({side}, {side}), got {array.shape} (is mantissa_bits right?)"
        )
    return np.ascontiguousarray(array.reshape(-1), dtype=np.uint16)


def read_entries(path, format, mantissa_bits):
    """approxtrain uint16 entries of a table file in the given format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    reader = read_approxtrain if table_format(path, format) == "approxtrain" else read_npy
    return reader(path, mantissa_bits)


def approxtrain_bytes(entries, mantissa_bits, name):
    """The uint8 ApproxTrain .bin bytes of a table; ValueError if the table does not fit that layout."""
    m = mantissa_bits
    if m > APPROXTRAIN_UINT8_MAX_M:
        raise ValueError(
            f"{name} cannot be written in ApproxTrain's format: its uint8 entries hold at most "
            f"{APPROXTRAIN_UINT8_MAX_M} fraction bits and {name} has mantissa_bits={m}; "
            "export it as npy"
        )
    entries = np.asarray(entries, np.uint32)
    low = entries & np.uint32((1 << (15 - m)) - 1)
    if low.any():
        k = int(np.flatnonzero(low)[0])
        raise ValueError(
            f"{name} cannot be written in ApproxTrain's format: {_pair(k, m)} is 0x{int(entries[k]):04x}, whose "
            f"product has fraction bits below the top {m} (ApproxTrain's entries hold the carry and {m} "
            f"fraction bits); {int((low != 0).sum())} of {entries.size} entries do; export it as npy"
        )
    carry = entries >> np.uint32(15)
    fraction = (entries & np.uint32(0x7FFF)) >> np.uint32(15 - m)
    return ((carry << np.uint32(7)) | fraction).astype(np.uint8).tobytes()


def npy_bytes(entries):
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(entries, np.uint16), allow_pickle=False)
    return buffer.getvalue()


def export_bytes(entries, mantissa_bits, format, name):
    if format not in FORMATS:
        raise ValueError(f"table format must be one of {', '.join(FORMATS)}, got {format!r}")
    return approxtrain_bytes(entries, mantissa_bits, name) if format == "approxtrain" else npy_bytes(entries)
