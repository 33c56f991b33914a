"""`approxtrain bench`: each section's own options are on the command line and reach the section."""

import json

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
