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

from approxtrain import ops
from approxtrain.layers._am_layer import to_float32
from approxtrain.ops import _matmul_kept

_ATTRIBUTE = "_approxtrain_kept_units"


class KeptUnits:
    """compact [rows, kept] (the layer's compute dtype), kept [kept] int32 ascending, of `units`;
    dropped [units - kept] int32, the other units in any order."""

    def __init__(self, compact, kept, units, dropped):
        self.compact, self.kept, self.units, self.dropped = compact, kept, units, dropped


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


def attach(full, compact, kept, units, dropped):
    """Marks `full` [rows, units] as the spread of `compact` [rows, kept] at the indices `kept`
    (`dropped`: the other units)."""
    setattr(full, _ATTRIBUTE, KeptUnits(compact, kept, units, dropped))
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


def product(layer, x, kernel, stash=None, kept_columns=None):
    """The float32 AM product of a Dense layer's training step on the kept part of its kernel:
    ``x . kernel[K_in][:, kept_columns]``, K_in the stash's kept units (every row without a stash),
    `kept_columns` int32 kept units of the layer's own row pattern (None: every column); with a stash,
    NaN in the columns the full product has NaN in (`poison`).

    x: [rows, in] (no stash) or the stash's compact [rows, kept]. On the CPU, with float AM
    multipliers, ONE native op and two for its gradients (`approxtrain.ops._matmul_kept`);
    otherwise (fp32, a GPU) TensorFlow's gathers around AMMatMul or MatMul -- the same bits.
    """
    x, kernel = to_float32(layer, x, kernel)
    tables = native_tables(layer)
    if tables is not None:
        rows = _matmul_kept.every_index(kernel.shape[0]) if stash is None else stash.kept
        dropped = _matmul_kept.no_index() if stash is None else stash.dropped
        cols = _matmul_kept.every_index(kernel.shape[1]) if kept_columns is None else kept_columns
        return _matmul_kept.matmul_kept(x, kernel, rows, cols, dropped, tables)
    block = kernel if stash is None else inputs(stash, kernel)[1]
    if kept_columns is not None:
        block = columns(block, kept_columns)
    y = ops.matmul(x, block, **layer.am_multipliers.op_kwargs())
    return y if stash is None else poison(y, stash, kernel, columns=kept_columns)


def native_tables(layer):
    """The op tables of the native kept-block product for this layer's multipliers, or None where
    it does not apply: a GPU visible (the layer runs there), fp32 or an integer multiplier."""
    if not _matmul_kept.runs_natively():
        return None
    m = layer.am_multipliers
    return _matmul_kept.op_tables(m.multiplier, m.grad_input_multiplier, m.grad_weight_multiplier)


# Below this many elements a matrix's columns are gathered by TensorFlow's own ops: the XLA
# launch then costs more than it saves (measured on LeNet-300-100: XLA for fc1's 784 x 300
# kernel, TensorFlow for fc2's 150 x 100 block of kept rows).
XLA_MIN_ELEMENTS = 1 << 16


def columns(matrix, kept):
    """matrix[:, kept] (kept: int32 indices along the last axis) and its gradient, the gradient of
    the kept columns put back in place with +0 in the others, as one dense tensor.

    TensorFlow's gather along the last axis copies element by element (~4x slower than XLA's on
    a 784 x 300 kernel), and its own gradient runs two transposes and a segment sum; gathering rows
    of the transposed kernel instead costs a transpose forward and two backward (one in the AM
    product's gradient). Here both directions are one gather, XLA-compiled for large matrices.
    """
    matrix = tf.convert_to_tensor(matrix)  # a variable is read here: its gradient is the read's
    xla = matrix.shape.num_elements() is not None and matrix.shape.num_elements() >= XLA_MIN_ELEMENTS
    gather, spread = (_xla_gather_columns, _xla_spread_columns) if xla else (_gather_columns, _spread_columns)

    @tf.custom_gradient
    def gathered(matrix):
        def grad(d_kept):
            return spread(d_kept, kept, matrix.shape[-1])

        return gather(matrix, kept), grad

    return gathered(matrix)


def _gather_columns(matrix, kept):
    return tf.gather(matrix, kept, axis=1)


def _spread_columns(d_kept, kept, n):
    """[rows, kept] -> [rows, n]: column kept[j] is d_kept[:, j], the others +0 (a gather from a
    copy with a leading +0 column, at 1 + each column's place in kept, 0 for the others)."""
    places = tf.scatter_nd(kept[:, None], tf.range(1, tf.size(kept) + 1), [n])
    return tf.gather(tf.pad(d_kept, [[0, 0], [1, 0]]), places, axis=1)


_xla_gather_columns = tf.function(_gather_columns, jit_compile=True)
_xla_spread_columns = tf.function(_spread_columns, jit_compile=True)


def poison(y, stash, kernel, columns=None):
    """y with NaN in every output column whose kernel has a non-finite weight in a dropped row, as
    the full product's 0 x inf or 0 x NaN there gives; `columns`: the kernel columns y holds (None: all).

    A dropped row's weights times 0 are +-0, or NaN where the weight is not finite: their sum per
    column is NaN exactly for the columns to poison (a few cheap ops on the small dropped block).
    """
    zero_or_nan = tf.reduce_sum(tf.gather(tf.stop_gradient(kernel), stash.dropped) * 0.0, axis=0)
    if columns is not None:
        zero_or_nan = tf.gather(zero_or_nan, columns)
    zero_or_nan = tf.cast(zero_or_nan, y.dtype)
    return tf.where(tf.math.is_nan(zero_or_nan), zero_or_nan, y)
