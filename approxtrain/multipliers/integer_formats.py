"""Integer multiplier tables in other layouts: import them as products, export products to them.

Formats:

``tfapprox``
    TFApprox's multiplication maps (``mul_map_file``, e.g. ``mul8u_L40.bin``): 2^16 raw
    little-endian uint16 values, no header, 131072 bytes.  Value ``(a << 8) | b`` is the
    product of operand codes a and b; TFApprox's kernels look up
    ``table[(input_code << 8) | filter_code]``, so the row (a) is the layer's input and the
    column (b) the filter, as approxtrain's row (the first operand, the activation).  TFApprox
    multiplies unsigned codes; for a signed multiplier the codes are two's-complement patterns
    and each value is the 16-bit two's-complement pattern of the product (reinterpreted).

``npy``
    A NumPy ``.npy`` file of the products as integers, shape (256, 256) ``[pattern_a,
    pattern_b]`` or (65536,); export writes int32 of shape (256, 256).
"""

import io
from pathlib import Path

import numpy as np

from .table_formats import TableImportError

FORMATS = ("tfapprox", "npy")
_SUFFIX_FORMATS = {".bin": "tfapprox", ".npy": "npy"}
SIDE = 256


def table_format(path, format=None):
    """The format of an integer table file: as given, else from its suffix (.bin: tfapprox, .npy: npy)."""
    if format is None:
        format = _SUFFIX_FORMATS.get(Path(path).suffix.lower())
        if format is None:
            raise ValueError(
                f"cannot tell the table format of {path} from its suffix; pass format= "
                f"(--table-format / --format): one of {', '.join(FORMATS)}"
            )
    if format not in FORMATS:
        raise ValueError(f"integer table format must be one of {', '.join(FORMATS)}, got {format!r}")
    return format


def _from_patterns(patterns, signed):
    patterns = patterns.astype(np.int64)
    return np.where(patterns >= 0x8000, patterns - 0x10000, patterns) if signed else patterns


def read_tfapprox(path, signed):
    data = Path(path).read_bytes()
    if len(data) != 2 * SIDE * SIDE:
        raise TableImportError(
            f"{path}: a TFApprox multiplication map is {SIDE * SIDE} uint16 products ({2 * SIDE * SIDE} bytes); "
            f"the file has {len(data)} bytes"
        )
    patterns = np.frombuffer(data, "<u2")
    return _from_patterns(patterns, signed).astype(np.int32).reshape(SIDE, SIDE)


def read_npy(path, signed):
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise TableImportError(f"{path} is not a NumPy .npy file of products: {e}") from e
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
        raise TableImportError(f"{path}: products must be an integer array, got {getattr(array, 'dtype', array)}")
    if array.shape not in ((SIDE, SIDE), (SIDE * SIDE,)):
        raise TableImportError(f"{path}: products have shape ({SIDE}, {SIDE}) or ({SIDE * SIDE},), got {array.shape}")
    low, high = (-0x8000, 0x7FFF) if signed else (0, 0xFFFF)
    array = array.astype(np.int64).reshape(SIDE, SIDE)
    bad = (array < low) | (array > high)
    if bad.any():
        pa, pb = (int(v) for v in np.argwhere(bad)[0])
        raise TableImportError(
            f"{path}: the product of patterns ({pa}, {pb}) is {int(array[pa, pb])}, outside the 16-bit "
            f"{'signed' if signed else 'unsigned'} range [{low}, {high}] (is signed right?)"
        )
    return array.astype(np.int32)


def read_products(path, format, signed):
    """int32 (256, 256) products of a table file in the given format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    reader = read_tfapprox if table_format(path, format) == "tfapprox" else read_npy
    return reader(path, signed)


def export_bytes(products, format):
    """The bytes of products in format (products hold 16-bit values: any multiplier fits both)."""
    products = np.asarray(products, np.int64)
    if table_format("", format) == "tfapprox":
        return (products & 0xFFFF).astype("<u2").tobytes()
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(products, np.int32), allow_pickle=False)
    return buffer.getvalue()
