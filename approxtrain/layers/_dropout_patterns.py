"""Structured dropout patterns (Song et al., "Approximate Random Dropout", arXiv 2203.05705).

A pattern is drawn once per training step for the whole mini-batch, so the GEMM that
produces the dropped values can be run on compacted operands instead of being masked:

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


def tile_grid(n_in, n_out, tile):
    """(row tiles, column tiles) covering a [n_in, n_out] kernel; the last ones may be partial."""
    return math.ceil(n_in / tile[0]), math.ceil(n_out / tile[1])
