"""`approxtrain multipliers add --integer | list | report | export | remove` for integer multipliers."""

import re

import numpy as np
import pytest
from integer_reference import exact_products, fixture_path, fixture_products
from store_helpers import registry_files

from approxtrain import multipliers
from approxtrain.cli import main


def test_add_list_report_export_remove(home, tmp_path, capsys):
    c = fixture_path("mul8s_fxu16")
    assert main(["multipliers", "add", "fxu", str(c), "--integer", "8", "--signed", "--description", "fixture"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        "registered fxu: signed 8-bit integer multiplier, 65536 products -> "
        f"{home / 'multipliers' / 'fxu.amlut'} (power 0.425 mW, area 702.1 um^2, delay 1.52 ns)"
    )
    np.testing.assert_array_equal(multipliers.get("fxu").products, fixture_products("mul8s_fxu16"))

    assert main(["multipliers", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fxu\s+int8\s+-\s+user\s+fixture$", out, re.M)
    assert re.search(r"^mul8u_trunc4\s+uint8\s+-\s+shipped\s+unsigned array multiplier", out, re.M)
    assert re.search(r"^mul8s_mitchell\s+int8\s+-\s+shipped\s+Mitchell", out, re.M)
    assert re.search(r"^mbm7\s+7\s+truncate\s+shipped\s+minimally biased", out, re.M)

    assert main(["multipliers", "report", "fxu"]) == 0
    out = capsys.readouterr().out
    error = fixture_products("mul8s_fxu16") - exact_products(True)
    assert f"  WCE   {np.abs(error).max()}  " in out
    assert f"  MAE   {np.abs(error).mean():.4f}  " in out
    assert f"  EP    {100 * (error != 0).mean():.4f} %" in out
    assert "energy estimate 0.646 pJ per multiply (power x delay)" in out

    assert main(["multipliers", "export", "fxu", str(tmp_path / "fxu.bin")]) == 0
    assert (
        main(["multipliers", "add", "fxu2", "--from-table", str(tmp_path / "fxu.bin"), "--integer", "8", "--signed"])
        == 0
    )
    np.testing.assert_array_equal(multipliers.get("fxu2").products, multipliers.get("fxu").products)

    assert main(["multipliers", "remove", "fxu"]) == 0
    assert main(["multipliers", "remove", "fxu2"]) == 0
    assert registry_files(home) == []


def test_add_unsigned_evoapprox_style(home, capsys):
    assert main(["multipliers", "add", "fx64", str(fixture_path("mul8u_fx64")), "--integer", "8", "--unsigned"]) == 0
    np.testing.assert_array_equal(multipliers.get("fx64").products, fixture_products("mul8u_fx64"))
    assert main(["multipliers", "report", "mul8u_exact"]) == 0
    out = capsys.readouterr().out
    assert "  WCE   0  " in out and "  MAE   0.0000  " in out


def test_integer_needs_its_signedness_and_no_mantissa_bits(home, capsys):
    c = str(fixture_path("mul8u_fx64"))
    assert main(["multipliers", "add", "x", c, "--integer", "8"]) == 2
    assert (
        "approxtrain multipliers: error: --integer needs --signed (two's-complement operands) or --unsigned"
        in capsys.readouterr().err
    )
    assert main(["multipliers", "add", "x", c, "--integer", "8", "--signed", "--rounding", "nearest"]) == 2
    assert "--rounding applies to float multipliers, not to --integer ones" in capsys.readouterr().err
    assert main(["multipliers", "add", "x", c, "-m", "7", "--unsigned"]) == 2
    assert "--signed and --unsigned apply to --integer multipliers" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --mantissa-bits and --integer exclude each other
        main(["multipliers", "add", "x", c, "--integer", "8", "--signed", "-m", "7"])
    assert "argument --mantissa-bits/-m: not allowed with argument --integer" in capsys.readouterr().err
    assert registry_files(home) == []


def test_bad_integer_model_from_the_shell_registers_nothing(home, tmp_path, capsys):
    c = tmp_path / "wide.c"
    c.write_text("uint64_t wide(const uint64_t B, const uint64_t A) { return B * A * 2; }\n")
    assert main(["multipliers", "add", "wide", str(c), "--integer", "8", "--unsigned"]) == 2
    err = capsys.readouterr().err
    assert (
        f"approxtrain multipliers: error: multiplier wide ({c}:wide): for operands (129, 255) it returned "
        "65790 (0x100fe)" in err
    )
    assert registry_files(home) == []
