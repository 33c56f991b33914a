"""Structured dropout patterns (Song et al., "Approximate Random Dropout", arXiv 2203.05705).

A pattern is drawn at every training step for a whole group of consecutive examples (the
whole mini-batch in the paper; `group_size` rows here, see below), so the GEMM that produces
the dropped values runs on compacted operands instead of being masked:

- ``row``: a random subset of whole output units (the rows of the paper's [out, in] weight
  matrix, the columns of a Keras kernel [in, out]) -- neuron dropout.
- ``tile``: the kernel [in, out] is cut into tiles of ``tile = (rows, cols)``; in every column
  block of tiles the same number of row tiles is kept, a random subset per block --
  DropConnect by whole tiles (synapse dropout).

The count kept is fixed, ``max(1, round(n * (1 - rate)))`` of n units (of n row tiles per
column block), so each step costs the same and the kept share is exact for row patterns.
The paper draws from a searched distribution over periodic patterns; here every subset of
that size is equally likely, which is the distribution of per-element dropout conditioned
on the count kept.

Groups: with one pattern for the whole batch (group_size None, the paper's) every example of
a step trains the same sub-network, so the gradient noise of dropout no longer averages over
the batch; plain SGD with momentum at the usual rates then diverges (Keras's own Dropout with
noise_shape=(1, units) does too). Groups of `group_size` rows, each with its own pattern,
make the compacted product a batched one, [groups, rows, in] x [groups, in, kept]: the same
multiplies, the noise averaged over the groups.
"""

import math

import tensorflow as tf

PATTERNS = ("row", "tile")


def check_rate(rate):
    """The dropout rate as a float in [0, 1); anything else is a ValueError naming it."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def check_pattern(pattern):
    if pattern not in PATTERNS:
        raise ValueError(f"dropout pattern must be one of {', '.join(map(repr, PATTERNS))}, got {pattern!r}")
    return pattern


def check_tile(tile):
    """(rows, cols) of one tile of the kernel; an int n means (n, n)."""
    pair = (tile, tile) if isinstance(tile, int) and not isinstance(tile, bool) else tile
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in pair)
    ):
        raise ValueError(f"tile must be a positive int or a pair of positive ints (rows, cols), got {tile!r}")
    return tuple(int(d) for d in pair)


def kept_count(n, rate):
    """How many of n units (or row tiles) a pattern keeps: round(n * (1 - rate)), at least 1."""
    return max(1, min(n, int(round(n * (1.0 - rate)))))


def scale(n, rate):
    """The factor on the kept values, n / kept: 1 / (1 - rate) when n * (1 - rate) is whole,
    otherwise the exact inverse of the share actually kept (so the expectation is unbiased)."""
    return n / kept_count(n, rate)


def random_subsets(uniform, k):
    """Per row of `uniform` [..., n] (i.i.d. uniform draws), the indices of its k largest
    entries in ascending order: a uniformly random k-subset, sorted so that the compacted
    GEMM still sums k ascending (the canonical order)."""
    return tf.sort(tf.math.top_k(uniform, k=k, sorted=False).indices, axis=-1)


def random_split(uniform, k):
    """(kept, dropped) for one row of i.i.d. uniform draws [n]: kept is `random_subsets(uniform, k)`
    (the same set, ascending), dropped the other n - k units in no particular order.

    One top_k over all n: top_k ranks equal values by index, so its first k are the set that
    top_k(uniform, k) picks, and the draw for a seed is the one `random_subsets` makes.
    """
    order = tf.math.top_k(uniform, k=uniform.shape[-1]).indices
    return tf.sort(order[:k]), order[k:]


def tile_grid(n_in, n_out, tile):
    """(row tiles, column tiles) covering a [n_in, n_out] kernel; the last ones may be partial."""
    return math.ceil(n_in / tile[0]), math.ceil(n_out / tile[1])


def check_group_size(group_size):
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be a positive int or None, got {group_size!r}")
    return group_size


def group_rows(flat, group_size):
    """flat [rows, k] -> ([groups, group_rows, k], groups): consecutive rows share a pattern.

    group_size None: one group (the whole batch, as in the paper). Otherwise
    groups = ceil(rows / group_size) groups of ceil(rows / groups) <= group_size rows; the
    last is padded with zero rows (fewer than `groups` of them), whose products are wasted.
    """
    if group_size is None:
        return flat[None], 1
    rows = tf.shape(flat)[0]
    groups = (rows + group_size - 1) // group_size
    per_group = (rows + groups - 1) // groups
    padded = tf.pad(flat, [[0, groups * per_group - rows], [0, 0]])
    return tf.reshape(padded, tf.stack([groups, per_group, flat.shape[-1]])), groups


def ungroup_rows(grouped, rows):
    """[groups, group_rows, n] -> [rows, n] (the padding rows dropped)."""
    return tf.reshape(grouped, [-1, grouped.shape[-1]])[:rows]


def positions(kept, n):
    """[groups, n] int32: 1 + the place of unit j in its group's kept list, 0 where dropped --
    the gather indices that spread a compacted [.., kept] result (after a zero column) back to n."""
    groups, k = tf.shape(kept)[0], tf.shape(kept)[1]
    group = tf.broadcast_to(tf.range(groups)[:, None], tf.shape(kept))
    place = tf.broadcast_to(tf.range(1, k + 1)[None, :], tf.shape(kept))
    return tf.scatter_nd(tf.stack([group, kept], axis=-1), place, tf.stack([groups, n]))


def spread(compact, kept, n):
    """[groups, rows, kept] values of the kept units -> [groups, rows, n], +0 at the dropped units.

    A scatter on the transposed values (whole rows of [n, rows] written at once, and a gather
    of whole rows as its gradient): measured cheaper than a gather along the last axis, whose
    gradient TensorFlow computes through two transposes and a segment sum.
    """
    if compact.shape[0] == 1:  # one pattern: 2-D ops
        rows = tf.shape(compact)[1]
        out = tf.scatter_nd(kept[0][:, None], tf.transpose(compact[0]), tf.stack([n, rows]))
        return tf.transpose(out)[None]
    groups, rows = tf.shape(compact)[0], tf.shape(compact)[1]
    group = tf.broadcast_to(tf.range(groups)[:, None], tf.shape(kept))
    out = tf.scatter_nd(tf.stack([group, kept], axis=-1), tf.transpose(compact, [0, 2, 1]), tf.stack([groups, n, rows]))
    return tf.transpose(out, [0, 2, 1])


def spread_last(values, kept, n):
    """values [..., kept] -> [..., n] (+0 at the dropped units), one pattern `kept` [kept]."""
    flat = tf.reshape(values, [1, -1, values.shape[-1]])
    out = tf.reshape(spread(flat, kept[None], n), tf.concat([tf.shape(values)[:-1], [n]], axis=0))
    out.set_shape(values.shape[:-1].concatenate([n]))
    return out
