"""tf.distribute strategies by name, and which worker writes the run's files."""

import tensorflow as tf

# One MirroredStrategy per device set and process: a second strategy over the same
# devices reuses TF's collective instance keys, and the first all-reduce of the next
# model then aborts with "Shape mismatch in the collective instance" (tensorflow#62790).
# `compare` trains several models in one process, so it needs the same strategy each time.
_MIRRORED = {}


def mirrored_strategy(devices=None):
    """The process's MirroredStrategy over `devices` (default: what TF picks: all GPUs, else the CPUs)."""
    strategy = tf.distribute.MirroredStrategy(list(devices) if devices else None)
    key = tuple(sorted(strategy.extended.worker_devices))
    return _MIRRORED.setdefault(key, strategy)


def make_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return mirrored_strategy()
    if name == "multiworker":  # cluster from the TF_CONFIG environment variable
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multiworker")


def check_tf_config():
    """TF_CONFIG must name a cluster and this process's place in it; without one TensorFlow
    would quietly train on this machine alone."""
    import json
    import os

    text = os.environ.get("TF_CONFIG", "")
    how = "set TF_CONFIG on every worker (see the README, 'On several machines')"
    if not text.strip():
        raise ValueError(f"--strategy multiworker needs TF_CONFIG, the cluster and this worker's index: {how}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        cluster[task["type"]][task["index"]]  # noqa: B018 - KeyError/IndexError: this worker is not listed
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(
            f"TF_CONFIG is not a cluster with this worker in it ({type(e).__name__}: {e}): {how}; got {text[:200]!r}"
        ) from None


def is_chief(strategy):
    """True on the one worker that writes history, checkpoints and results."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def is_multiworker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def lost_worker(error):
    """What a tf.errors.OpError says about a worker of the cluster that stopped, or None.

    Under MultiWorkerMirroredStrategy TF's coordination service notices a worker that stops
    sending heartbeats (seconds) and aborts every collective op with a long UnavailableError;
    a collective op whose peer is gone fails with the peer's closed connection."""
    import re

    text = str(error)
    if "unhealthy" in text:
        tasks = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text.split("unhealthy", 1)[1])
        names = sorted({f"{job} {task}" for job, task in tasks})
        return f"{', '.join(names) or 'a worker'} of the cluster stopped (no heartbeat)"
    if "coordination service" in text.lower() and ("Failed to send RPC" in text or "UNAVAILABLE" in text):
        return "the cluster's coordinator (the chief, or worker 0) cannot be reached: it stopped, or the network failed"
    gone = ("Socket closed", "Connection refused", "Connection reset", "failed to connect to all addresses")
    peer = re.search(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", text)
    if peer and any(sign in text for sign in gone):
        return f"{peer.group(1)} {peer.group(2)} of the cluster stopped (its connection closed)"
    return None
