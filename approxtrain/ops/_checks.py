"""Input conversion and checks shared by the op wrappers."""

import tensorflow as tf


def float32_tensor(x, what):
    """x as a float32 tensor; any other dtype is a TypeError (never silently cast)."""
    t = tf.convert_to_tensor(x)  # a variable is read here, under any active tape
    if t.dtype != tf.float32:
        raise TypeError(f"{what} must be float32, got {t.dtype.name} (AM ops compute in float32; cast explicitly)")
    return t


def require_rank(t, ranks, what):
    """ValueError unless t's static rank is known and in ``ranks``."""
    rank = t.shape.rank
    if rank is None:
        raise ValueError(f"{what} must have a known rank, got shape {t.shape}")
    if rank not in ranks:
        raise ValueError(f"{what} must have rank {' or '.join(map(str, ranks))}, got shape {t.shape}")
