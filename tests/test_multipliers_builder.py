"""The table builder on good and bad C models: every problem is a clear exception."""

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain.multipliers import ModelError, build_table, builder

HEADER = "#include <math.h>\n#include <string.h>\n#include <stdint.h>\n"


def model(tmp_path, body, name="model.c"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


def test_exact_model_gives_the_exact_table(tmp_path):
    c = model(tmp_path, "float mine(float a, float b) { return a * b; }\n")
    for m in (1, 4, 7):
        np.testing.assert_array_equal(build_table(c, "mine", m), ref.exact_table(m))


def test_left_operand_is_the_table_row(tmp_path):
    # f(a, b) = a * 2^eb: only a's fraction matters, so each row is constant.
    c = model(
        tmp_path,
        "float lop(float a, float b) {\n"
        "  uint32_t u; memcpy(&u, &b, 4); u &= 0xff800000u; memcpy(&b, &u, 4); return a * b;\n}\n",
    )
    m = 4
    lut = build_table(c, "lop", m).reshape(1 << m, 1 << m)  # [ia, ib]
    ia = np.arange(1 << m)[:, None]
    np.testing.assert_array_equal(lut, np.broadcast_to(ia << (15 - m), lut.shape))


def test_header_specs_are_read(tmp_path):
    c = model(
        tmp_path,
        "/*\n * approxtrain: name=foo symbol=foo_fn mantissa_bits=5 rounding=nearest "
        'description="a b c"\n * approxtrain: name=bar mantissa_bits=2 rounding=truncate */\n'
        "float foo_fn(float a, float b) { return a * b; }\n",
    )
    foo, bar = builder.read_specs(c)
    assert (foo.name, foo.symbol, foo.mantissa_bits, foo.operand_rounding, foo.description) == (
        "foo",
        "foo_fn",
        5,
        "nearest",
        "a b c",
    )
    assert (bar.name, bar.symbol, bar.mantissa_bits) == ("bar", "bar", 2)


@pytest.mark.parametrize(
    "line, message",
    [
        ("approxtrain: name=x mantissa_bits=12 rounding=truncate", "mantissa_bits"),
        ("approxtrain: name=x mantissa_bits=7 rounding=up", "rounding"),
        ("approxtrain: name=x rounding=truncate", "mantissa_bits="),
        ("approxtrain: name=x mantissa_bits=7 rounding=truncate colour=red", "unknown keys"),
    ],
)
def test_bad_header_specs(tmp_path, line, message):
    c = model(tmp_path, f"/* {line} */\nfloat x(float a, float b) {{ return a * b; }}\n")
    with pytest.raises(ModelError, match=message):
        builder.read_specs(c)


def test_model_that_does_not_compile_shows_the_compiler_error(tmp_path):
    c = model(tmp_path, "float broken(float a, float b) { return a * ; }\n")
    with pytest.raises(ModelError, match=r"does not compile[\s\S]*error") as e:
        build_table(c, "broken", 7)
    assert "model.c" in str(e.value)


def test_missing_symbol_names_it_and_the_candidates(tmp_path):
    c = model(tmp_path, "float other(float a, float b) { return a * b; }\n")
    with pytest.raises(ModelError, match=r"no function 'mine'.*other"):
        build_table(c, "mine", 7)


def test_symbol_must_be_an_identifier(tmp_path):
    c = model(tmp_path, "float other(float a, float b) { return a * b; }\n")
    with pytest.raises(ValueError, match="C identifier"):
        build_table(c, "a; rm -rf", 7)


def test_nan_result_names_the_pair(tmp_path):
    c = model(tmp_path, "float m(float a, float b) { return (a > 1.4f && b > 1.7f) ? NAN : a * b; }\n")
    with pytest.raises(ModelError, match=r"f\(1\.40625, 1\.703125\) \[ia=52, ib=90\] = nan.*finite and in \[1, 4\)"):
        build_table(c, "m", 7)


@pytest.mark.parametrize(
    "expr, value", [("4.0f * a * b", "4.0"), ("0.5f * a * b", "0.5"), ("INFINITY", "inf"), ("-a * b", "-1.0")]
)
def test_result_outside_1_4_is_rejected(tmp_path, expr, value):
    c = model(tmp_path, f"float m(float a, float b) {{ return {expr}; }}\n")
    with pytest.raises(ModelError, match=rf"\[ia=0, ib=0\] = {value}.*\[1, 4\)"):
        build_table(c, "m", 3)


def test_exponent_dependent_model_is_rejected(tmp_path):
    # Right on [1, 2) x [1, 2), but larger operands get a different significand.
    c = model(tmp_path, "float m(float a, float b) { return fabsf(a) >= 2.0f ? a * b * 1.25f : a * b; }\n")
    with pytest.raises(ModelError, match="depends on the exponent.*f\\(2\\^1 a, 2\\^0 b\\)"):
        build_table(c, "m", 5)


def test_exponent_dependent_rounding_is_rejected(tmp_path):
    # Adding a constant instead of scaling: exact only at exponent 0.
    c = model(tmp_path, "float m(float a, float b) { return a * b + 0x1p-20f; }\n")
    with pytest.raises(ModelError, match="depends on the exponent"):
        build_table(c, "m", 4)


def test_sign_mishandling_is_rejected(tmp_path):
    c = model(tmp_path, "float m(float a, float b) { return fabsf(a * b); }\n")
    with pytest.raises(ModelError, match="mishandles signs"):
        build_table(c, "m", 4)


@pytest.mark.parametrize("m", [0, 12, -1, 7.0, "7", True, None])
def test_wrong_mantissa_bits(tmp_path, m):
    c = model(tmp_path, "float m(float a, float b) { return a * b; }\n")
    with pytest.raises(ValueError, match="mantissa_bits must be an integer in \\[1, 11\\]"):
        build_table(c, "m", m)


def test_bad_rounding(tmp_path):
    c = model(tmp_path, "float m(float a, float b) { return a * b; }\n")
    with pytest.raises(ValueError, match="rounding must be one of truncate, nearest, got 'up'"):
        build_table(c, "m", 7, "up")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.c"):
        build_table(tmp_path / "nowhere.c", "m", 7)


def test_entries_from_products():
    r = np.array(
        [1.0, 1.5, 2.0, 3.0, np.nextafter(np.float32(4), np.float32(0)), 1 + 2.0**-15, 1 + 2.0**-16], np.float32
    )
    np.testing.assert_array_equal(
        builder.entries_from_products(r), [0, 1 << 14, 1 << 15, (1 << 15) | (1 << 14), 0xFFFF, 1, 0]
    )


def test_register_survives_a_model_that_crashes(tmp_path, monkeypatch):
    # register() builds user tables in a child process: a segfaulting model is an error, not a crash.
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path / "home"))
    from approxtrain import multipliers

    c = model(tmp_path, "float boom(float a, float b) { volatile int* p = 0; *p = 1; return a * b; }\n")
    with pytest.raises(ModelError, match="crashed with SIGSEGV"):
        multipliers.register("boom", c, mantissa_bits=3)
    assert "boom" not in multipliers.names()
    assert not any((tmp_path / "home").rglob("boom*"))


def test_register_reports_model_errors_from_the_child(tmp_path, monkeypatch):
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path / "home"))
    from approxtrain import multipliers

    c = model(tmp_path, "float nanny(float a, float b) { return NAN; }\n")
    with pytest.raises(ModelError, match=r"finite and in \[1, 4\)"):
        multipliers.register("nanny", c, mantissa_bits=3)


def test_register_times_out_on_a_model_that_hangs(tmp_path, monkeypatch):
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path / "home"))
    from approxtrain import multipliers

    monkeypatch.setattr(builder, "BUILD_TIMEOUT_BASE_S", 3)  # M=2: 16 entries add ~0 s
    c = model(tmp_path, "float spin(float a, float b) { for (;;) {} return a * b; }\n")
    with pytest.raises(ModelError, match="did not finish"):
        multipliers.register("spin", c, mantissa_bits=2)
