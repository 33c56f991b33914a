"""Run folders: nothing lost and nothing silent (crashes, Ctrl-C, damaged files, old formats, NaN).

Each test reproduces a way a run used to go wrong and checks the fixed behaviour: the exact
message a user sees, a run folder holding one consistent version, and a resumed run whose
weights equal, bit for bit, those of a run that never stopped (fixed seed, same process kind).
Crashes and Ctrl-C happen to real `approxtrain` processes (SIGKILL through the test hook at
the exact point, a real SIGINT from here).
"""

import json
import os
import shutil
import signal

import pytest

tf = pytest.importorskip("tensorflow")

from _runs import (  # noqa: E402
    SMALL,
    Child,
    assert_one_consistent_version,
    assert_same_weights,
    checkpoint_state,
    history,
    needs_fashion,
    run_child,
)

from approxtrain import cli  # noqa: E402
from approxtrain.train.files import FORMAT_VERSION  # noqa: E402

pytestmark = needs_fashion
CHILD_TIMEOUT_S = 180


def train(out, *extra):
    return cli.main(["train", *SMALL, "--out", str(out), *extra])


def ckpt(out, epoch):
    return os.path.join(out, "checkpoint", f"epoch-{epoch:04d}.weights.h5")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run of 2 epochs that never stopped: what every resumed run must equal."""
    out = str(tmp_path_factory.mktemp("runs") / "uninterrupted")
    assert train(out, "--epochs", "2") == 0
    assert_one_consistent_version(out, 2)
    return out


def copy_run(source, tmp_path, name="copy"):
    out = str(tmp_path / name)
    shutil.copytree(source, out)
    return out


def test_kill_between_weights_and_state_resumes_like_an_uninterrupted_run(uninterrupted, tmp_path, capsys):
    out = str(tmp_path / "killed")
    # SIGKILL after epoch 2's weights file is in place, before state.json commits it: the old
    # code left epoch-2 weights under {"epoch": 1} here and resumed one epoch too far.
    rc, child = run_child(
        ["train", *SMALL, "--epochs", "2", "--out", out],
        CHILD_TIMEOUT_S,
        APPROXTRAIN_TEST_KILL_AT="checkpoint:weights-written:2",
    )
    assert rc == -signal.SIGKILL, child.stderr
    assert checkpoint_state(out)["epoch"] == 1  # epoch 2 was never committed
    assert os.path.exists(ckpt(out, 2))  # ... though its weights file was written
    assert [r["epoch"] for r in history(out)] == ["1", "2"]

    assert train(out, "--epochs", "2", "--resume") == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    assert_same_weights(ckpt(out, 2), ckpt(uninterrupted, 2))
    assert_one_consistent_version(out, 2)
    assert [r["loss"] for r in history(out)] == [r["loss"] for r in history(uninterrupted)]


def test_ctrl_c_ends_with_one_line_and_the_run_resumes(uninterrupted, tmp_path):
    out = str(tmp_path / "ctrl_c")
    child = Child(["train", *SMALL, "--epochs", "2", "--out", out], APPROXTRAIN_TEST_PAUSE_AT="epoch-begin:2")
    try:
        assert child.wait_for_line("approxtrain-test: paused at epoch-begin:2", CHILD_TIMEOUT_S), child.stderr
        child.process.send_signal(signal.SIGINT)
        rc = child.wait(60)
    finally:
        child.kill()
    assert rc == 130
    # All that Ctrl-C prints (the old code: ~30 lines of Keras internals).
    after = child.err_lines[child.err_lines.index("approxtrain-test: paused at epoch-begin:2") + 1 :]
    assert after == ["approxtrain train: interrupted after epoch 1; continue with --resume"], child.stderr
    assert_one_consistent_version(out, 1)

    assert cli.main(["train", *SMALL, "--out", out, "--epochs", "2", "--resume"]) == 0
    assert_same_weights(ckpt(out, 2), ckpt(uninterrupted, 2))
    assert_one_consistent_version(out, 2)


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(uninterrupted, tmp_path, capsys):
    out = copy_run(uninterrupted, tmp_path)
    os.remove(os.path.join(out, "results.json"))  # as if stopped right after epoch 2's checkpoint
    with open(ckpt(out, 2), "r+b") as f:  # a truncated weights file (disk full, bad copy)
        f.truncate(1000)
    assert train(out, "--epochs", "2", "--resume") == 0
    captured = capsys.readouterr()
    assert f"warning: {ckpt(out, 2)}: damaged (SHA-256 " in captured.err
    assert "warning: resuming from the epoch 1 checkpoint instead" in captured.err
    assert "resuming after epoch 1 of 2" in captured.out
    assert_same_weights(ckpt(out, 2), ckpt(uninterrupted, 2))
    assert_one_consistent_version(out, 2)


def test_every_damaged_run_file_is_named_in_one_error(uninterrupted, tmp_path, capsys):
    out = copy_run(uninterrupted, tmp_path)
    with open(os.path.join(out, "settings.json"), "w") as f:
        f.write("\x00\x00garbage")
    with open(os.path.join(out, "checkpoint", "state.json"), "w") as f:
        f.write("")
    with open(os.path.join(out, "results.json"), "w") as f:
        f.write('{"status": ')
    before = {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}
    assert train(out, "--epochs", "3", "--resume") == 2
    assert capsys.readouterr().err == (
        f"approxtrain train: error: run folder {out} has damaged files:\n"
        f"  {out}/settings.json: not valid JSON (Expecting value at line 1 column 1)\n"
        f"  {out}/checkpoint/state.json: empty\n"
        f"  {out}/results.json: not valid JSON (Expecting value at line 1 column 12)\n"
        f"restore them from a backup, or delete {out} (or train into another --out) to start the run again\n"
    )
    assert {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)} == before

    # Both checkpoints damaged: nothing to fall back to, both named.
    out = copy_run(uninterrupted, tmp_path, "both")
    for epoch in (1, 2):
        with open(ckpt(out, epoch), "r+b") as f:
            f.truncate(100)
    assert train(out, "--epochs", "3", "--resume") == 2
    err = capsys.readouterr().err
    assert f"  {ckpt(out, 2)}: damaged (SHA-256 " in err and f"  {ckpt(out, 1)}: damaged (SHA-256 " in err
    assert err.startswith(f"approxtrain train: error: run folder {out} has damaged files:\n")


def test_history_row_with_an_empty_cell_is_named_before_training(uninterrupted, tmp_path, capsys):
    out = copy_run(uninterrupted, tmp_path)
    path = os.path.join(out, "history.csv")
    lines = open(path).read().splitlines()
    cells = lines[1].split(",")
    cells[8] = ""  # train_time_s of epoch 1: once made every later --resume crash in _results
    lines[1] = ",".join(cells)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert train(out, "--epochs", "3", "--resume") == 2
    assert capsys.readouterr().err.splitlines()[1] == f"  {path}: line 2: column 'train_time_s' is empty"

    from approxtrain.train.files import DamagedRunFiles, read_history

    with pytest.raises(DamagedRunFiles, match="line 2: column 'train_time_s' is empty"):
        read_history(path)  # compare's tables read history.csv through the same check


def test_format_1_run_folder_keeps_loading(uninterrupted, tmp_path, capsys):
    """A folder of approxtrain before run folder versions: checkpoint/model.weights.h5 and
    state.json {"epoch": N}, settings.json without "format"."""
    out = copy_run(uninterrupted, tmp_path, "format1")
    os.remove(os.path.join(out, "results.json"))
    os.replace(ckpt(out, 1), os.path.join(out, "checkpoint", "model.weights.h5"))
    os.remove(ckpt(out, 2))
    with open(os.path.join(out, "checkpoint", "state.json"), "w") as f:
        json.dump({"epoch": 1}, f)
    settings = json.load(open(os.path.join(out, "settings.json")))
    del settings["format"]
    json.dump(settings, open(os.path.join(out, "settings.json"), "w"))
    rows = open(os.path.join(out, "history.csv")).read().splitlines()
    open(os.path.join(out, "history.csv"), "w").write("\n".join(rows[:2]) + "\n")

    assert train(out, "--epochs", "2", "--resume") == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    assert_same_weights(ckpt(out, 2), ckpt(uninterrupted, 2))
    assert json.load(open(os.path.join(out, "settings.json")))["format"] == FORMAT_VERSION
    assert [c["weights"] for c in checkpoint_state(out)["checkpoints"]] == ["model.weights.h5", "epoch-0002.weights.h5"]
    assert_one_consistent_version(out, 2)


def test_newer_run_folder_format_is_refused_with_what_to_do(uninterrupted, tmp_path, capsys):
    out = copy_run(uninterrupted, tmp_path, "future")
    settings = json.load(open(os.path.join(out, "settings.json")))
    json.dump({**settings, "format": FORMAT_VERSION + 1}, open(os.path.join(out, "settings.json"), "w"))
    assert train(out, "--epochs", "3", "--resume") == 2
    assert capsys.readouterr().err == (
        f"approxtrain train: error: {out}/settings.json is in run folder format {FORMAT_VERSION + 1}, written by a "
        f"newer approxtrain; this one reads formats 1 to {FORMAT_VERSION}: upgrade approxtrain to continue this run, "
        f"or train into another --out\n"
    )


def test_nan_loss_stops_naming_epoch_step_and_layer_and_the_last_checkpoint_resumes(tmp_path, capsys):
    out = str(tmp_path / "diverges")
    message = (
        f"approxtrain train: error: {out}: training stopped: the loss became nan at epoch 2, step 3 "
        f"(first non-finite output: layer 'logits' (Dense)); the last good checkpoint (epoch 1) is kept: "
        f"--resume continues from it\n"
    )
    assert train(out, "--epochs", "3", "--lr", "2.0") == 2
    assert capsys.readouterr().err == message
    assert_one_consistent_version(out, 1)
    assert not os.path.exists(os.path.join(out, "results.json"))
    # The kept checkpoint resumes: the same (deterministic) training reaches the same step.
    assert train(out, "--epochs", "3", "--lr", "2.0", "--resume") == 2
    captured = capsys.readouterr()
    assert "resuming after epoch 1 of 3" in captured.out and captured.err == message
    assert_one_consistent_version(out, 1)


def test_printed_errors_are_cut_to_a_readable_length():
    # What `fit` under MultiWorkerMirroredStrategy printed: a whole input batch in the message.
    dump = "\n".join(
        ["Graph execution error:", "Detected at node PerReplica defined at:"]
        + [f"  [{i}. 0. 0. 0. 0. 0. 0. 0.]" for i in range(330)]
        + ["TypeError: PerReplica ... unsupported type", "x" * 5000]
    )
    short = cli.shorten(dump)
    lines = short.splitlines()
    assert len(lines) == cli.MAX_ERROR_LINES and "... (320 lines cut) ..." in lines
    assert lines[:2] == ["Graph execution error:", "Detected at node PerReplica defined at:"]
    assert lines[-2] == "TypeError: PerReplica ... unsupported type"
    assert lines[-1] == "x" * 300 + " ... (4700 characters cut)"
    assert cli.shorten("one line") == "one line"


def test_interrupted_compare_says_how_to_continue():
    from approxtrain.train.run import Interrupted

    assert cli.interrupted_message("compare", Interrupted("runs/cmp/mbm7", 3)) == (
        "interrupted after epoch 3 of runs/cmp/mbm7; run the same command again to continue"
    )
    assert cli.interrupted_message("train", Interrupted("runs/x", 0)) == (
        "interrupted before the first epoch finished; nothing to resume, start it again"
    )
    assert cli.interrupted_message("train", KeyboardInterrupt()) == "interrupted"
