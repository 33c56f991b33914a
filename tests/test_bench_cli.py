"""`approxtrain bench`: each section's own options are on the command line and reach the section."""

import json
import subprocess
import sys

import pytest

from approxtrain import cli
from approxtrain.bench import core_cpu


def test_core_cpu_options_reach_the_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(core_cpu, "SETTLE_SECONDS", 0.0)
    repeats, threads = [], []
    timed = core_cpu._median_times
    monkeypatch.setattr(core_cpu, "_median_times", lambda fns, n: repeats.append(n) or timed(fns, n))
    monkeypatch.setattr(core_cpu.core, "set_num_threads", threads.append)  # the pool stays as it is
    out = tmp_path / "rows.json"
    argv = [
        "bench",
        "--section",
        "core_cpu",
        "--quick",
        "--sizes",
        "16,24",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert cli.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["m"] for r in rows] == [16, 24]  # not --quick's sizes
    assert repeats == [2, 2] and threads == [1]  # not --quick's 3 repeats
    assert "median of 2" in capsys.readouterr().out


def test_section_options_are_listed_and_parsed():
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--quick", "--sizes", "256,512", "--repeats", "3", "--tf-repeats", "4"])
    assert (args.sizes, args.repeats, args.threads, args.tf_repeats, args.quick) == ([256, 512], 3, None, 4, True)
    help_text = parser._subparsers._group_actions[0].choices["bench"].format_help()
    assert "section core_cpu:" in help_text and "--sizes SIZES" in help_text and "section tf_ops:" in help_text


def test_zoo_section_quick_rows(tmp_path):
    """`bench --section zoo --quick` runs each model in its own process; rows carry the ratios, the
    step's peak RSS growth and the CPU path that ran (here the forced AVX2-only choice)."""
    from approxtrain.bench import zoo

    out = tmp_path / "zoo.json"
    argv = ["bench", "--section", "zoo", "--quick", "--models", "lenet300100", "--sizes", "4", "--threads", "1"]
    assert cli.main([*argv, "--path", "no-avx512", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert (row["section"], row["model"], row["batch"], row["threads"]) == ("zoo", "lenet300100", 4, 1)
    # what an AVX2 CPU runs: mbm7 on the bucket GEMM, bf16's exact-product table as floats
    assert (row["cpu_path"], row["cpu_gemm_paths"]) == ("no-avx512", {"mbm7": "avx2", "bf16": "float-avx2"})
    for v in ("fp32", *zoo.DEFAULT_MULTIPLIERS):
        assert row[f"{v}_ms"] > 0 and row[f"{v}_peak_mib"] >= 0
    assert row["mbm7_over_fp32"] == pytest.approx(row["mbm7_ms"] / row["fp32_ms"], rel=1e-12)
    assert row["bf16_over_fp32"] == pytest.approx(row["bf16_ms"] / row["fp32_ms"], rel=1e-12)


def test_zoo_section_takes_integer_multipliers(tmp_path):
    out = tmp_path / "zoo.json"
    argv = ["bench", "--section", "zoo", "--quick", "--models", "lenet5", "--sizes", "4", "--threads", "1",
            "--zoo-multipliers", "mul8s_exact", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["mul8s_exact_over_fp32"] == pytest.approx(row["mul8s_exact_ms"] / row["fp32_ms"], rel=1e-12)
    assert "mbm7_ms" not in row and row["mul8s_exact_peak_mib"] >= 0


def test_zoo_options_are_checked(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--section", "zoo", "--models", "resnet20,transformer", "--path", "avx2"])
    assert (args.models, args.path) == (["resnet20", "transformer"], "avx2")
    args = parser.parse_args(["bench", "--zoo-multipliers", "mul8s_exact,bf16"])
    assert args.zoo_multipliers == ("mul8s_exact", "bf16")
    for bad, message in (("mbm9", "unknown multiplier 'mbm9'"), ("fp32", "unknown multiplier 'fp32'"),
                         ("bf16,bf16", "give distinct multiplier names")):  # fmt: skip
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "--zoo-multipliers", bad])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--models", "resnet21"])
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--path", "sse9"])


def test_zoo_peak_memory_sees_a_step_that_holds_memory():
    """The peak-RSS measure is real: a 'step' touching 64 MiB shows at least that, an empty one ~0.
    (In a child process: the measure changes glibc's malloc settings for the process.)"""
    code = (
        "import json, numpy as np\n"
        "from approxtrain.bench import zoo\n"
        "def hold_64_mib():\n"
        "    return float(np.ones(64 << 18, np.float32)[-1])  # 64 MiB, every page written\n"
        "print(json.dumps(zoo._step_peak_mib([hold_64_mib, lambda: None], rounds=2)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    held, empty = json.loads(proc.stdout)
    assert 60 <= held < 80 and empty < 8
