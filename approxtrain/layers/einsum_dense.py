"""AMEinsumDense: keras.layers.EinsumDense whose contraction is one batched AM matmul.

The equation "input,kernel->output" is lowered to approxtrain.ops.matmul with transposes
and reshapes (data movement only).  Each subscript letter is one of:

    batch      in input, kernel and output   -> the matmul's batch axis (input order)
    contracted in input and kernel only      -> k, flattened in the input's order
    free input in input and output only      -> the rows m, in the input's order
    free kernel in kernel and output only    -> the columns n, in the kernel's order

so the canonical orders (docs/design.md, "Canonical summation orders", row "EinsumDense") are:
forward sums over the contracted letters (row-major, input order) with the input the table
row; dX sums over the free kernel letters (kernel order) with dY the row; dW sums over the
free input letters (input order, all of them in one sum) with the input the row.
"""

import re

import keras
import tensorflow as tf

from approxtrain import ops
from approxtrain.layers._am_layer import AMLayer, add_bias_and_activate, from_float32, range_kwargs, to_float32

_EQUATION = re.compile(r"^([a-zA-Z.]+),([a-zA-Z]+)->([a-zA-Z.]+)$")


def expand_ellipsis(equation, input_rank):
    """The equation with "..." replaced by letters for the axes it stands for (the same in the output)."""
    match = _EQUATION.match(equation.replace(" ", ""))
    if match is None:
        raise ValueError(f"AMEinsumDense: equation must be 'input,kernel->output', got {equation!r}")
    left, kernel, out = match.groups()
    if "..." not in left:
        return left, kernel, out
    used = set(left + kernel + out)
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    letters = "".join(spare[: input_rank - (len(left) - 3)])
    return left.replace("...", letters), kernel, out.replace("...", letters)


def einsum_lowering(left, kernel, out, what="AMEinsumDense"):
    """(batch, contracted, free_input, free_kernel) letter strings of one equation."""
    for spec, name in ((left, "input"), (kernel, "kernel"), (out, "output")):
        if len(set(spec)) != len(spec):
            raise ValueError(f"{what}: repeated letter in the {name} subscripts {spec!r}")
    batch = "".join(c for c in left if c in kernel and c in out)
    contracted = "".join(c for c in left if c in kernel and c not in out)
    free_input = "".join(c for c in left if c not in kernel)
    free_kernel = "".join(c for c in kernel if c not in left)
    lone = [c for c in free_input + free_kernel if c not in out] + [c for c in out if c not in left + kernel]
    if lone:
        raise ValueError(
            f"{what}: letters {''.join(lone)!r} of {left},{kernel}->{out} appear in only one operand "
            "or only in the output; AMEinsumDense contracts products only"
        )
    return batch, contracted, free_input, free_kernel


def einsum_matmul(layer, equation, inputs, kernel):
    """einsum(equation, inputs, kernel) through one (batched) AM matmul, float32 inside."""
    x, w = to_float32(layer, inputs, kernel)
    left, kspec, out = expand_ellipsis(equation, x.shape.rank)
    if len(left) != x.shape.rank or len(kspec) != w.shape.rank:
        raise ValueError(
            f"AMEinsumDense: equation {equation!r} does not fit input shape {tuple(x.shape)} "
            f"and kernel shape {tuple(w.shape)}"
        )
    batch, contracted, free_input, free_kernel = einsum_lowering(left, kspec, out)
    x_dims = tf.unstack(tf.shape(x)) if not x.shape.is_fully_defined() else x.shape.as_list()
    size = {c: x_dims[i] for i, c in enumerate(left)}
    size.update({c: w.shape[i] for i, c in enumerate(kspec) if c not in size})

    def prod(letters):
        result = 1
        for c in letters:
            result = result * size[c]
        return result

    xt = tf.transpose(x, [left.index(c) for c in batch + free_input + contracted])
    wt = tf.transpose(w, [kspec.index(c) for c in batch + contracted + free_kernel])
    lead = [prod(batch)] if batch else []
    xt = tf.reshape(xt, tf.stack(lead + [prod(free_input), prod(contracted)]))
    wt = tf.reshape(wt, lead + [prod(contracted), prod(free_kernel)])
    y = ops.matmul(xt, wt, **layer.am_multipliers.op_kwargs(), **range_kwargs(layer, xt))
    order = batch + free_input + free_kernel
    y = tf.reshape(y, tf.stack([size[c] for c in order]))
    y = tf.transpose(y, [order.index(c) for c in out])
    y.set_shape([x.shape[left.index(c)] if c in left else w.shape[kspec.index(c)] for c in out])
    return from_float32(layer, y)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMEinsumDense(AMLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` (any equation it accepts, "..." included) with AM products.

    Args:
        equation: the einsum equation "input,kernel->output", as for EinsumDense.
        output_shape: as for EinsumDense.
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradient w.r.t. the inputs (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradient w.r.t. the kernel (None: `multiplier`).
        **kwargs: every other `keras.layers.EinsumDense` argument (bias_axes, activation,
            initializers, regularizers, constraints, lora_rank, ...). Quantized modes are not supported.

    Example:
        >>> layer = AMEinsumDense("abc,cde->abde", output_shape=(None, 4, 16), multiplier="mbm7")
    """

    keras_twin = keras.layers.EinsumDense
    quantized_inputs = ("inputs",)

    def call(self, inputs, training=None):
        if getattr(self, "quantization_mode", None):
            raise ValueError(
                f"AMEinsumDense {self.name!r} does not support quantization mode {self.quantization_mode!r}"
            )
        return add_bias_and_activate(self, einsum_matmul(self, self.equation, inputs, self.kernel))
