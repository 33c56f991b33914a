"""`approxtrain train --strategy multiworker`: two real worker processes on 127.0.0.1.

Keras 3's fit fails on the first batch under MultiWorkerMirroredStrategy; `train` runs its own
loop on TensorFlow's distribution engine instead. Each worker takes half of every global
batch, so after N steps the weights must equal a single process's over the same global
batches. They cannot be bit-identical: each worker sums the products of its half batch and
the two halves' gradients are then added, another float32 summation order of the same
(table-given) products. Measured difference after 4 steps of LeNet-5/mbm7: 3e-8; bound: 1e-6.
"""

import json
import os
import socket
import time

import pytest

tf = pytest.importorskip("tensorflow")

from _runs import Child, assert_one_consistent_version, assert_same_weights, history, needs_fashion  # noqa: E402

from approxtrain import cli  # noqa: E402

pytestmark = needs_fashion

LENET5 = [
    "--model",
    "lenet5",
    "--multiplier",
    "mbm7",
    "--dataset",
    "fashion_mnist",
    "--subset",
    "256",
    "--test-subset",
    "64",
    "--batch-size",
    "64",
    "--verbose",
    "0",
    "--seed",
    "5",
]
WORKER_TIMEOUT_S = 240  # two TensorFlow processes starting on two shared cores
ATOL, RTOL = 1e-6, 1e-5


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def start_cluster(outs, extra, env_per_worker=({}, {})):
    ports = free_ports(2)
    return [
        Child(
            ["train", *LENET5, "--strategy", "multiworker", "--out", out, *extra],
            TF_CONFIG=tf_config(ports, index),
            **env,
        )
        for index, (out, env) in enumerate(zip(outs, env_per_worker))
    ]


def wait_all(workers, timeout):
    deadline = time.monotonic() + timeout
    return [w.wait(max(1.0, deadline - time.monotonic())) for w in workers]


def single_process_run(out, epochs):
    assert cli.main(["train", *LENET5, "--epochs", str(epochs), "--out", out]) == 0


def ckpt(out, epoch):
    return os.path.join(out, "checkpoint", f"epoch-{epoch:04d}.weights.h5")


def test_two_workers_equal_one_process_and_only_the_chief_writes(tmp_path):
    chief_out, worker_out = str(tmp_path / "chief"), str(tmp_path / "worker1")
    workers = start_cluster([chief_out, worker_out], ["--epochs", "1"])
    try:
        single = str(tmp_path / "single")
        single_process_run(single, 1)  # meanwhile, in this process
        rcs = wait_all(workers, WORKER_TIMEOUT_S)
    finally:
        for w in workers:
            w.kill()
    assert rcs == [0, 0], "\n---\n".join(w.stderr[-3000:] for w in workers)
    assert_same_weights(ckpt(chief_out, 1), ckpt(single, 1), atol=ATOL, rtol=RTOL)
    assert_one_consistent_version(chief_out, 1)
    assert float(history(chief_out)[0]["loss"]) == pytest.approx(float(history(single)[0]["loss"]), rel=1e-5)
    assert not os.path.exists(worker_out)  # chief-only writes
    assert "the chief worker writes the run folder" in workers[1].stdout


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_clearly_and_the_run_resumes(tmp_path):
    chief_out, worker_out = str(tmp_path / "chief"), str(tmp_path / "worker1")
    # Worker 1 dies (SIGKILL) as epoch 2 begins; the chief has committed epoch 1.
    workers = start_cluster(
        [chief_out, worker_out], ["--epochs", "2"], ({}, {"APPROXTRAIN_TEST_KILL_AT": "epoch-begin:2"})
    )
    try:
        assert workers[1].wait(WORKER_TIMEOUT_S) == -9
        killed_at = time.monotonic()
        rc = workers[0].wait(90)  # TF's coordination service misses its heartbeats within seconds
        stopped_after = time.monotonic() - killed_at
    finally:
        for w in workers:
            w.kill()
    assert rc == 2 and stopped_after < 90
    assert workers[0].err_lines[-1] == (
        f"approxtrain train: error: {chief_out}: training stopped: worker 1 of the cluster stopped (no heartbeat). "
        f"The run folder keeps the last finished epoch (1); start every worker again with --resume to continue"
    )
    assert_one_consistent_version(chief_out, 1)

    workers = start_cluster([chief_out, worker_out], ["--epochs", "2", "--resume"])
    try:
        single = str(tmp_path / "single")
        single_process_run(single, 2)
        rcs = wait_all(workers, WORKER_TIMEOUT_S)
    finally:
        for w in workers:
            w.kill()
    assert rcs == [0, 0], "\n---\n".join(w.stderr[-3000:] for w in workers)
    assert "resuming after epoch 1 of 2" in workers[0].stdout
    assert_same_weights(ckpt(chief_out, 2), ckpt(single, 2), atol=ATOL, rtol=RTOL)
    assert_one_consistent_version(chief_out, 2)
    assert not os.path.exists(worker_out)


def test_multiworker_without_tf_config_says_what_to_set(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = str(tmp_path / "run")
    assert cli.main(["train", *LENET5, "--strategy", "multiworker", "--out", out]) == 2
    assert capsys.readouterr().err == (
        "approxtrain train: error: --strategy multiworker needs TF_CONFIG, the cluster and this worker's index: "
        "set TF_CONFIG on every worker (see the README, 'On several machines')\n"
    )
    assert not os.path.exists(out)
