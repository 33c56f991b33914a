"""The registry: names, get, register/unregister (atomic), shipped tables built on first use."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import core, multipliers
from approxtrain.multipliers import Multiplier, registry, table_file
from store_helpers import registry_files

MODELS = Path(__file__).resolve().parents[1] / "multipliers"
EXACT = "#include <math.h>\nfloat mine(float a, float b) { return a * b; }\n"


def c_file(tmp_path, body=EXACT, name="mine.c"):
    path = tmp_path / name
    path.write_text(body)
    return path


def test_names_sorted_and_shipped(home):
    names = multipliers.names()
    assert names == sorted(names)
    assert {
        "bf16",
        "bf16_trunc",
        "mbm1",
        "mbm3",
        "mbm5",
        "mbm7",
        "mitchell1",
        "mitchell3",
        "mitchell5",
        "mitchell7",
        "drum4",
        "drum5",
        "drum6",
        "fp16m",
    } <= set(names)
    assert "fp32" not in names
    assert multipliers.user_names() == []


def test_get_returns_a_cached_multiplier(home):
    m = multipliers.get("mbm7")
    assert isinstance(m, Multiplier) and (m.name, m.mantissa_bits, m.operand_rounding) == ("mbm7", 7, "truncate")
    assert multipliers.get("mbm7") is m
    assert not m.lut.flags.writeable


def test_fp32_is_not_a_table(home):
    with pytest.raises(ValueError, match="'fp32' is not a table: it means the native"):
        multipliers.get("fp32")


def test_unknown_name_lists_the_available(home):
    with pytest.raises(ValueError, match=r"unknown multiplier 'mbm8'; available: bf16, .*mbm7.*mitchell7"):
        multipliers.get("mbm8")
    with pytest.raises(TypeError, match="must be a str"):
        multipliers.get(7)


def test_register_get_and_use(home, tmp_path):
    m = multipliers.register("mine", c_file(tmp_path), mantissa_bits=6, description="exact, 6 bits")
    assert (m.name, m.mantissa_bits, m.operand_rounding, m.description) == ("mine", 6, "truncate", "exact, 6 bits")
    np.testing.assert_array_equal(m.lut, ref.exact_table(6))
    assert registry_files(home) == ["mine.amlut", "mine.c"]
    assert (home / "multipliers" / "mine.c").read_text() == EXACT
    assert "mine" in multipliers.names() and multipliers.user_names() == ["mine"]
    assert multipliers.get("mine") is m
    d = multipliers.describe("mine")
    assert (d["kind"], d["mantissa_bits"], d["description"]) == ("user", 6, "exact, 6 bits")
    x = np.float32([1.2345678, -3.75, 1e-3])
    np.testing.assert_array_equal(core.multiply(x, x, "mine"), ref.multiply(x, x, ref.exact_table(6), 6, "truncate"))


def test_register_with_symbol_and_nearest(home, tmp_path):
    m = multipliers.register("other", c_file(tmp_path), mantissa_bits=3, operand_rounding="nearest", symbol="mine")
    assert m.operand_rounding == "nearest"
    assert table_file.read_header(home / "multipliers" / "other.amlut").symbol == "mine"


@pytest.mark.parametrize(
    "name, message",
    [
        ("mbm7", "shipped multiplier and cannot be replaced"),
        ("fp32", "reserved for the native"),
        ("Mine", "invalid multiplier name"),
        ("1x", "invalid multiplier name"),
        ("a-b", "invalid multiplier name"),
        ("../evil", "invalid multiplier name"),
        ("", "invalid multiplier name"),
    ],
)
def test_register_refuses_bad_names(home, tmp_path, name, message):
    with pytest.raises(ValueError, match=message):
        multipliers.register(name, c_file(tmp_path), mantissa_bits=7)
    assert registry_files(home) == []


def test_register_refuses_to_overwrite_unless_asked(home, tmp_path):
    multipliers.register("mine", c_file(tmp_path), mantissa_bits=7)
    with pytest.raises(ValueError, match="already registered"):
        multipliers.register("mine", c_file(tmp_path), mantissa_bits=5)
    assert multipliers.get("mine").mantissa_bits == 7
    m = multipliers.register("mine", c_file(tmp_path), mantissa_bits=5, overwrite=True)
    assert m.mantissa_bits == 5 and multipliers.get("mine") is m


BAD_MODELS = {
    "does not compile": ("float mine(float a, float b) { return a * ; }\n", {}),
    "no function 'mine'": ("float theirs(float a, float b) { return a * b; }\n", {"symbol": "mine"}),
    "= nan": ("float mine(float a, float b) { return NAN; }\n", {}),
    r"finite and in \[1, 4\)": ("float mine(float a, float b) { return 8 * a * b; }\n", {}),
    "depends on the exponent": ("float mine(float a, float b) { return a * b + 0x1p-10f; }\n", {}),
    "mishandles signs": ("float mine(float a, float b) { return fabsf(a * b); }\n", {}),
    "mantissa_bits must be": (EXACT, {"mantissa_bits": 12}),
    "rounding must be": (EXACT, {"operand_rounding": "stochastic"}),
}


@pytest.mark.parametrize("message", sorted(BAD_MODELS))
def test_failed_registration_leaves_nothing(home, tmp_path, message):
    body, kwargs = BAD_MODELS[message]
    kwargs = {"mantissa_bits": 7, **kwargs}
    with pytest.raises(ValueError, match=message):
        multipliers.register("mine", c_file(tmp_path, "#include <math.h>\n" + body), **kwargs)
    assert registry_files(home) == []
    assert "mine" not in multipliers.names()


def test_failure_writing_the_table_undoes_the_source_copy(home, tmp_path, monkeypatch):
    real = table_file.atomic_write_bytes

    def failing(path, data):
        if str(path).endswith(".amlut"):
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(table_file, "atomic_write_bytes", failing)
    monkeypatch.setattr(table_file, "publish_new_bytes", failing)  # how a new name's table is written
    with pytest.raises(OSError, match="disk full"):
        multipliers.register("mine", c_file(tmp_path), mantissa_bits=7)
    assert registry_files(home) == []


def test_missing_c_file(home, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.c"):
        multipliers.register("mine", tmp_path / "nothere.c", mantissa_bits=7)


def test_unregister(home, tmp_path):
    multipliers.register("mine", c_file(tmp_path), mantissa_bits=4)
    multipliers.get("mine")
    multipliers.unregister("mine")
    assert registry_files(home) == []
    with pytest.raises(ValueError, match="unknown multiplier 'mine'"):
        multipliers.get("mine")
    with pytest.raises(ValueError, match="no user multiplier 'mine'"):
        multipliers.unregister("mine")
    with pytest.raises(ValueError, match="shipped multiplier"):
        multipliers.unregister("mbm7")


def test_corrupted_user_table_is_a_clear_error(home, tmp_path):
    multipliers.register("mine", c_file(tmp_path), mantissa_bits=4)
    path = home / "multipliers" / "mine.amlut"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(table_file.TableFileError, match="checksum mismatch"):
        multipliers.get("mine")


def test_shipped_table_is_built_on_first_use_without_package_tables(home, tmp_path, monkeypatch):
    packaged = multipliers.get("mbm5").lut.copy()
    monkeypatch.setattr(registry, "PACKAGE_TABLES", tmp_path / "no_tables")
    monkeypatch.setattr(registry, "_resolved", {})  # forget where get() found it
    m = multipliers.get("mbm5")
    cached = home / "cache" / "tables" / "mbm5.amlut"
    assert cached.is_file()
    np.testing.assert_array_equal(m.lut, packaged)
    # a damaged cache entry is rebuilt, not trusted
    data = bytearray(cached.read_bytes())
    data[-1] ^= 1
    cached.write_bytes(bytes(data))
    np.testing.assert_array_equal(multipliers.get("mbm5").lut, packaged)


def test_stale_package_table_is_rebuilt_from_the_changed_source(home, tmp_path, monkeypatch):
    sources = tmp_path / "multipliers"
    shutil.copytree(MODELS, sources)
    mbm = sources / "mbm.c"
    # a changed model: mbm3 gets mbm7's correction constant doubled (still a valid table)
    mbm.write_text(
        mbm.read_text().replace(
            "#define MBM_CORRECTION ((1u << 19) + (1u << 17))", "#define MBM_CORRECTION ((1u << 20) + (1u << 18))"
        )
    )
    monkeypatch.setattr(registry, "SOURCE_DIR", sources)
    monkeypatch.setattr(registry, "_resolved", {})  # forget where get() found it
    shipped = registry.PACKAGE_TABLES / "mbm3.amlut"
    before = table_file.read_table(shipped)[1] if shipped.is_file() else None
    m = multipliers.get("mbm3")
    assert (home / "cache" / "tables" / "mbm3.amlut").is_file()
    assert before is None or not np.array_equal(m.lut, before)
    assert multipliers.describe("mbm3")["source"] == str(mbm)


def test_resolve_reads_every_multiplier_argument(home):
    # The one reading of a multiplier argument (core, ops, layers, models): NATIVE is the native op.
    assert multipliers.NATIVE == "fp32" and multipliers.resolve("fp32") is None
    assert multipliers.resolve("mbm7") is multipliers.get("mbm7")
    m = Multiplier("x", 1, "nearest", np.zeros(4, np.uint16))
    assert multipliers.resolve(m) is m
    with pytest.raises(ValueError, match=r"unknown multiplier 'mbm8'; available: bf16, .* \(and 'fp32' for the native"):
        multipliers.resolve("mbm8")
    with pytest.raises(TypeError, match="multiplier must be a name, 'fp32' or a Multiplier, got int"):
        multipliers.resolve(7)
    # The core computes tables only: NATIVE is refused there, by name.
    x = np.float32([1.5])
    with pytest.raises(ValueError, match="'fp32' is not a table: it means the native op"):
        core.multiply(x, x, "fp32")
    with pytest.raises(TypeError, match="got NoneType"):
        core.matmul(x.reshape(1, 1), x.reshape(1, 1), None)


def test_describe_shipped(home):
    d = multipliers.describe("drum5")
    assert (d["name"], d["mantissa_bits"], d["operand_rounding"], d["kind"]) == ("drum5", 4, "truncate", "shipped")
    assert "DRUM" in d["description"]
    with pytest.raises(ValueError, match="not a table"):
        multipliers.describe("fp32")


def test_core_accepts_names_and_rejects_unknown(home):
    x = np.float32([1.5, 3.0])
    np.testing.assert_array_equal(core.multiply(x, x, "mitchell7"), core.multiply(x, x, multipliers.get("mitchell7")))
    with pytest.raises(ValueError, match="unknown multiplier"):
        core.multiply(x, x, "nope")


def test_build_shipped_tables_needs_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no multiplier models"):
        multipliers.build_shipped_tables(tmp_path, tmp_path / "out")


def test_build_shipped_tables_writes_every_declared_table(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(MODELS / "drum.c", src)
    written = multipliers.build_shipped_tables(src, tmp_path / "out")
    assert sorted(p.name for p in written) == ["drum4.amlut", "drum5.amlut", "drum6.amlut"]
    for p in written:
        header, entries = table_file.read_table(p)
        np.testing.assert_array_equal(entries, multipliers.get(header.name).lut)
