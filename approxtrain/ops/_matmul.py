"""AM matrix product: the op, its gradients (docs/design.md, "Ops, layers and gradients") and ``matmul``.

Gradients of C = op(A) . op(B) are AM products themselves, with the contract's
operand order (the table row comes from the left operand):

    d op(A) = dC . op(B)^T     left operand dC      (grad_input_multiplier)
    d op(B) = op(A)^T . dC     left operand op(A)^T (grad_weight_multiplier)

and a transposed operand's gradient is the transpose of that result (a copy,
no arithmetic).  When an operand is broadcast over output batch axes, its
gradient is ONE GEMM per kept batch index whose inner dimension runs over the
broadcast axes too: d op(B)[p] = sum over (r, i) ascending of
op(A)[p, r, i, :]^T (x) dC[p, r, i, :], where p indexes the batch axes the
operand has, r the axes it is broadcast over (row-major), i the rows of C.
So the sum order is canonical -- (broadcast batch index, row) ascending --
e.g. for b [k, n] shared by a [B, m, k]: dB = A'^T . dC' with A' = A as
[(B*m), k].  d op(A) likewise sums over (r, column of C) ascending.
"""

import tensorflow as tf

from approxtrain._op_library import library
from approxtrain.ops._checks import float32_tensor
from approxtrain.ops._op_table import op_table_for, op_table_of
from approxtrain.ops._tables import resolve_three
from approxtrain.quant.multipliers import any_integer


def gemm(a, b, op_table, transpose_a=False, transpose_b=False):
    """One batched, broadcasting product: AMMatMul, or tf.linalg.matmul when op_table is None (fp32)."""
    if op_table is None:
        return tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    return library().am_mat_mul(
        a,
        b,
        op_table.tensor,
        transpose_a=transpose_a,
        transpose_b=transpose_b,
        operand_rounding=op_table.operand_rounding,
    )


# --- batch-axis bookkeeping for broadcast operands --------------------------------------------


def _broadcast_mask(x, dc):
    """Per output batch axis: is x broadcast over it?  A list of bools, or a bool tensor when
    x's batch dimensions are not all static."""
    nb = dc.shape.rank - 2
    x_batch = [1] * (nb - (x.shape.rank - 2)) + x.shape.as_list()[:-2]
    out_batch = dc.shape.as_list()[:-2]
    if all(d is not None for d in x_batch):
        # A size-1 axis of the output needs no reduction, but treating it as one is harmless.
        return [d == 1 and o != 1 for d, o in zip(x_batch, out_batch)]
    x_shape = tf.concat([tf.ones([nb - (x.shape.rank - 2)], tf.int32), tf.shape(x)[:-2]], 0)
    return tf.logical_and(tf.equal(x_shape, 1), tf.not_equal(tf.shape(dc)[:-2], 1))


def _split_axes(mask):
    """(kept, broadcast) batch-axis indices, as lists or int32 tensors."""
    if isinstance(mask, list):
        return [i for i, r in enumerate(mask) if not r], [i for i, r in enumerate(mask) if r]
    axes = tf.range(tf.size(mask))
    return tf.boolean_mask(axes, tf.logical_not(mask)), tf.boolean_mask(axes, mask)


def _cat(*parts):
    if all(isinstance(p, list) for p in parts):
        return [i for p in parts for i in p]
    return tf.concat([tf.cast(p, tf.int32) for p in parts], 0)


def _permute(t, perm):
    if isinstance(perm, list) and perm == list(range(len(perm))):
        return t
    return tf.transpose(t, perm)


def _size(shape, axes):
    """Product of shape[axes] (1 for no axes)."""
    return tf.reduce_prod(tf.gather(shape, tf.constant(axes, tf.int32) if isinstance(axes, list) else axes))


def _full_batch(x, dc):
    """x broadcast to dc's batch dimensions (x itself when it already has them)."""
    if x.shape.rank == dc.shape.rank and x.shape[:-2].is_fully_defined() and x.shape[:-2] == dc.shape[:-2]:
        return x
    return tf.broadcast_to(x, tf.concat([tf.shape(dc)[:-2], tf.shape(x)[-2:]], 0))


def _swap_last(x):
    rank = x.shape.rank
    return tf.transpose(x, list(range(rank - 2)) + [rank - 1, rank - 2])


# --- gradients ---------------------------------------------------------------------------------


def _gradient_layout(dc, mask):
    """For an operand broadcast along dC's batch axes where `mask` is True: the batch rank
    nb, the kept and broadcast batch axes, their sizes p and r, and dC's m and n."""
    nb = dc.shape.rank - 2
    kept, bcast = _split_axes(mask)
    out_shape = tf.shape(dc)
    return (nb, kept, bcast, _size(out_shape[:-2], kept), _size(out_shape[:-2], bcast), out_shape[-2], out_shape[-1])


