"""The AM product of a row-dropped Dense layer on the kept part of its kernel, as ONE native op.

    y = matmul_kept(a, b, rows, cols, dropped, op_tables)
      = a . b[rows][:, cols]     (k ascending, a the table row: AMMatMul's bits)

with NaN in every column j where some b[d, cols[j]], d in `dropped`, is not finite (the full
product, whose input is +0 at the dropped rows, has 0 x inf there; docs/approx-dropout.md).
Its gradients are two native ops as well: da = dy . b[rows][:, cols]^T, and db, b's shape, +0
everywhere but the kept block, which holds a^T . dy (dy with +0 in the NaN columns, whose
value did not depend on the product).

The same products and sums as gathering the block with TensorFlow ops and running AMMatMul and
its gradients (the kernels gather the block, then make AMMatMul's own GEMM call), in three ops
instead of ~20: the gathers, their gradients and the NaN check were the row-dropped step's
remaining cost at small sizes. CPU kernels only: `runs_natively` says when to use it.
"""

import numpy as np
import tensorflow as tf

from approxtrain._op_library import library
from approxtrain.ops._op_table import op_table_for
from approxtrain.ops._tables import resolve_three
from approxtrain.quant.multipliers import any_integer


def op_tables(multiplier, grad_input_multiplier=None, grad_weight_multiplier=None):
    """The (forward, grad-input, grad-weight) OpTables when all three are float AM multipliers;
    None when one is an integer multiplier or ``"fp32"`` (their own paths: quantization, native)."""
    if any_integer(multiplier, grad_input_multiplier, grad_weight_multiplier):
        return None
    tables = tuple(op_table_for(m) for m in resolve_three(multiplier, grad_input_multiplier, grad_weight_multiplier))
    return None if any(t is None for t in tables) else tables


def runs_natively():
    """Whether the layers' products run on the CPU, where the op has its kernels: no GPU visible.

    With a GPU the layers run there and keep the TensorFlow-op path (gathers and AMMatMul, which
    has GPU kernels); the op is never placed on the CPU behind a GPU layer's back.
    """
    return not tf.config.list_logical_devices("GPU")


def every_index(n):
    """int32 [n] 0..n-1: `rows` or `cols` for a product that reads every row or column of b."""
    return tf.constant(np.arange(n, dtype=np.int32))


def no_index():
    """int32 [0]: `dropped` for a product whose input has no dropped rows."""
    return tf.constant(np.zeros(0, np.int32))


def kept_gemm(op, matrices, indices, op_table):
    """Runs one of the three ops (`op`, its name in the library): its matrix inputs, the table's
    tensor, its index inputs, and the table's operand rounding."""
    op = getattr(library(), op)
    return op(*matrices, op_table.tensor, *indices, operand_rounding=op_table.operand_rounding)


def matmul_kept(a, b, rows, cols, dropped, tables):
    """a [m, len(rows)] . b[rows][:, cols] -> [m, len(cols)] float32, NaN columns as described above.

    a, b: float32 matrices; rows, cols, dropped: int32 vectors (rows and dropped index b's rows,
    cols its columns); tables: `op_tables(...)`. Differentiable in a and b.
    """
    if not tf.executing_eagerly():
        # As ops.matmul: a capture of the eager table tensors cannot be routed into a
        # tf.while_loop's gradient; an identity in the current graph can.
        tables = tuple(t._replace(tensor=tf.identity(t.tensor)) for t in tables)
    forward, grad_input, grad_weight = tables

    @tf.custom_gradient
    def product(a, b):
        y, poisoned = kept_gemm("am_mat_mul_kept", (a, b), (rows, cols, dropped), forward)

        def grad(dy):
            da = kept_gemm("am_mat_mul_kept_grad_a", (dy, b), (rows, cols, poisoned), grad_input)
            db = kept_gemm("am_mat_mul_kept_grad_b", (a, dy, b), (rows, cols, poisoned), grad_weight)
            return da, db

        return y, grad

    return product(a, b)
