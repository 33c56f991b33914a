"""The .amlut table file: round trip, and clear errors for damaged files."""

import os

import numpy as np
import pytest

from approxtrain.multipliers import Multiplier, TableFileError, table_file
from approxtrain.multipliers.table_file import TableHeader, read_header, read_table, write_table


def sample(m=5, name="demo"):
    entries = np.random.default_rng(m).integers(0, 1 << 16, 1 << (2 * m), dtype=np.uint16)
    header = TableHeader(name, m, "nearest", "demo_fn", "a demo table, ünïcode", bytes(range(32)))
    return header, entries


def test_round_trip(tmp_path):
    header, entries = sample()
    path = tmp_path / "demo.amlut"
    write_table(path, header, entries)
    got_header, got = read_table(path)
    np.testing.assert_array_equal(got, entries)
    assert got.dtype == np.uint16
    assert (
        got_header.name,
        got_header.mantissa_bits,
        got_header.operand_rounding,
        got_header.symbol,
        got_header.description,
        got_header.source_sha256,
    ) == (header.name, 5, "nearest", "demo_fn", header.description, bytes(range(32)))
    assert read_header(path) == got_header


def test_layout_is_little_endian_after_the_header(tmp_path):
    header, entries = sample(m=2)
    path = tmp_path / "t.amlut"
    write_table(path, header, entries)
    data = path.read_bytes()
    assert data.startswith(b"AMLUT\0")
    assert data[-32:] == entries.astype("<u2").tobytes()


def written(tmp_path, m=5):
    header, entries = sample(m)
    path = tmp_path / "t.amlut"
    write_table(path, header, entries)
    return path, path.read_bytes()


@pytest.mark.parametrize("cut", [3, 10, 20, 100])
def test_truncated_header(tmp_path, cut):
    path, data = written(tmp_path)
    path.write_bytes(data[:cut])
    with pytest.raises(TableFileError, match="truncated table file"):
        read_table(path)


def test_truncated_entries(tmp_path):
    path, data = written(tmp_path)
    path.write_bytes(data[:-7])
    with pytest.raises(TableFileError, match=r"truncated table file: mantissa_bits=5 needs 1024 entries"):
        read_table(path)


def test_wrong_length(tmp_path):
    path, data = written(tmp_path)
    path.write_bytes(data + b"\0\0")
    with pytest.raises(TableFileError, match="wrong table length.*2 extra"):
        read_table(path)


def test_header_m_disagreeing_with_entries(tmp_path):
    path, data = written(tmp_path, m=5)
    path.write_bytes(data[:8] + bytes([6]) + data[9:])  # M byte says 6: 4096 entries expected
    with pytest.raises(TableFileError, match="mantissa_bits=6 needs 4096 entries"):
        read_table(path)


def test_corrupted_entries_fail_the_checksum(tmp_path):
    path, data = written(tmp_path)
    damaged = bytearray(data)
    damaged[-100] ^= 0x10
    path.write_bytes(bytes(damaged))
    with pytest.raises(TableFileError, match="checksum mismatch"):
        read_table(path)


def test_bad_magic(tmp_path):
    path = tmp_path / "x.amlut"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(TableFileError, match="not an approxtrain table"):
        read_table(path)


def test_unsupported_version(tmp_path):
    path, data = written(tmp_path)
    path.write_bytes(data[:6] + (99).to_bytes(2, "little") + data[8:])
    with pytest.raises(TableFileError, match="version 99 is not supported"):
        read_table(path)


@pytest.mark.parametrize(
    "offset, value, message", [(8, 0, "mantissa_bits 0"), (8, 12, "mantissa_bits 12"), (9, 7, "rounding code 7")]
)
def test_corrupted_header_fields(tmp_path, offset, value, message):
    path, data = written(tmp_path)
    path.write_bytes(data[:offset] + bytes([value]) + data[offset + 1 :])
    with pytest.raises(TableFileError, match=message):
        read_table(path)


def test_encode_rejects_wrong_tables():
    header, entries = sample(m=3)
    with pytest.raises(ValueError, match="has 64 entries, got 63"):
        table_file.encode(header, entries[:-1])
    with pytest.raises(ValueError, match="uint16"):
        table_file.encode(header, entries.astype(np.int32))


def test_multiplier_record_rejects_wrong_length():
    with pytest.raises(ValueError, match="must have 16384 entries, got 100"):
        Multiplier("x", 7, "truncate", np.zeros(100, np.uint16))


def test_write_is_atomic(tmp_path, monkeypatch):
    path, old = written(tmp_path)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(table_file.os, "replace", failing_replace)
    header, entries = sample(m=4)
    with pytest.raises(OSError, match="disk full"):
        write_table(path, header, entries)
    assert path.read_bytes() == old  # the old table is intact
    assert os.listdir(tmp_path) == ["t.amlut"]  # no temporary file left behind
