"""Python models and tables from elsewhere: register(name, fn), register_table (ApproxTrain's .bin
layouts, .npy of approxtrain entries), export_table, and their command-line forms."""

import io

import numpy as np
import pytest

import amsim_reference as ref
import multiplier_definitions as defs
from approxtrain import core, multipliers
from approxtrain.cli import main
from approxtrain.multipliers import ModelError, TableImportError, table_file
from store_helpers import registry_files


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- Python models ------------------------------------------------------------------------------


def mitchell_numpy(m):
    """Mitchell's multiplier on float32 arrays, written with bit operations (a Python model)."""
    keep = np.uint32(((1 << m) - 1) << (23 - m))
    one = np.uint32(1 << 23)

    def model(a, b):
        ua, ub = a.view(np.uint32), b.view(np.uint32)
        s = (ua & keep) + (ub & keep)
        carry = (s >= one).astype(np.uint32)
        fraction = np.where(carry == 1, s - one, s)
        exponent = ((ua >> 23) & 0xFF) + ((ub >> 23) & 0xFF) - np.uint32(127) + carry
        return (((ua ^ ub) & np.uint32(0x80000000)) | (exponent << 23) | fraction).view(np.float32)

    return model


def test_python_callable_registers(home):
    calls = []

    def mitchell5(a, b):
        calls.append(a.size)
        return mitchell_numpy(5)(a, b)

    m = multipliers.register("pymitchell", mitchell5, mantissa_bits=5, description="numpy Mitchell")
    np.testing.assert_array_equal(m.lut, defs.entries(*defs.mitchell(5)))
    assert calls[0] == 1 << 10  # one vectorised call over the whole operand grid first
    assert (m.name, m.mantissa_bits, m.operand_rounding, m.description) == (
        "pymitchell",
        5,
        "truncate",
        "numpy Mitchell",
    )
    assert registry_files(home) == ["pymitchell.amlut"]
    assert (
        table_file.read_header(home / "multipliers" / "pymitchell.amlut").symbol
        == "test_python_callable_registers.<locals>.mitchell5"
    )
    x = np.float32([1.3, -2.6, 7e-30])
    np.testing.assert_array_equal(
        core.multiply(x, x[::-1], "pymitchell"),
        ref.multiply(x, x[::-1], defs.entries(*defs.mitchell(5)), 5, "truncate"),
    )


def test_python_lambda_with_nearest_rounding(home):
    m = multipliers.register("pyexact", lambda a, b: a * b, mantissa_bits=4, operand_rounding="nearest")
    assert m.operand_rounding == "nearest"
    np.testing.assert_array_equal(m.lut, ref.exact_table(4))


def _raises(a, b):
    raise ZeroDivisionError("no")


PY_ERRORS = [
    (
        lambda a, b: (a * b).astype(np.float64),
        "Python model bad (<lambda>) must return float32 products, got dtype float64 (compute in float32, "
        "or convert with .astype(np.float32))",
    ),
    (
        lambda a, b: (a * b)[:-1],
        "Python model bad (<lambda>) must return one product per operand pair (shape (64,)), got shape (63,)",
    ),
    (lambda a, b: 1.5, "Python model bad (<lambda>) must return a NumPy float32 array of shape (64,), got float"),
    (_raises, "Python model bad (_raises) raised ZeroDivisionError: no"),
    (lambda a, b: np.multiply(a, b, out=a), "Python model bad (<lambda>) raised ValueError: output array is read-only"),
    (
        lambda a, b: np.where(a > 1.5, np.float32(np.nan), a * b),
        r"Python model bad (<lambda>): f(1.625, 1.0) [ia=5, ib=0] = nan; every table result must be finite and in "
        "[1, 4) (24 of 64 pairs are not)",
    ),
    (
        lambda a, b: a * b + np.float32(2**-12),
        "Python model bad (<lambda>) depends on the exponent: for f(1.0, 1.0) [ia=0, ib=0] = 1.000244140625, "
        "f(2^1 a, 2^0 b) = 2.000244140625 but 2^1 f(a, b) = 2.00048828125; a table can only hold a function of "
        "the two fractions (sign and exponent must be exact)",
    ),
    (
        lambda a, b: np.abs(a * b),
        "Python model bad (<lambda>) mishandles signs: f(-1.0, 1.0) = 1.0, expected "
        "-1.0 (the sign of a product is the xor of the operand signs)",
    ),
]


