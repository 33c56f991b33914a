"""Integer (8-bit) multipliers in the registry: C models in each published signature style, PDK45
figures, the store, TFApprox .bin import/export, and every bad model registering nothing."""

import os
import re

import numpy as np
import pytest
from integer_reference import FIXTURES, exact_products, fixture_path, fixture_products, signed_values
from store_helpers import registry_files

from approxtrain import multipliers
from approxtrain.multipliers import (
    DamagedTableError,
    IntegerMultiplier,
    ModelError,
    builder,
    integer_builder,
    integer_table_file,
)
from approxtrain.multipliers.integer_metrics import integer_error_metrics


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_each_signature_style_builds_the_independent_reference_table(home, fixture):
    name = fixture["name"]
    m = multipliers.register(name, fixture_path(name), integer_bits=8, signed=fixture["signed"])
    assert isinstance(m, IntegerMultiplier) and m.kind == "integer" and m.signed == fixture["signed"]
    assert m.products.dtype == np.int32 and m.products.shape == (256, 256)
    np.testing.assert_array_equal(m.products, fixture_products(name))
    if fixture["dropped"] != {(j, i) for i, j in fixture["dropped"]}:
        # Asymmetric dropped partial products: the table row is the FIRST parameter, whatever its name.
        assert not np.array_equal(m.products, m.products.T)
    assert multipliers.get(name) is m and multipliers.resolve(name) is m
    assert registry_files(home) == [f"{name}.amlut", f"{name}.c"]


def test_signed_patterns_are_reinterpreted(home):
    # mul8s_fxu16 is uint16_t f(uint8_t, uint8_t) returning the two's-complement pattern of its product.
    m = multipliers.register("fxu", fixture_path("mul8s_fxu16"), integer_bits=8, signed=True)
    assert m.products.min() < 0
    values = signed_values(np.arange(256))
    a, b = np.meshgrid(values, values, indexing="ij")
    np.testing.assert_array_equal(m.multiply(a, b), fixture_products("mul8s_fxu16"))
    assert int(m.multiply(-1, -1)) == int(fixture_products("mul8s_fxu16")[255, 255])
    # Read as unsigned, the same circuit's patterns are the 16-bit values themselves.
    u = multipliers.register("fxu_as_unsigned", fixture_path("mul8s_fxu16"), integer_bits=8, signed=False)
    np.testing.assert_array_equal(u.products, fixture_products("mul8s_fxu16") & 0xFFFF)


def test_pdk45_figures_are_read_from_the_header(home):
    m = multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    assert (m.power_mw, m.area_um2, m.delay_ns) == (0.391, 688.4, 1.37)
    assert m.energy_pj == pytest.approx(0.391 * 1.37)
    d = multipliers.describe("fx64")
    assert (d["type"], d["kind"], d["bits"], d["signed"]) == ("integer", "user", 8, False)
    assert (d["power_mw"], d["area_um2"], d["delay_ns"]) == (0.391, 688.4, 1.37)


def test_figures_need_their_published_units(tmp_path):
    c = tmp_path / "m.c"
    c.write_text("// PDK45_PWR = 391 uW\nuint16_t m(uint8_t a, uint8_t b) { return a * b; }\n")
    with pytest.raises(ModelError, match=re.escape(f"{c}: PDK45_PWR is given in 'uW'; approxtrain reads it in mw")):
        integer_builder.read_figures(c)


def test_header_error_figures_match_the_report_metrics(home):
    # The fixture headers carry MAE and WCE computed by the generator; the registry's metrics agree.
    m = multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    text = fixture_path("mul8u_fx64").read_text()
    e = integer_error_metrics(m)
    assert f"// MAE = {e['mae']:.1f} " in text and f"// WCE = {e['wce']} " in text
    error = fixture_products("mul8u_fx64") - exact_products(False)
    assert e["wce"] == np.abs(error).max() and e["mae"] == pytest.approx(np.abs(error).mean())
    assert e["mre_percent"] == pytest.approx(100 * (np.abs(error) / np.maximum(1, exact_products(False))).mean())


def test_python_integer_model(home):
    m = multipliers.register("py_trunc", lambda a, b: (a * b) & ~7, integer_bits=8, signed=False)
    np.testing.assert_array_equal(m.products, exact_products(False) & ~7)