def grad_a(dc, a, b, op_table, transpose_a, transpose_b):
    """dL/da for c = matmul(a, b): dC . op(B)^T, dC the left operand."""
    mask = _broadcast_mask(a, dc)
    if isinstance(mask, list) and not any(mask):
        da = gemm(dc, b, op_table, transpose_b=not transpose_b)
    else:
        nb, kept, bcast, p, r, m, n = _gradient_layout(dc, mask)
        k = tf.shape(b)[-1] if transpose_b else tf.shape(b)[-2]
        # X[p, i, (r, j)] = dC[p, r, i, j];  Y[p, (r, j), kk] = op(B)[p, r, kk, j]
        x = tf.reshape(_permute(dc, _cat(kept, [nb], bcast, [nb + 1])), tf.stack([p, m, r * n]))
        y_perm = _cat(kept, bcast, [nb, nb + 1] if transpose_b else [nb + 1, nb])
        y = tf.reshape(_permute(_full_batch(b, dc), y_perm), tf.stack([p, r * n, k]))
        da = gemm(x, y, op_table)
    if transpose_a:
        da = _swap_last(da)
    return tf.reshape(da, tf.shape(a))


def grad_b(dc, a, b, op_table, transpose_a, transpose_b):
    """dL/db for c = matmul(a, b): op(A)^T . dC, op(A)^T the left operand."""
    mask = _broadcast_mask(b, dc)
    if isinstance(mask, list) and not any(mask):
        db = gemm(a, dc, op_table, transpose_a=not transpose_a)
    else:
        nb, kept, bcast, p, r, m, n = _gradient_layout(dc, mask)
        k = tf.shape(a)[-2] if transpose_a else tf.shape(a)[-1]
        # X[p, (r, i), kk] = op(A)[p, r, i, kk] (used transposed);  Y[p, (r, i), j] = dC[p, r, i, j]
        x_perm = _cat(kept, bcast, [nb + 1, nb] if transpose_a else [nb, nb + 1])
        x = tf.reshape(_permute(_full_batch(a, dc), x_perm), tf.stack([p, r * m, k]))
        y = tf.reshape(_permute(dc, _cat(kept, bcast, [nb, nb + 1])), tf.stack([p, r * m, n]))
        db = gemm(x, y, op_table, transpose_a=True)
    if transpose_b:
        db = _swap_last(db)
    return tf.reshape(db, tf.shape(b))


# --- public wrapper ----------------------------------------------------------------------------


def matmul(
    a,
    b,
    multiplier,
    transpose_a=False,
    transpose_b=False,
    grad_input_multiplier=None,
    grad_weight_multiplier=None,
    quantization=None,
    input_range=None,
    weight_range=None,
):
    """AM matrix product ``op(a) . op(b)`` with numpy batch broadcasting (rank >= 2).

    Every product goes through ``multiplier``'s table with ``a`` as the table
    row; each output element sums its products k ascending from +0.  The
    gradient with respect to ``a`` uses ``grad_input_multiplier`` and the one
    with respect to ``b`` uses ``grad_weight_multiplier`` (None: same as
    ``multiplier``).  ``"fp32"`` for any of them means the native op.

    An integer multiplier (`approxtrain.multipliers.IntegerMultiplier` or its name) quantizes
    the operands as ``quantization`` (an `approxtrain.quant.QuantConfig`; None: its defaults)
    says, ``a`` the activation (its range may be given as ``input_range=(lo, hi)``) and ``b``
    the weights (calibrated by their own min/max, or per tensor by ``weight_range=(lo, hi)``
    when ``b`` is an activation with a running range, as attention's keys and values), and
    multiplies their 8-bit codes through its table (docs/integer.md).
    """
    if (
        quantization is not None
        or input_range is not None
        or weight_range is not None
        or any_integer(multiplier, grad_input_multiplier, grad_weight_multiplier)
    ):
        from approxtrain.quant import ops as quant_ops

        return quant_ops.matmul(
            a,
            b,
            multiplier,
            transpose_a,
            transpose_b,
            grad_input_multiplier,
            grad_weight_multiplier,
            quantization,
            input_range,
            weight_range,
        )
    forward, grad_in, grad_w = resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier)
    a = float32_tensor(a, "matmul operand a")
    b = float32_tensor(b, "matmul operand b")
    for t, what in ((a, "a"), (b, "b")):
        if t.shape.rank is None or t.shape.rank < 2:
            raise ValueError(f"matmul operand {what} must have a known rank >= 2, got shape {t.shape}")
    transpose_a, transpose_b = bool(transpose_a), bool(transpose_b)
    if forward is None and grad_in is None and grad_w is None:
        return tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    op_tables = op_table_for(forward), op_table_for(grad_in), op_table_for(grad_w)
    if not tf.executing_eagerly():
        # The gradient must not capture the eager table tensors: inside a tf.while_loop (the
        # time loop of a recurrent layer) TF cannot route such a capture into the loop's
        # gradient. An identity in the current graph is a loop invariant it can route.
        op_tables = tuple(t if t is None else t._replace(tensor=tf.identity(t.tensor)) for t in op_tables)

    @tf.custom_gradient
    def product(a, b):
        def grad(dc):
            return (
                grad_a(dc, a, b, op_tables[1], transpose_a, transpose_b),
                grad_b(dc, a, b, op_tables[2], transpose_a, transpose_b),
            )

        return gemm(a, b, op_tables[0], transpose_a, transpose_b), grad

    return product(a, b)


def _am_matmul_gradient(op, dc):
    """Gradient of a bare AMMatMul op: both backward products use the op's own table."""
    op_table = op_table_of(op, 2)
    a, b = op.inputs[0], op.inputs[1]
    ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
    return grad_a(dc, a, b, op_table, ta, tb), grad_b(dc, a, b, op_table, ta, tb), None
