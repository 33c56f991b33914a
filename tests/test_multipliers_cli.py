"""`approxtrain multipliers list | add | remove | report` end to end."""

import re

import numpy as np
import pytest

from approxtrain import multipliers
from approxtrain.cli import main
from approxtrain.multipliers import metrics

PNG = b"\x89PNG\r\n\x1a\n"


def test_list(home, capsys):
    assert main(["multipliers", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mbm7\s+7\s+truncate\s+shipped\s+minimally biased", out, re.M)
    assert re.search(r"^bf16\s+7\s+nearest\s+shipped", out, re.M)
    assert re.search(r"^fp16m\s+10\s+nearest\s+shipped", out, re.M)


def test_add_list_remove(home, tmp_path, capsys):
    c = tmp_path / "half.c"
    c.write_text("float halfway(float a, float b) { return a * b; }\n")
    assert (
        main(
            [
                "multipliers",
                "add",
                "half",
                str(c),
                "--mantissa-bits",
                "4",
                "--rounding",
                "nearest",
                "--symbol",
                "halfway",
                "--description",
                "exact 4-bit",
            ]
        )
        == 0
    )
    assert "registered half: M=4, rounding=nearest, 256 entries" in capsys.readouterr().out
    assert (home / "multipliers" / "half.amlut").is_file()
    assert main(["multipliers", "list"]) == 0
    assert re.search(r"^half\s+4\s+nearest\s+user\s+exact 4-bit", capsys.readouterr().out, re.M)
    assert main(["multipliers", "remove", "half"]) == 0
    assert "half" not in multipliers.names()


def test_add_bad_model_is_an_error_message(home, tmp_path, capsys):
    c = tmp_path / "bad.c"
    c.write_text("float bad(float a, float b) { return 0.25f * a * b; }\n")
    assert main(["multipliers", "add", "bad", str(c), "--mantissa-bits", "3"]) == 2
    err = capsys.readouterr().err
    assert "approxtrain multipliers: error:" in err and "[ia=0, ib=0] = 0.25" in err
    assert not (home / "multipliers" / "bad.amlut").exists()


def test_add_needs_mantissa_bits(home, tmp_path):
    with pytest.raises(SystemExit):
        main(["multipliers", "add", "x", str(tmp_path / "x.c")])


def _row(out, label):
    cells = re.search(rf"^{label}\s+([-+\d.]+) %\s+([-+\d.]+) %\s+([-+\d.]+) %\s+([-+\d.]+) %", out, re.M)
    return [float(v) / 100 for v in cells.groups()]


def test_report(home, tmp_path, capsys):
    out_dir = tmp_path / "report"
    assert main(["multipliers", "report", "mbm7", "--out", str(out_dir), "--samples", "20000", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    m = multipliers.get("mbm7")
    for label, errors in (
        ("table pairs", metrics.table_relative_errors(m)),
        ("random float32", metrics.random_relative_errors(m, 20000, 5)),
    ):
        s = metrics.summarize(errors)
        np.testing.assert_allclose(_row(out, label), [s["bias"], s["mred"], s["max"], s["min"]], atol=1e-6)
    for png in ("mbm7_error_heatmap.png", "mbm7_error_hist.png"):
        path = out_dir / png
        assert str(path) in out
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_report_of_a_large_table_downsamples(home, tmp_path, capsys):
    assert main(["multipliers", "report", "fp16m", "--out", str(tmp_path), "--samples", "1000"]) == 0
    assert (tmp_path / "fp16m_error_heatmap.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("name, message", [("fp32", "not a table"), ("nope", "unknown multiplier 'nope'")])
def test_report_bad_name(home, tmp_path, capsys, name, message):
    assert main(["multipliers", "report", name, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