def test_shipped_integer_models(home):
    names = multipliers.names()
    for name in ("mul8s_exact", "mul8u_exact", "mul8u_trunc4", "mul8u_trunc8", "mul8s_mitchell"):
        assert name in names and multipliers.describe(name)["type"] == "integer"
    np.testing.assert_array_equal(multipliers.get("mul8s_exact").products, exact_products(True))
    np.testing.assert_array_equal(multipliers.get("mul8u_exact").products, exact_products(False))
    a = np.arange(256)[:, None]
    b = np.arange(256)[None, :]
    for dropped, wce in ((4, 49), (8, 1793)):
        trunc = sum(((a >> i) & 1) * ((b >> j) & 1) << (i + j) for i in range(8) for j in range(8) if i + j >= dropped)
        np.testing.assert_array_equal(multipliers.get(f"mul8u_trunc{dropped}").products, trunc)
        assert int((exact_products(False) - trunc).max()) == wce
    assert multipliers.get("mul8u_trunc8").multiply([15], [15])[0] == 0


def _mitchell_reference(x, y):
    if x == 0 or y == 0:
        return 0
    ma, mb = abs(x), abs(y)
    ka, kb = ma.bit_length() - 1, mb.bit_length() - 1
    s = ((ma - (1 << ka)) << kb) + ((mb - (1 << kb)) << ka)
    magnitude = (1 << (ka + kb)) + s if s < (1 << (ka + kb)) else 2 * s
    return -magnitude if (x < 0) != (y < 0) else magnitude


def test_shipped_mitchell_matches_its_definition(home):
    m = multipliers.get("mul8s_mitchell")
    values = range(-128, 128)
    want = np.array([[_mitchell_reference(x, y) for y in values] for x in values])
    np.testing.assert_array_equal(m.multiply(*np.meshgrid(values, values, indexing="ij")), want)
    exact = np.outer(np.arange(-128, 128), np.arange(-128, 128))
    assert (np.abs(want) <= np.abs(exact)).all() and (np.sign(want) == np.sign(exact)).all()


def test_tfapprox_bin_round_trip(home, tmp_path):
    m = multipliers.register("fxu", fixture_path("mul8s_fxu16"), integer_bits=8, signed=True)
    path = multipliers.export_table("fxu", tmp_path / "fxu.bin")
    data = path.read_bytes()
    assert len(data) == 131072
    # TFApprox layout: uint16 little-endian, value (a << 8) | b is the product of codes a (input) and b.
    raw = np.frombuffer(data, "<u2").reshape(256, 256)
    np.testing.assert_array_equal(raw, fixture_products("mul8s_fxu16") & 0xFFFF)
    back = multipliers.register_table("fxu_back", path, integer_bits=8, signed=True)
    np.testing.assert_array_equal(back.products, m.products)
    unsigned = multipliers.register_table("fxu_raw", path, integer_bits=8, signed=False)
    np.testing.assert_array_equal(unsigned.products, raw)


def test_tfapprox_bin_of_the_wrong_size(home, tmp_path):
    bad = tmp_path / "short.bin"
    bad.write_bytes(bytes(1000))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{bad}: a TFApprox multiplication map is 65536 uint16 products (131072 bytes); the file has 1000 bytes"
        ),
    ):
        multipliers.register_table("short", bad, integer_bits=8, signed=False)
    assert registry_files(home) == []


def test_damaged_integer_table_is_a_damaged_table_error(home):
    multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    path = home / "multipliers" / "fx64.amlut"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedTableError) as e:
        multipliers.get("fx64")
    assert str(e.value) == f"{path}: checksum mismatch: the products are corrupted; rebuild or re-register it"


def test_unregister_integer(home):
    multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    multipliers.unregister("fx64")
    assert registry_files(home) == [] and "fx64" not in multipliers.names()


# --- bad models: a clear error, nothing registered ---------------------------------------------


def _bad(tmp_path, name, source):
    c = tmp_path / f"{name}.c"
    c.write_text(source)
    return c


@pytest.fixture
def store(home):
    """A store holding one integer multiplier, "keep", that a failed registration must leave alone."""
    multipliers.register("keep", lambda a, b: a * b, integer_bits=8, signed=True)
    return home


