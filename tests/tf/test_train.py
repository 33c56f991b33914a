"""`approxtrain train` and `compare` end to end on a few hundred Fashion-MNIST images."""

import json
import os

import pytest

tf = pytest.importorskip("tensorflow")

from _runs import SMALL, history, needs_fashion  # noqa: E402

from approxtrain import cli  # noqa: E402


def results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


@needs_fashion
def test_train_writes_history_results_checkpoint_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", *SMALL, "--epochs", "1", "--out", out]) == 0
    first = history(out)
    assert [r["epoch"] for r in first] == ["1"]
    assert float(first[0]["test_accuracy"]) > 0.2  # 10 classes: chance is 0.1
    assert float(first[0]["train_time_s"]) > 0
    res = results(out)
    assert res["epochs_completed"] == 1 and res["settings"]["multiplier"] == "fp32"
    assert res["final"]["test_accuracy"] == pytest.approx(float(first[0]["test_accuracy"]))
    assert res["dataset"]["num_train"] == 256 and res["dataset"]["num_test"] == 200
    assert res["versions"]["tensorflow"] == tf.__version__ and "build_info" in res
    assert os.path.exists(os.path.join(out, "checkpoint", "epoch-0001.weights.h5"))

    # Same directory without --resume: refused, nothing overwritten.
    assert cli.main(["train", *SMALL, "--epochs", "2", "--out", out]) == 2
    assert "pass --resume" in capsys.readouterr().err

    assert cli.main(["train", *SMALL, "--epochs", "2", "--out", out, "--resume"]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    second = history(out)
    assert [r["epoch"] for r in second] == ["1", "2"]
    assert second[0] == first[0]  # epoch 1 was not re-run
    assert results(out)["epochs_completed"] == 2
    with open(os.path.join(out, "checkpoint", "state.json")) as f:
        assert json.load(f)["epoch"] == 2

    # Other settings in the same directory: a clear error naming the difference.
    assert cli.main(["train", *SMALL, "--epochs", "3", "--lr", "0.2", "--out", out, "--resume"]) == 2
    assert "lr: 0.05 -> 0.2" in capsys.readouterr().err


@needs_fashion
def test_resumed_optimizer_state_continues(tmp_path):
    """Resuming restores the optimizer's step count: the cosine schedule continues from epoch 1."""
    out = str(tmp_path / "cos")
    args = ["train", *SMALL, "--lr-schedule", "cosine", "--out", out]
    assert cli.main([*args, "--epochs", "1"]) == 0
    assert cli.main([*args, "--epochs", "2", "--resume"]) == 0
    lrs = [float(r["lr"]) for r in history(out)]
    # Steps per epoch = 4; after 8 of 8 steps a cosine schedule reaches 0; after 4 of 8 it is lr/2.
    assert lrs[1] == pytest.approx(0.0, abs=1e-7)


@needs_fashion
def test_compare_writes_plot_table_summary_and_skips_finished_runs(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    names = ["fp32", "bf16"]
    argv = ["compare", *SMALL, "--epochs", "1", "--multipliers", ",".join(names), "--out", out]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"convergence plot: {out}/convergence.png" in printed
    with open(os.path.join(out, "convergence.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = open(os.path.join(out, "comparison.md")).read()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "multiplier" not in line]
    assert [r.split("|")[1].strip() for r in rows] == names
    assert "| +0.00 |" in rows[0]  # fp32's delta to itself
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert [r["multiplier"] for r in summary["runs"]] == names
    for name, row in zip(names, summary["runs"]):
        assert row["final_test_accuracy"] == results(os.path.join(out, name))["final"]["test_accuracy"]
    stamp = os.path.getmtime(os.path.join(out, "fp32", "results.json"))

    assert cli.main(argv) == 0  # everything done: nothing retrained
    assert "already finished, skipped" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(out, "fp32", "results.json")) == stamp


@needs_fashion
def test_bad_multiplier_and_model_fail_fast(tmp_path, capsys):
    out = str(tmp_path / "bad")
    assert cli.main(["train", *SMALL, "--model", "vgg", "--out", out]) == 2
    assert "unknown model 'vgg'" in capsys.readouterr().err
    assert cli.main(["train", *SMALL, "--multiplier", "mbm8", "--out", out]) == 2
    assert "unknown multiplier 'mbm8'; known: fp32, bf16" in capsys.readouterr().err
    assert not os.path.exists(out)  # failed before anything was written
    assert cli.main(["compare", *SMALL, "--multipliers", "fp32,fp32", "--out", out]) == 2
    assert "lists fp32 more than once" in capsys.readouterr().err


@needs_fashion
def test_mirrored_strategy_trains(tmp_path):
    out = str(tmp_path / "mirrored")
    assert cli.main(["train", *SMALL, "--epochs", "1", "--strategy", "mirrored", "--out", out]) == 0
    res = results(out)
    assert res["machine"]["strategy"] == "MirroredStrategy" and res["machine"]["num_replicas"] >= 1
    assert res["final"]["test_accuracy"] > 0.2


def test_cifar_resnet_from_data_dir_with_model_options(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (48, 1))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    out = str(tmp_path / "resnet")
    argv = [
        "train",
        "--model",
        "resnet20",
        "--model-option",
        "width=4",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--verbose",
        "0",
        "--optimizer",
        "adam",
        "--lr-schedule",
        "step",
        "--out",
        out,
    ]
    assert cli.main(argv) == 0
    res = results(out)
    assert res["model"]["options"] == {"width": 4} and res["dataset"]["augment"] is True
    assert res["dataset"]["source"] == str(tmp_path / "cifar10.npz")
    assert res["settings"]["optimizer"] == "adam" and res["settings"]["lr"] == 1e-3