@pytest.mark.parametrize("fn, message", PY_ERRORS)
def test_python_model_errors(home, fn, message):
    with pytest.raises(ModelError) as e:
        multipliers.register("bad", fn, mantissa_bits=3)
    assert str(e.value) == message
    assert registry_files(home) == []


def test_python_model_takes_no_compiler_options(home):
    with pytest.raises(ValueError, match="symbol, language and timeout apply to C and C\\+\\+ model files"):
        multipliers.register("bad", lambda a, b: a * b, mantissa_bits=3, symbol="f")


# --- importing tables ---------------------------------------------------------------------------


def test_approxtrain_mbm7_uint8_table_equals_the_shipped_mbm7(home, tmp_path):
    # MBM_7.bin as ApproxTrain's generator lays it out, built here from docs/multipliers.md's mbm7.
    carry, fraction, m = defs.mbm(7)
    data = defs.approxtrain_uint8(carry, fraction, m)
    assert len(data) == 1 << 14
    path = write_bytes(tmp_path, "MBM_7.bin", data)
    got = multipliers.register_table("mbm7_at", path, mantissa_bits=7)
    np.testing.assert_array_equal(got.lut, multipliers.get("mbm7").lut)
    assert (got.operand_rounding, got.description) == ("truncate", "imported from MBM_7.bin (approxtrain format)")
    assert registry_files(home) == ["mbm7_at.amlut"]


@pytest.mark.parametrize("definition, m", [(defs.mitchell, 7), (defs.mbm, 5), (defs.mitchell, 10)])
def test_approxtrain_uint32_tables(home, tmp_path, definition, m):
    # The older generator's layout: uint32, bit 31 = carry, the fraction in float32 bits 22..23-M.
    carry, fraction, _ = definition(m)
    path = write_bytes(tmp_path, "T.bin", defs.approxtrain_uint32(carry, fraction, m))
    got = multipliers.register_table(
        "imported", path, mantissa_bits=m, format="approxtrain", operand_rounding="nearest"
    )
    np.testing.assert_array_equal(got.lut, defs.entries(carry, fraction, m))
    assert got.operand_rounding == "nearest"


def test_npy_tables_flat_and_square(home, tmp_path):
    lut = defs.entries(*defs.drum(5))
    for name, array in (("flat", lut), ("square", lut.reshape(16, 16))):
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        np.testing.assert_array_equal(multipliers.register_table(name, path, mantissa_bits=4).lut, lut)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _bin_error(m, data):
    return f"{{path}}: an ApproxTrain table with mantissa_bits={m} has {1 << (2 * m)} entries: " + data


