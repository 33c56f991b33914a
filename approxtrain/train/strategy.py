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
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multiworker")


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
    sending heartbeats (seconds) and aborts every collective op with a long UnavailableError."""
    import re

    text = str(error)
    if "unhealthy" in text:
        tasks = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text.split("unhealthy", 1)[1])
        names = sorted({f"{job} {task}" for job, task in tasks})
        return f"{', '.join(names) or 'a worker'} of the cluster stopped (no heartbeat)"
    if "coordination service" in text.lower() and ("Failed to send RPC" in text or "UNAVAILABLE" in text):
        return "the cluster's coordinator (the chief, or worker 0) cannot be reached: it stopped, or the network failed"
    return None
