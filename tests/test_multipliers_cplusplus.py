"""C and C++ models as people write them: ApproxTrain-style .inl files (no #include, no
extern "C"), C++ namespaces, templates and overloads; and every way registering one fails."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import amsim_reference as ref
import multiplier_definitions as defs
from approxtrain import core, multipliers
from approxtrain.cli import main
from approxtrain.multipliers import ModelError, build_table, builder
from store_helpers import registry_files

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "multipliers"
MBM_INL = FIXTURES / "mbm16_approxtrain.inl"
MITCHELL_INL = FIXTURES / "mitchell16_approxtrain.inl"
DRUM_CPP = FIXTURES / "drum_templates.cpp"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- models that register ----------------------------------------------------------------------


def test_approxtrain_style_inl_in_c_registers_without_a_symbol(home):
    # No #include (uint32_t, bool come from the standard headers put in front), helper functions,
    # pointer-cast punning; its only float(float, float) function is the model.
    assert builder.CompiledModel(MBM_INL).language == "c"
    m = multipliers.register("mbm16", MBM_INL, mantissa_bits=7)
    np.testing.assert_array_equal(m.lut, defs.entries(*defs.mbm(7)))
    np.testing.assert_array_equal(m.lut, multipliers.get("mbm7").lut)
    assert registry_files(home) == ["mbm16.amlut", "mbm16.inl"]
    assert multipliers.describe("mbm16")["source"] == str(home / "multipliers" / "mbm16.inl")
    assert multipliers.table_file.read_header(home / "multipliers" / "mbm16.amlut").symbol == "FPmultMBM16"


def test_cxx_only_inl_is_compiled_as_cxx(home):
    # References and reinterpret_cast: C rejects it, so it is compiled as C++ (C++ linkage, no extern "C").
    assert builder.CompiledModel(MITCHELL_INL).language == "c++"
    m = multipliers.register("mitchell16", MITCHELL_INL, mantissa_bits=7)
    np.testing.assert_array_equal(m.lut, defs.entries(*defs.mitchell(7)))
    x = np.float32([1.7, -2.9, 1e-20, 3e30])
    y = np.float32([1.3, 0.6, 5e-21, -7e7])
    np.testing.assert_array_equal(
        core.multiply(x, y, m), ref.multiply(x, y, defs.entries(*defs.mitchell(7)), 7, "truncate")
    )


@pytest.mark.parametrize(
    "symbol, m, expected",
    [
        ("approx::drum<5>", 4, defs.drum(5)),  # a template instantiated only by naming it
        ("approx::drum<6>", 5, defs.drum(6)),  # instantiated in the file
        ("approx::truncated", 5, defs.truncated_product(5, 4)),  # the float member of an overload set
    ],
)
def test_cxx_namespace_template_and_overload(home, symbol, m, expected):
    got = multipliers.register("mine", DRUM_CPP, mantissa_bits=m, symbol=symbol)
    np.testing.assert_array_equal(got.lut, defs.entries(*expected))
    assert multipliers.table_file.read_header(home / "multipliers" / "mine.amlut").symbol == symbol
    assert registry_files(home) == ["mine.amlut", "mine.cpp"]


def test_drum_template_equals_the_shipped_drum(home):
    assert np.array_equal(build_table(DRUM_CPP, "approx::drum<5>", 4), multipliers.get("drum5").lut)


def test_static_helpers_and_static_model(tmp_path):
    # A static model function is called through the trampoline of the same translation unit.
    c = write(
        tmp_path,
        "halves.c",
        "static float half(float x) { return x * 0.5f; }\n"
        "static float mine(float a, float b) { return 2.0f * half(a * b); }\n",
    )
    np.testing.assert_array_equal(build_table(c, None, 6), ref.exact_table(6))


def test_language_flag_overrides_the_suffix(tmp_path):
    # A .c file of C++: compiled as C by default, and as C++ when asked.
    c = write(tmp_path, "cxx.c", "namespace q { float f(float a, float b) { return a * b; } }\n")
    with pytest.raises(ModelError, match=r"\Amodel .*cxx\.c does not compile as C:\n"):
        build_table(c, None, 3)
    np.testing.assert_array_equal(build_table(c, "q::f", 3, language="c++"), ref.exact_table(3))
    with pytest.raises(ModelError, match=r"\Amodel .*mitchell16_approxtrain\.inl does not compile as C:\n"):
        build_table(MITCHELL_INL, None, 7, language="c")


def test_replacing_a_model_by_one_in_another_language_drops_the_old_copy(home, tmp_path):
    multipliers.register("mine", MBM_INL, mantissa_bits=7)
    multipliers.register("mine", DRUM_CPP, mantissa_bits=4, symbol="approx::drum<5>", overwrite=True)
    assert registry_files(home) == ["mine.amlut", "mine.cpp"]
    multipliers.unregister("mine")
    assert registry_files(home) == []


# --- every way it fails, with the message a user sees -------------------------------------------


def test_several_model_functions_are_listed_demangled(home):
    with pytest.raises(ModelError) as e:
        multipliers.register("drums", DRUM_CPP, mantissa_bits=5)
    assert str(e.value) == (
        f"C++ model {DRUM_CPP} has several functions float f(float, float): approx::drum<6>, "
        "approx::truncated; name the model with symbol= (--symbol on the command line)"
    )
    assert registry_files(home) == []


def test_several_c_functions_but_one_called_like_the_multiplier(home, tmp_path):
    c = write(
        tmp_path,
        "two.c",
        "float other(float a, float b) { return 2 * a * b; }\nfloat mine(float a, float b) { return a * b; }\n",
    )
    np.testing.assert_array_equal(multipliers.register("mine", c, mantissa_bits=4).lut, ref.exact_table(4))


def test_no_model_function(tmp_path):
    c = write(tmp_path, "none.c", "double f(double a, double b) { return a * b; }\n")
    with pytest.raises(ModelError) as e:
        build_table(c, None, 3)
    assert str(e.value) == (
        f"C model {c} has no function float f(float a, float b) to build a table from "
        "(a model is 'float NAME(float a, float b)')"
    )


@pytest.mark.parametrize(
    "symbol, message",
    [
        (
            "approx::nope",
            "C++ model {path} has no function 'approx::nope' (expected 'float approx::nope(float a, "
            "float b)'); functions float f(float, float) in the file: approx::drum<6>, approx::truncated",
        ),
        (
            "approx::shortened<5>",
            "C++ model {path}: 'approx::shortened<5>' is not a function float "
            "approx::shortened<5>(float a, float b); functions float f(float, float) in the file: "
            "approx::drum<6>, approx::truncated",
        ),
    ],
)
def test_wrong_symbol(symbol, message):
    with pytest.raises(ModelError) as e:
        build_table(DRUM_CPP, symbol, 4)
    assert str(e.value) == message.format(path=DRUM_CPP)


@pytest.mark.parametrize("symbol", ['f); system("x"', "a b", "ns::f;", "", 7])
def test_symbol_must_be_a_name(symbol):
    with pytest.raises(
        ValueError,
        match=r"symbol must be a C identifier or a qualified C\+\+ name "
        r"\(ns::f, ns::f<7>\), got ",
    ):
        build_table(DRUM_CPP, symbol, 4)


def test_unknown_language(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"language must be one of c, c\+\+ \(or None to try C, then C\+\+\), "
        r"got 'fortran'",
    ):
        build_table(MBM_INL, None, 7, language="fortran")


def _diagnostic_lines(message):
    return [line for line in message.splitlines()[1:] if not line.startswith("--- as ")]


def test_compile_error_is_the_compilers_text_with_no_python_warnings(home, tmp_path):
    c = write(tmp_path, "broken.c", "float broken(float a, float b)\n{\n    return a * ;\n}\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("broken", c, mantissa_bits=3)  # built in the child process
    lines = str(e.value).splitlines()
    assert lines[0] == f"model {c} does not compile as C:"
    assert any(line.startswith(f"{c}:3:16: error: ") for line in lines)
    assert "    3 |     return a * ;" in lines
    # Nothing but the compiler's lines about the user's file: no runpy RuntimeWarning, no wrapper.
    assert all(line.startswith((str(c), " ")) for line in _diagnostic_lines(str(e.value))), lines
    assert "Warning" not in str(e.value) and "approxtrain_wrapper" not in str(e.value)
    assert registry_files(home) == []


def test_file_that_compiles_as_neither_language_shows_both(tmp_path):
    inl = write(tmp_path, "broken.inl", "float broken(float a, float b)\n{\n    return a * ;\n}\n")
    with pytest.raises(ModelError) as e:
        build_table(inl, None, 3)
    text = str(e.value)
    lines = text.splitlines()
    assert lines[0] == (
        f"model {inl} does not compile as C or C++ (pass language='c' or 'c++', --language on "
        "the command line, to pick one):"
    )
    assert lines[1] == "--- as C (cc -x c):"
    assert "--- as C++ (c++ -x c++):" in lines
    assert sum(line.startswith(f"{inl}:3:16: error: ") for line in lines) == 2
    assert all(line.startswith((str(inl), " ")) for line in _diagnostic_lines(text)), lines


def test_long_compiler_output_is_trimmed(tmp_path):
    body = "".join(f"float f{i}(float a, float b) {{ return a * ; }}\n" for i in range(60))
    c = write(tmp_path, "many.c", body)
    with pytest.raises(ModelError) as e:
        build_table(c, None, 3)
    lines = str(e.value).splitlines()
    assert len(lines) == 1 + 40 + 1
    assert lines[-1].startswith("... (") and lines[-1].endswith(" more lines)")


def test_crashing_cxx_model_is_an_error_and_nothing_is_registered(home, tmp_path):
    cpp = write(tmp_path, "boom.cpp", "float boom(float a, float b) { volatile int* p = nullptr; *p = 1; return a; }\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("boom", cpp, mantissa_bits=3)
    assert (
        str(e.value) == f"the model boom ({cpp}) crashed with SIGSEGV while its table was built; nothing was registered"
    )
    assert registry_files(home) == [] and "boom" not in multipliers.names()


def test_looping_cxx_model_times_out_and_nothing_is_registered(home, tmp_path):
    cpp = write(
        tmp_path,
        "spin.cc",
        "namespace s { volatile bool forever = true;\n"
        "float spin(float a, float b) { while (forever) {} return a * b; } }\n",
    )
    with pytest.raises(ModelError) as e:
        multipliers.register("spin", cpp, mantissa_bits=2, timeout=4)
    assert str(e.value) == (
        f"building the table of spin ({cpp}) did not finish within 4 s: does the model loop "
        "forever for some pair? Nothing was registered (a slow model needs a longer time "
        "limit: timeout=, --timeout on the command line)"
    )
    assert registry_files(home) == []


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_bad_timeout(home, timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        multipliers.register("mine", MBM_INL, mantissa_bits=7, timeout=timeout)


# --- the command line ---------------------------------------------------------------------------


def test_cli_adds_inl_and_cxx_models(home, tmp_path, capsys):
    assert main(["multipliers", "add", "mitchell16", str(MITCHELL_INL), "--mantissa-bits", "7"]) == 0
    assert "registered mitchell16: M=7, rounding=truncate, 16384 entries" in capsys.readouterr().out
    assert main(["multipliers", "add", "drum5x", str(DRUM_CPP), "-m", "4", "--symbol", "approx::drum<5>"]) == 0
    np.testing.assert_array_equal(multipliers.get("drum5x").lut, defs.entries(*defs.drum(5)))
    copy = tmp_path / "cxx_as_c.inl"
    shutil.copy(MITCHELL_INL, copy)
    assert main(["multipliers", "add", "nope", str(copy), "-m", "7", "--language", "c"]) == 2
    assert f"approxtrain multipliers: error: model {copy} does not compile as C:\n" in capsys.readouterr().err


def test_cli_lists_several_functions(home, capsys):
    assert main(["multipliers", "add", "drums", str(DRUM_CPP), "-m", "5"]) == 2
    assert capsys.readouterr().err == (
        f"approxtrain multipliers: error: C++ model {DRUM_CPP} has several functions float f(float, float): "
        "approx::drum<6>, approx::truncated; name the model with symbol= (--symbol on the command line)\n"
    )


def test_cli_timeout(home, tmp_path, capsys):
    c = write(tmp_path, "spin.c", "float spin(float a, float b) { for (;;) {} return a * b; }\n")
    assert main(["multipliers", "add", "spin", str(c), "-m", "2", "--timeout", "3"]) == 2
    assert capsys.readouterr().err == (
        f"approxtrain multipliers: error: building the table of spin ({c}) did not "
        "finish within 3 s: does the model loop forever for some pair? Nothing was "
        "registered (a slow model needs a longer time limit: timeout=, "
        "--timeout on the command line)\n"
    )
    assert registry_files(home) == []