IMPORT_ERRORS = {
    "wrong size": (
        "MBM_7.bin",
        lambda: bytes((1 << 14) - 1),
        7,
        None,
        _bin_error(
            7,
            "16384 bytes (uint8 entries) or 65536 bytes (uint32 entries); the file has 16383 bytes "
            "(is mantissa_bits right?)",
        ),
    ),
    "wrong size, M > 7": (
        "F.bin",
        lambda: bytes(1 << 20),
        10,
        None,
        _bin_error(
            10,
            "4194304 bytes (uint32 entries; uint8 entries hold at most 7 fraction bits); the file "
            "has 1048576 bytes (is mantissa_bits right?)",
        ),
    ),
    "inconsistent carry, uint8": (
        "MIT_5.bin",
        lambda: bytes(37) + b"\x40" + bytes((1 << 10) - 38),
        5,
        None,
        "{path}: entry 37 (ia=1, ib=5) is 0x40, which has bits outside ApproxTrain's uint8 layout for "
        "mantissa_bits=5 (bit 7 = carry, bits 4..0 = fraction); 1 of 1024 entries do (is mantissa_bits right?)",
    ),
    "inconsistent carry, uint32": (
        "MIT_3.bin",
        lambda: np.full(64, 0x3F800000, "<u4").tobytes(),
        3,
        None,
        "{path}: entry 0 (ia=0, ib=0) is 0x3f800000, which has bits outside ApproxTrain's uint32 layout for "
        "mantissa_bits=3 (bit 31 = carry, bits 22..20 = fraction); 64 of 64 entries do (is mantissa_bits right?)",
    ),
    "unknown suffix": (
        "table.dat",
        lambda: bytes(16),
        2,
        None,
        "cannot tell the table format of {path} from its suffix; pass format= (--table-format / --format): one "
        "of approxtrain, npy",
    ),
    "unknown format": ("t.bin", lambda: bytes(16), 2, "csv", "table format must be one of approxtrain, npy, got 'csv'"),
    "npy dtype": (
        "t.npy",
        lambda: _npy(np.zeros(16, np.int32)),
        2,
        None,
        "{path}: table entries must be uint16 (bit 15 = carry, bits 14..0 = the top 15 fraction bits), got dtype int32",
    ),
    "npy shape": (
        "t.npy",
        lambda: _npy(np.zeros((4, 8), np.uint16)),
        2,
        None,
        "{path}: a table with mantissa_bits=2 has shape (16,) or (4, 4), got (4, 8) (is mantissa_bits right?)",
    ),
}


@pytest.mark.parametrize("case", sorted(IMPORT_ERRORS))
def test_import_errors(home, tmp_path, case):
    filename, data, m, format, message = IMPORT_ERRORS[case]
    path = write_bytes(tmp_path, filename, data())
    with pytest.raises(ValueError) as e:
        multipliers.register_table("imported", path, mantissa_bits=m, format=format)
    assert str(e.value) == message.format(path=path)
    # a file that is not what it claims is a TableImportError; a bad argument a plain ValueError
    assert isinstance(e.value, TableImportError) == (not case.startswith("unknown"))
    assert registry_files(home) == []


def test_import_missing_file(home, tmp_path):
    with pytest.raises(FileNotFoundError, match="table file not found: .*nothere.bin"):
        multipliers.register_table("imported", tmp_path / "nothere.bin", mantissa_bits=7)


# --- exporting tables ---------------------------------------------------------------------------


def test_export_mbm7_as_approxtrain_is_its_bin(home, tmp_path):
    path = multipliers.export_table("mbm7", tmp_path / "MBM_7.bin")
    assert path.read_bytes() == defs.approxtrain_uint8(*defs.mbm(7))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["MBM_7.bin"]  # no temporary left


def test_export_npy_round_trips(home, tmp_path):
    path = multipliers.export_table("bf16", tmp_path / "bf16.out", format="npy")
    array = np.load(path)
    assert array.dtype == np.uint16 and array.shape == (1 << 14,)
    np.testing.assert_array_equal(array, multipliers.get("bf16").lut)
    again = multipliers.register_table("bf16_again", path, mantissa_bits=7, format="npy", operand_rounding="nearest")
    np.testing.assert_array_equal(again.lut, multipliers.get("bf16").lut)


