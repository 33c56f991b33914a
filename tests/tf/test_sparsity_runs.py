"""`approxtrain train/compare` with sparsity flags: resume bit for bit, results.json, bad values."""

import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from _runs import SMALL, assert_same_weights, checkpoint_state, needs_fashion, run_child  # noqa: E402

from approxtrain import cli  # noqa: E402

# SMALL: 256 images in batches of 64, 4 steps per epoch; the sparsity updates straddle epoch 1's end.
PRUNE = [
    "--prune",
    "0.8",
    "--prune-start",
    "0.25",
    "--prune-end",
    "1.75",
    "--prune-every",
    "1",
    "--prune-scope",
    "global",
]
CHASE = ["--dst", "chase", "--sparsity", "0.8", "--channel-sparsity", "0.25", "--dst-end", "1.5",
         "--dst-update-every", "1", "--multiplier", "mbm7"]  # fmt: skip


def results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def latest(out, key):
    entry = checkpoint_state(out)["checkpoints"][-1]
    return os.path.join(out, "checkpoint", entry[key])


def sparsity_arrays(path):
    with np.load(path, allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}


@needs_fashion
@pytest.mark.parametrize(
    "flags, killed",
    [
        pytest.param(PRUNE, False, id="prune"),
        pytest.param(CHASE, False, id="chase"),
        pytest.param(CHASE, True, id="chase-killed", marks=pytest.mark.slow),  # a second process: ~40 s
    ],
)
def test_resumed_sparse_run_equals_the_uninterrupted_one(tmp_path, flags, killed):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert cli.main(["train", *SMALL, *flags, "--epochs", "2", "--out", whole]) == 0
    if killed:  # a process killed (SIGKILL) as epoch 2 begins
        rc, child = run_child(["train", *SMALL, *flags, "--epochs", "2", "--out", parts], timeout=300,
                              APPROXTRAIN_TEST_KILL_AT="epoch-begin:2")  # fmt: skip
        assert rc == -9, child.stderr
        assert checkpoint_state(parts)["epoch"] == 1
    else:  # a run of 1 epoch, continued to 2
        assert cli.main(["train", *SMALL, *flags, "--epochs", "1", "--out", parts]) == 0
    assert cli.main(["train", *SMALL, *flags, "--epochs", "2", "--out", parts, "--resume"]) == 0
    assert_same_weights(latest(parts, "weights"), latest(whole, "weights"))
    got, want = sparsity_arrays(latest(parts, "sparsity")), sparsity_arrays(latest(whole, "sparsity"))
    assert sorted(got) == sorted(want) and int(want["step"]) == 8
    assert any(k.startswith("mask/") for k in want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # The masks changed during epoch 2 (the resumed part), so the equality is not vacuous.
    first = sparsity_arrays(os.path.join(parts, "checkpoint", "epoch-0001.sparsity.npz"))
    assert any(np.any(first[k] != want[k]) for k in want if k.startswith("mask/"))
    assert results(parts)["sparsity"] == results(whole)["sparsity"]


@needs_fashion
def test_sparsity_flags_round_trip_into_results_and_model_keras(tmp_path):
    import keras

    import approxtrain.layers  # noqa: F401 - registers the AM layers

    out = str(tmp_path / "chase")
    assert cli.main(["train", *SMALL, *CHASE, "--epochs", "2", "--out", out]) == 0
    res = results(out)
    assert res["settings"]["sparsity"] == {
        "method": "chase", "sparsity": 0.8, "channel_sparsity": 0.25, "end": 1.5, "update_every": 1,
        "drop_fraction": 0.3, "distribution": "erk", "exploration": "layer", "channel_score": "umm",
        "channel_scope": "global", "min_channels": 0.5,
    }  # fmt: skip
    assert res["sparsity"]["settings"] == res["settings"]["sparsity"]
    model = keras.saving.load_model(os.path.join(out, "model.keras"), compile=False)
    kernels = [layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    assert res["sparsity"]["weight_sparsity"] == zeros / sum(k.size for k in kernels)
    assert res["sparsity"]["weight_sparsity"] >= 0.8
    # lenet300100's hidden layers: 300 and 100 units, ranked together, a quarter of all 400 removed,
    # each keeping at least floor(0.5 * 0.75 * n) (Chase's global removal, beta 0.5).
    assert res["sparsity"]["channel_sparsity"] == (75 + 25) / 400
    removed = []
    for row, name, floor in zip(res["sparsity"]["layers"], ("fc1", "fc2"), (112, 37)):
        kernel = model.get_layer(name).kernel.numpy()
        assert row["removed_channels"] == int((np.abs(kernel).sum(axis=0) == 0).sum())
        assert row["channels"] - row["removed_channels"] >= floor
        removed.append(row["removed_channels"])
    assert sum(removed) == 100
    # Dense layers use each weight once per example: multiplies skipped = zero weights' share.
    assert res["sparsity"]["multiplies_skipped"] == pytest.approx(res["sparsity"]["weight_sparsity"])
    assert res["approx_dropout"] == {"pattern": None, "rate": None}
    # export-slim: the removed channels physically gone, the outputs the same.
    assert cli.main(["export-slim", out]) == 0
    slim = keras.saving.load_model(os.path.join(out, "model_slim.keras"), compile=False)
    assert [slim.get_layer(n).kernel.shape[-1] for n in ("fc1", "fc2", "logits")] == [
        300 - removed[0], 100 - removed[1], 10,
    ]  # fmt: skip
    x = np.random.default_rng(0).uniform(0, 1, size=(16, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(slim(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)

    out = str(tmp_path / "prune")
    assert cli.main(["train", *SMALL, "--prune", "0.5", "--prune-schedule", "oneshot", "--epochs", "1",
                     "--out", out]) == 0  # fmt: skip
    res = results(out)
    assert res["settings"]["sparsity"] == {
        "method": "prune", "target": 0.5, "schedule": "oneshot", "start": 0.5, "end": 0.5, "every": None,
        "scope": "layer",
    }  # fmt: skip
    assert res["sparsity"]["weight_sparsity"] == pytest.approx(0.5, abs=1e-5)


@needs_fashion
def test_chase_rules_are_recorded_and_older_settings_read_as_the_defaults():
    from approxtrain.sparsity import settings
    from approxtrain.sparsity.chase import Chase
    from approxtrain.train.config import TrainConfig

    recorded = settings.chase_settings(0.9, 0.3, epochs=4, exploration="global")
    assert recorded["exploration"] == "global" and recorded["channel_score"] == "umm"
    callback = settings.make_callback(recorded, steps_per_epoch=10)
    assert isinstance(callback, Chase) and callback.exploration == "global"
    assert (callback.channel_score, callback.channel_scope, callback.min_channels) == ("umm", "global", 0.5)
    # A run folder written before the rules were recorded: its settings lack the four keys.
    older = {k: v for k, v in recorded.items() if k not in settings.CHASE_RULES}
    config = TrainConfig(model="lenet5", dataset="fashion_mnist", out="unused", sparsity=older)
    assert config.sparsity == {**recorded, "exploration": "layer"}
    with pytest.raises(ValueError, match="--dst-exploration must be one of layer, global, got 'wide'"):
        settings.validate({**recorded, "exploration": "wide"}, 4)
    with pytest.raises(ValueError, match="min_channels must be a fraction"):
        settings.validate({**recorded, "min_channels": 2}, 4)
    with pytest.raises(TypeError, match=r"unknown rule\(s\) \['beta'\]"):
        settings.chase_settings(0.9, beta=0.5)


def test_dst_exploration_flag_reaches_the_recorded_settings(tmp_path):
    out = str(tmp_path / "chase")
    assert cli.main(["train", *SMALL, *CHASE, "--dst-exploration", "global", "--epochs", "1", "--out", out]) == 0
    assert results(out)["settings"]["sparsity"]["exploration"] == "global"


def test_approx_dropout_flags_become_model_options_and_are_recorded(tmp_path, capsys):
    out = str(tmp_path / "drop")
    argv = ["train", *SMALL, "--epochs", "1", "--approx-dropout", "tile", "--dropout-rate", "0.25", "--out", out]
    assert cli.main(argv) == 0
    res = results(out)
    assert res["settings"]["model_options"] == {"approx_dropout": "tile", "dropout_rate": 0.25}
    assert res["model"]["options"] == res["settings"]["model_options"]
    # 784 -> 300 -> 100 -> 10, tiles of 32 rows: round(25 * 0.75) = 19 of 25 row tiles kept in fc1,
    # round(10 * 0.75) = 8 of 10 in fc2; the logits layer multiplies all (tile patterns keep every unit)
    kept = 784 * 300 * 19 / 25 + 300 * 100 * 8 / 10 + 100 * 10
    assert res["approx_dropout"] == {"pattern": "tile", "rate": 0.25,
                                     "multiplies_skipped": pytest.approx(1 - kept / 266_200, rel=1e-12)}  # fmt: skip
    assert "approximate random dropout skips" in capsys.readouterr().out
    assert res["settings"]["sparsity"] is None and res["sparsity"]["weight_sparsity"] == 0.0
    argv = ["train", *SMALL, "--model-option", "approx_dropout=row", "--approx-dropout", "tile", "--out", out + "2"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.endswith(
        "approxtrain train: error: --model-option approx_dropout='row' contradicts --approx-dropout tile\n"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--prune", "1.5"], "--prune must be a fraction in (0, 1), got 1.5"),
        (["--dst", "chase", "--sparsity", "-1"], "--sparsity must be a fraction in (0, 1), got -1.0"),
        (["--dst", "chase", "--sparsity", "0.9", "--channel-sparsity", "1"],
         "--channel-sparsity must be a fraction in [0, 1), got 1.0"),
        (["--prune", "0.5", "--prune-end", "-1"], "--prune-end must be a number of epochs >= 0, got -1.0"),
        (["--prune", "0.5", "--prune-start", "1", "--prune-end", "0.5"],
         "--prune-end (0.5) must not come before --prune-start (1.0)"),
        (["--prune", "0.5", "--dst", "chase"], "choose one of --prune and --dst"),
        (["--sparsity", "0.5"], "--sparsity 0.5 needs --dst chase"),
        (["--dst", "chase"], "--dst chase needs --sparsity S (e.g. 0.9)"),
        (["--prune-end", "1"], "--prune-end 1.0 needs --prune S"),
        (["--approx-dropout", "row", "--dropout-rate", "1.2"], "--dropout-rate must be a fraction in [0, 1), got 1.2"),
    ],
)  # fmt: skip
def test_bad_sparsity_values_are_named(tmp_path, capsys, flags, message):
    out = str(tmp_path / "bad")
    assert cli.main(["train", *SMALL, "--epochs", "2", *flags, "--out", out]) == 2
    assert capsys.readouterr().err == f"approxtrain train: error: {message}\n"
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    "variants, message",
    [
        ("dense,prune1.5", "variant 'prune1.5' must be a fraction in (0, 1), got 1.5"),
        ("dense,magic", "--sparsity-variants: unknown variant 'magic'; use dense, prune<S> (e.g. prune0.9), "
                        "chase<S> or chase<S>c<C> (e.g. chase0.9c0.3)"),
        ("dense,dense", "--sparsity-variants lists dense more than once"),
    ],
)  # fmt: skip
def test_bad_sparsity_variants_are_named(tmp_path, capsys, variants, message):
    out = str(tmp_path / "cmp")
    argv = ["compare", *SMALL, "--epochs", "1", "--multipliers", "fp32", "--sparsity-variants", variants, "--out", out]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"approxtrain compare: error: {message}\n"


@needs_fashion
@pytest.mark.slow
def test_compare_sparsity_variants_writes_the_table_and_plot(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    argv = ["compare", *SMALL, "--epochs", "1", "--multipliers", "fp32,mbm7", "--sparsity-variants",
            "dense,prune0.9,chase0.9c0.25", "--prune-end", "0.5", "--out", out]  # fmt: skip
    assert cli.main(argv) == 0
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["variants"] == ["dense", "prune0.9", "chase0.9c0.25"] and summary["multipliers"] == ["fp32", "mbm7"]
    for label, cell in summary["cells"].items():
        assert cell["test_accuracy"] == results(os.path.join(out, *label.split("/")))["final"]["test_accuracy"]
    assert summary["cells"]["dense/mbm7"]["weight_sparsity"] == 0.0
    assert summary["cells"]["prune0.9/fp32"]["weight_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert summary["cells"]["chase0.9c0.25/mbm7"]["channel_sparsity"] == 0.25
    with open(os.path.join(out, "comparison.md")) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith(("| fp32 |", "| mbm7 |"))]
    assert len(rows) == 2
    for row, name in zip(rows, ["fp32", "mbm7"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        want = [f"{100 * summary['cells'][f'{v}/{name}']['test_accuracy']:.2f}" for v in summary["variants"]]
        assert cells == [name, *want]
    with open(os.path.join(out, "accuracy_vs_sparsity.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@needs_fashion
def test_a_damaged_sparsity_file_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", *SMALL, *PRUNE, "--epochs", "2", "--out", out]) == 0
    path = os.path.join(out, "checkpoint", "epoch-0002.sparsity.npz")
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00garbage\x00")
    capsys.readouterr()
    assert cli.main(["train", *SMALL, *PRUNE, "--epochs", "3", "--out", out, "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {path}: damaged (SHA-256 " in captured.err
    assert "resuming after epoch 1 of 3" in captured.out
    state = checkpoint_state(out)
    assert [c["epoch"] for c in state["checkpoints"]] == [2, 3]
    assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == [
        "epoch-0002.sparsity.npz", "epoch-0002.weights.h5", "epoch-0003.sparsity.npz", "epoch-0003.weights.h5",
        "state.json",
    ]  # fmt: skip
    assert int(sparsity_arrays(latest(out, "sparsity"))["step"]) == 12
