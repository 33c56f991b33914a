"""Helpers of the run-folder and multi-worker tests: real `approxtrain` processes and run files."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from approxtrain.data.catalog import FASHION_MNIST_SYSTEM_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The offline Fashion-MNIST (Debian package dataset-fashion-mnist): skipped without it, which
# fails the run on CI (tests/conftest.py).
needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_SYSTEM_DIR),
    reason=f"the offline Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_DIR}: apt-get install dataset-fashion-mnist",
)

# `approxtrain train` on a few hundred images: seconds per epoch.
SMALL = ["--model", "lenet300100", "--dataset", "fashion_mnist", "--subset", "256", "--test-subset", "200",
         "--batch-size", "64", "--verbose", "0", "--seed", "3"]  # fmt: skip


def child_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Child:
    """`python -m approxtrain ARGS` in its own process; stderr collected line by line."""

    def __init__(self, args, **env):
        # A shell starts a background job (`pytest ... &`) with SIGINT ignored, and an ignored
        # signal stays ignored across exec: the child would then never see the Ctrl-C a test
        # sends. A handled signal is reset to its default by exec, so hold it handled meanwhile.
        inherited = signal.getsignal(signal.SIGINT)
        if inherited == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "approxtrain", *args],
                cwd=REPO,
                env=child_env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            signal.signal(signal.SIGINT, inherited)
        self.out_lines, self.err_lines = [], []
        self._readers = [
            threading.Thread(target=self._read, args=(s, lines), daemon=True)
            for s, lines in ((self.process.stdout, self.out_lines), (self.process.stderr, self.err_lines))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for_line(self, text, timeout):
        """Waits until stderr holds a line containing `text`; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.err_lines):
                return True
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                return any(text in line for line in self.err_lines)
            time.sleep(0.1)
        return False

    def wait(self, timeout):
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"approxtrain {' '.join(self.process.args[3:])}: no exit within {timeout} s; its stderr:\n"
                        + self.stderr)  # fmt: skip
        for reader in self._readers:
            reader.join(timeout=5)
        return rc

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    @property
    def stderr(self):
        return "\n".join(self.err_lines)

    @property
    def stdout(self):
        return "\n".join(self.out_lines)


def run_child(args, timeout, **env):
    """Runs `approxtrain ARGS` to its end (killed after `timeout` s); returns (rc, Child)."""
    child = Child(args, **env)
    try:
        return child.wait(timeout), child
    finally:
        child.kill()


def weights(path):
    """Every array of a .weights.h5 file (model and optimizer variables) by its HDF5 name."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def assert_same_weights(got_path, want_path, atol=0.0, rtol=0.0):
    got, want = weights(got_path), weights(want_path)
    assert sorted(got) == sorted(want)
    assert any(name.startswith("optimizer/") for name in got)  # momenta and step count too
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=rtol, err_msg=name)


def checkpoint_state(out):
    with open(os.path.join(out, "checkpoint", "state.json")) as f:
        return json.load(f)


def history(out):
    with open(os.path.join(out, "history.csv")) as f:
        return list(csv.DictReader(f))


def assert_one_consistent_version(out, epochs):
    """The folder holds epochs 1..`epochs` once: state.json names exactly the checkpoint files
    there, with their hashes, the newest of epoch `epochs`; history has one row per epoch."""
    from approxtrain.train.checkpoint import file_sha256

    state = checkpoint_state(out)
    assert state["format"] == 2 and state["epoch"] == epochs
    assert state["checkpoints"][-1]["epoch"] == epochs
    named = {c["weights"] for c in state["checkpoints"]}
    assert set(os.listdir(os.path.join(out, "checkpoint"))) == named | {"state.json"}
    for c in state["checkpoints"]:
        assert file_sha256(os.path.join(out, "checkpoint", c["weights"])) == c["sha256"]
    assert [int(r["epoch"]) for r in history(out)] == list(range(1, epochs + 1))
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
