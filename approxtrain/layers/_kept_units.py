"""A row-dropped layer's kept units, handed to the next Dense so that it skips the dropped ones too.

In a training step an `ApproxDropoutDense` with a row pattern (one pattern for the whole batch)
computes only its kept units, ``compact [rows, kept]``, and returns them spread back to all
``units`` with exact +0 at the dropped ones. The next layer's product would multiply those zeros:
half of its multiplies at rate 0.5. So the producer attaches the compact values and the kept
indices to the tensor it returns (`attach`), and a consuming AM Dense that receives exactly that
tensor (`of`) multiplies ``compact . kernel[kept, :]`` instead: the rows of its kernel that meet
a dropped unit are never read, and neither its forward nor its two gradient products spend a
multiply on them. The unused spread is then pruned from the step's graph.

Why the bits are the same as the full product: each output sums its products k ascending from
+0, and a dropped unit's products are signed zeros (a +0 input times a finite weight). Adding a
signed zero to a partial sum that started at +0 never changes it (the sum is never -0: x + (-x)
is +0), so leaving those terms out changes no bit. The one exception is a non-finite weight in a
dropped row: 0 x inf and 0 x NaN are NaN (docs/design.md), so such an output column is NaN in the
full product, and `product` makes it NaN here too.

Where the stash is not there (inference, another producer, a tensor Keras copied or cast on the
way, an integer multiplier, which quantizes the whole input) the consumer runs its full product.
"""

import tensorflow as tf

_ATTRIBUTE = "_approxtrain_kept_units"


class KeptUnits:
    """compact [rows, kept] (the layer's compute dtype), kept [kept] int32 ascending, of `units`."""

    def __init__(self, compact, kept, units):
        self.compact, self.kept, self.units = compact, kept, units


def hands_on(layer):
    """Whether an ApproxDropoutDense attaches its kept units in training: a row pattern drawn for
    the whole batch, a float multiplier (rank-2 outputs only, checked when it runs)."""
    dropout = layer.dropout
    return (
        dropout is not None
        and dropout.rate > 0.0
        and dropout.pattern == "row"
        and dropout.group_size is None
        and takes(layer)
    )


def takes(layer):
    """Whether an AM Dense multiplies a row-dropped input's kept units only: with a float
    multiplier (an integer one quantizes the whole tensor)."""
    return not layer.am_multipliers.integer


def attach(full, compact, kept, units):
    """Marks `full` [rows, units] as the spread of `compact` [rows, kept] at the indices `kept`."""
    setattr(full, _ATTRIBUTE, KeptUnits(compact, kept, units))
    return full


def of(inputs, n_in):
    """The KeptUnits attached to `inputs` when it is a [rows, n_in] tensor that carries them, else None."""
    stash = getattr(inputs, _ATTRIBUTE, None)
    if stash is None or stash.units != n_in or inputs.shape.rank != 2:
        return None
    return stash


def inputs(stash, kernel):
    """(compact [rows, kept], kernel[kept, :]): the consumer's operands without the dropped units."""
    return stash.compact, tf.gather(kernel, stash.kept)


def poison(y, stash, kernel, columns=None):
    """y with NaN in every output column whose kernel has a non-finite weight in a dropped row, as
    the full product's 0 x inf or 0 x NaN there gives; `columns`: the kernel columns y holds (None: all)."""
    kept_mask = tf.scatter_nd(stash.kept[:, None], tf.ones_like(stash.kept, tf.bool), [stash.units])
    nonfinite = tf.logical_not(tf.math.is_finite(kernel))
    poisoned = tf.reduce_any(tf.logical_and(tf.logical_not(kept_mask)[:, None], nonfinite), axis=0)
    if columns is not None:
        poisoned = tf.gather(poisoned, columns)
    return tf.where(poisoned, tf.constant(float("nan"), y.dtype), y)
