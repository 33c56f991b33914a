"""IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw; numpy only.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension; the data follows, row-major.
"""

import gzip
import os

import numpy as np

_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path):
    """File contents, decompressed when the file is gzip (by content, not by name)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip file ({e})") from None
    return data


def read_idx(path, expected_ndim=None):
    """Returns the array stored in IDX file `path`; ValueError naming the file when malformed."""
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(f"{path}: expected an IDX file with {expected_ndim} dimension(s), found {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise ValueError(f"{path}: IDX file is {what}: shape {shape} needs {expected} data bytes, found {found}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_file(directory, stems):
    """First existing file among stem, stem.gz for each stem; None if there is none."""
    for stem in stems:
        for name in (stem + ".gz", stem):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def write_idx(path, array, compress=None):
    """Writes `array` (uint8) as an IDX file; gzip when compress or path ends in .gz (fixtures, tools)."""
    array = np.ascontiguousarray(array, np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()
    if compress or (compress is None and path.endswith(".gz")):
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)
