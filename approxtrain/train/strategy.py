"""tf.distribute strategies by name, and which worker writes the run's files."""
import tensorflow as tf


def make_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
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