# bf16's products are exact: only 456 of the 16384 products of two 8-bit significands have no fraction
# bits below the top 7 (counted independently: (128 + ia)(128 + ib) with its low 7 or 8 bits zero).
@pytest.mark.parametrize(
    "name, message",
    [
        (
            "bf16",
            "bf16 cannot be written in ApproxTrain's format: entry 129 (ia=1, ib=1) is 0x0202, whose product has "
            "fraction bits below the top 7 (ApproxTrain's entries hold the carry and 7 fraction bits); 15928 of "
            "16384 entries do; export it as npy",
        ),
        (
            "fp16m",
            "fp16m cannot be written in ApproxTrain's format: its uint8 entries hold at most 7 fraction bits "
            "and fp16m has mantissa_bits=10; export it as npy",
        ),
    ],
)
def test_export_of_a_table_that_does_not_fit(home, tmp_path, name, message):
    target = tmp_path / "out.bin"
    with pytest.raises(ValueError) as e:
        multipliers.export_table(name, target)
    assert str(e.value) == message
    assert not target.exists() and not any(p.name.startswith(".out.bin") for p in tmp_path.iterdir())


def test_export_replaces_atomically(home, tmp_path, monkeypatch):
    multipliers.get("mitchell7")  # loaded (or cached) before os.replace fails
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(table_file.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        multipliers.export_table("mitchell7", target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["t.bin"]


def test_export_into_a_missing_directory(home, tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .*nowhere does not exist"):
        multipliers.export_table("mbm7", tmp_path / "nowhere" / "t.bin")


# --- the command line ---------------------------------------------------------------------------


def test_cli_import_and_export(home, tmp_path, capsys):
    path = write_bytes(tmp_path, "MIT_7.bin", defs.approxtrain_uint8(*defs.mitchell(7)))
    assert (
        main(
            [
                "multipliers",
                "add",
                "mit7",
                "--from-table",
                str(path),
                "--table-format",
                "approxtrain",
                "--mantissa-bits",
                "7",
            ]
        )
        == 0
    )
    assert "registered mit7: M=7, rounding=truncate, 16384 entries" in capsys.readouterr().out
    np.testing.assert_array_equal(multipliers.get("mit7").lut, multipliers.get("mitchell7").lut)
    out = tmp_path / "mit7.npy"
    assert main(["multipliers", "export", "mit7", "--format", "npy", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    np.testing.assert_array_equal(np.load(out), multipliers.get("mitchell7").lut)
    back = tmp_path / "back.bin"
    assert main(["multipliers", "export", "mit7", str(back)]) == 0
    assert back.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["multipliers", "add", "x", "--mantissa-bits", "7"], "give either a model FILE or --from-table TABLE"),
        (
            ["multipliers", "add", "x", "m.c", "--from-table", "t.bin", "-m", "7"],
            "give either a model FILE or --from-table TABLE",
        ),
        (
            ["multipliers", "add", "x", "--from-table", "t.bin", "-m", "7", "--symbol", "f"],
            "--symbol apply to a model FILE, not to --from-table",
        ),
        (
            ["multipliers", "add", "x", "m.c", "-m", "7", "--table-format", "npy"],
            "--table-format applies to --from-table only",
        ),
        (
            ["multipliers", "export", "bf16", "bf16.bin"],
            "bf16 cannot be written in ApproxTrain's format: entry 129 (ia=1, ib=1) is 0x0202, whose product has "
            "fraction bits below the top 7 (ApproxTrain's entries hold the carry and 7 fraction bits); 15928 of "
            "16384 entries do; export it as npy",
        ),
    ],
)
def test_cli_errors(home, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err == f"approxtrain {argv[0]}: error: {message}\n"
    assert registry_files(home) == [] and not (tmp_path / "bf16.bin").exists()


def test_cli_wrong_size_bin(home, tmp_path, capsys):
    path = write_bytes(tmp_path, "MBM_7.bin", bytes(100))
    assert main(["multipliers", "add", "x", "--from-table", str(path), "-m", "7"]) == 2
    assert capsys.readouterr().err == (
        f"approxtrain multipliers: error: {path}: an ApproxTrain table with mantissa_bits=7 has 16384 entries: "
        "16384 bytes (uint8 entries) or 65536 bytes (uint32 entries); the file has 100 bytes (is mantissa_bits "
        "right?)\n"
    )