def _assert_nothing_registered(home, name):
    assert name not in multipliers.names()
    assert not any(home.rglob(f"{name}*"))
    assert registry_files(home) == ["keep.amlut"]
    np.testing.assert_array_equal(multipliers.get("keep").products, exact_products(True))


def test_wrong_signature(home, store, tmp_path):
    c = _bad(tmp_path, "wrong", "int32_t mulx(int32_t a, int32_t b) { return a * b; }\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("wrong", c, integer_bits=8, signed=True)
    assert str(e.value) == (
        f"C model {c} has no 8-bit multiplier function to build a table from (a model is "
        "'int16_t NAME(int8_t a, int8_t b), uint16_t NAME(uint8_t a, uint8_t b) or uint64_t NAME(uint64_t a, "
        "uint64_t b)')"
    )
    _assert_nothing_registered(home, "wrong")


def test_wrong_signature_of_a_named_symbol(home, store, tmp_path):
    c = _bad(
        tmp_path,
        "two",
        "int32_t mulx(int32_t a, int32_t b) { return a * b; }\nuint16_t good(uint8_t a, uint8_t b) { return a * b; }\n",
    )
    with pytest.raises(ModelError) as e:
        multipliers.register("two", c, integer_bits=8, signed=False, symbol="mulx")
    assert str(e.value) == (
        f"C model {c}: 'mulx' is not a function int16_t mulx(int8_t a, int8_t b), uint16_t mulx(uint8_t a, "
        "uint8_t b) or uint64_t mulx(uint64_t a, uint64_t b); 8-bit multiplier functions in the file: good"
    )
    _assert_nothing_registered(home, "two")


def test_product_wider_than_16_bits_names_the_pair(home, store, tmp_path):
    c = _bad(
        tmp_path,
        "wide",
        "uint64_t wide(const uint64_t B, const uint64_t A)\n"
        "{ return (B == 200 && A == 7) ? 0x10000u + B * A : B * A; }\n",
    )
    with pytest.raises(ModelError) as e:
        multipliers.register("wide", c, integer_bits=8, signed=False)
    assert str(e.value) == (
        f"multiplier wide ({c}:wide): for operands (200, 7) it returned 66936 (0x10578), more than the 16 bits "
        "of an 8x8-bit unsigned product (a uint64_t result must be 0..0xffff); 1 of 65536 pairs are out of range"
    )
    _assert_nothing_registered(home, "wide")


def test_signed_product_in_uint64_may_be_sign_extended(home, store, tmp_path):
    c = _bad(
        tmp_path,
        "sext",
        "uint64_t sext(const uint64_t B, const uint64_t A) { return (uint64_t)((int64_t)(int8_t)B * (int8_t)A); }\n",
    )
    m = multipliers.register("sext", c, integer_bits=8, signed=True)
    np.testing.assert_array_equal(m.products, exact_products(True))
    multipliers.unregister("sext")
    with pytest.raises(ModelError, match=re.escape("for operands (1, 128) it returned 18446744073709551488")):
        multipliers.register("sext_u", c, integer_bits=8, signed=False)
    _assert_nothing_registered(home, "sext_u")


def test_crashing_model(home, store, tmp_path):
    c = _bad(
        tmp_path,
        "boom",
        "uint16_t boom(uint8_t a, uint8_t b)\n"
        "{ if (a == 77 && b == 3) { volatile int* p = 0; *p = 1; } return a * b; }\n",
    )
    with pytest.raises(ModelError) as e:
        multipliers.register("boom", c, integer_bits=8, signed=False)
    assert (
        str(e.value) == f"the model boom ({c}) crashed with SIGSEGV while its table was built; nothing was registered"
    )
    _assert_nothing_registered(home, "boom")


def test_hanging_model(home, store, tmp_path):
    c = _bad(tmp_path, "spin", "int16_t spin(int8_t a, int8_t b) { if (a == -5) for (;;) {} return a * b; }\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("spin", c, integer_bits=8, signed=True, timeout=3)
    assert str(e.value) == (
        f"building the table of spin ({c}) did not finish within 3 s: does the model loop forever for some pair? "
        "Nothing was registered (a slow model needs a longer time limit: timeout=, --timeout on the command line)"
    )
    _assert_nothing_registered(home, "spin")


def test_compile_error(home, store, tmp_path):
    c = _bad(tmp_path, "broken", "int16_t broken(int8_t a, int8_t b) { return a * b }\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("broken", c, integer_bits=8, signed=True)
    assert str(e.value).startswith(f"model {c} does not compile as C:\n")
    assert "error: expected ';' before '}' token" in str(e.value)
    _assert_nothing_registered(home, "broken")


def test_python_model_out_of_range(home, store):
    with pytest.raises(ModelError) as e:
        multipliers.register("pyw", lambda a, b: a * b * 2, integer_bits=8, signed=True)
    assert str(e.value) == (
        "multiplier pyw: for operands (-128, -128) [patterns (128, 128)] it returned 32768, outside the 16-bit "
        "signed range [-32768, 32767]; 1 of 65536 pairs are out of range"
    )
    _assert_nothing_registered(home, "pyw")


def test_integer_registration_needs_its_signedness(home, tmp_path):
    with pytest.raises(ValueError, match=re.escape("an integer multiplier needs signed=True")):
        multipliers.register("x", fixture_path("mul8u_fx64"), integer_bits=8)
    with pytest.raises(ValueError, match=re.escape("integer_bits must be one of (8,), got 16")):
        multipliers.register("x", fixture_path("mul8u_fx64"), integer_bits=16, signed=False)
    with pytest.raises(ValueError, match="mantissa_bits applies to float multipliers"):
        multipliers.register("x", fixture_path("mul8u_fx64"), mantissa_bits=7, integer_bits=8, signed=False)
    assert registry_files(home) == []


def test_shipped_spec_lines(tmp_path):
    c = tmp_path / "m.c"
    c.write_text(
        '/* approxtrain: name=m8 integer_bits=8 signed=false description="x" */\n'
        "uint16_t m8(uint8_t a, uint8_t b) { return a * b; }\n"
    )
    (spec,) = builder.read_specs(c)
    assert (spec.name, spec.symbol, spec.is_integer, spec.integer_bits, spec.signed, spec.mantissa_bits) == (
        "m8",
        "m8",
        True,
        8,
        False,
        None,
    )
    c.write_text("/* approxtrain: name=m8 integer_bits=8 signed=maybe */\n")
    with pytest.raises(ModelError, match=re.escape(f"{c}:1: signed must be true or false, got 'maybe'")):
        builder.read_specs(c)


def test_cost_energy_is_power_times_delay_labelled_an_estimate(home):
    from approxtrain.cost import energy

    multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    fig = energy.figure("fx64")
    assert fig["multiply_pj"] == pytest.approx(0.391 * 1.37) and fig["estimate"] is True
    assert fig["source"].startswith("estimate: power x delay of the circuit's published figures (0.391 mW x 1.37 ns")
    assert energy.figure("mul8u_exact") is None  # no published figures: no energy, never a guess


def test_cplusplus_integer_model(home, tmp_path):
    cc = tmp_path / "drop.cpp"
    cc.write_text(
        "#include <cstdint>\nnamespace approx {\n"
        "template <int K> std::int16_t drop(std::int8_t a, std::int8_t b) "
        "{ return (std::int16_t)((a * b) & ~((1 << K) - 1)); }\n"
        "template std::int16_t drop<3>(std::int8_t, std::int8_t);\n"
        "inline float unrelated(float a, float b) { return a + b; }\n}\n"
    )
    m = multipliers.register("drop3", cc, integer_bits=8, signed=True)
    np.testing.assert_array_equal(m.products, exact_products(True) & ~7)
    assert registry_files(home) == ["drop3.amlut", "drop3.cpp"]


def test_npy_round_trip(home, tmp_path):
    m = multipliers.get("mul8s_mitchell")
    path = multipliers.export_table("mul8s_mitchell", tmp_path / "mitchell.npy")
    saved = np.load(path)
    assert saved.dtype == np.int32 and saved.shape == (256, 256)
    back = multipliers.register_table("mitchell_copy", path, integer_bits=8, signed=True)
    np.testing.assert_array_equal(back.products, m.products)
    np.save(tmp_path / "neg.npy", exact_products(True))
    with pytest.raises(ValueError) as e:
        multipliers.register_table("neg_as_unsigned", tmp_path / "neg.npy", integer_bits=8, signed=False)
    assert str(e.value) == (
        f"{tmp_path / 'neg.npy'}: the product of patterns (1, 128) is -128, outside the 16-bit unsigned range "
        "[0, 65535] (is signed right?)"
    )
    assert "neg_as_unsigned" not in multipliers.names()


def test_integer_table_of_a_newer_version(home):
    multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    path = home / "multipliers" / "fx64.amlut"
    data = bytearray(path.read_bytes())
    data[6] = 9  # the format version, after the 6-byte magic
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedTableError) as e:
        multipliers.get("fx64")
    assert e.value.reason == (
        "integer table format version 9 is not supported (this approxtrain reads version 1); written by a newer "
        "approxtrain: upgrade approxtrain, or rebuild the table"
    )


def test_list_shows_a_damaged_integer_table(home, capsys):
    from approxtrain.cli import main

    multipliers.register("fx64", fixture_path("mul8u_fx64"), integer_bits=8, signed=False)
    path = home / "multipliers" / "fx64.amlut"
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["multipliers", "list"]) == 0
    assert re.search(
        rf"^fx64\s+\?\s+\?\s+DAMAGED\s+{re.escape(str(path))}: truncated integer table file: 65536 int32 "
        "products need 262144 bytes, found 262134$",
        capsys.readouterr().out,
        re.M,
    )


def test_shipped_integer_table_is_cached_and_rebuilt_when_damaged(home, tmp_path, monkeypatch):
    from approxtrain.multipliers import registry

    monkeypatch.setattr(registry, "PACKAGE_TABLES", tmp_path / "no_tables")  # a source checkout, never built
    monkeypatch.setattr(registry, "_in_memory", {})  # tables an earlier test could not cache on disk
    first = multipliers.get("mul8u_trunc4").products.copy()
    cached = home / "cache" / "tables" / "mul8u_trunc4.amlut"
    assert cached.is_file()
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0x01
    cached.write_bytes(bytes(data))
    os.utime(cached, ns=(0, 0))  # a new (mtime, size) key: the registry reads the file again
    np.testing.assert_array_equal(multipliers.get("mul8u_trunc4").products, first)
    header, products = integer_table_file.read_table(cached)  # rebuilt whole
    assert header.name == "mul8u_trunc4" and not header.signed
    np.testing.assert_array_equal(products, first)
    assert multipliers.describe("mul8u_trunc4")["kind"] == "shipped"


def test_a_tfapprox_map_imported_as_a_float_table_says_what_it_is(home, tmp_path):
    path = multipliers.export_table("mul8u_exact", tmp_path / "exact.bin")
    with pytest.raises(ValueError) as e:
        multipliers.register_table("exact_as_float", path, mantissa_bits=7)
    assert str(e.value).endswith(
        "the file has 131072 bytes (is mantissa_bits right?) (131072 bytes is the size of a TFApprox 8-bit "
        "multiplication map: import it as an integer multiplier, integer_bits=8 and signed=, --integer 8 "
        "--signed|--unsigned)"
    )
    assert registry_files(home) == []


def test_package_build_writes_integer_tables_that_get_reads(home, tmp_path, monkeypatch):
    from approxtrain.multipliers import registry

    written = registry.build_shipped_tables(registry.SOURCE_DIR, tmp_path / "tables")
    assert {p.name for p in written} >= {"mul8s_exact.amlut", "mul8u_trunc4.amlut", "mbm7.amlut"}
    header, products = integer_table_file.read_table(tmp_path / "tables" / "mul8s_exact.amlut")
    assert (header.name, header.signed, header.bits, header.symbol) == ("mul8s_exact", True, 8, "mul8s_exact")
    np.testing.assert_array_equal(products, exact_products(True))
    monkeypatch.setattr(registry, "PACKAGE_TABLES", tmp_path / "tables")
    monkeypatch.setattr(registry, "_in_memory", {})
    np.testing.assert_array_equal(multipliers.get("mul8s_exact").products, exact_products(True))
    assert multipliers.describe("mul8s_exact")["table"] == str(tmp_path / "tables" / "mul8s_exact.amlut")
    assert not (home / "cache").exists()  # read from the package, nothing built on first use
