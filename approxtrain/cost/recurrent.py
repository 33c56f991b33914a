"""Counts of the recurrent layers' products: SimpleRNN, GRU (both reset_after modes) and LSTM
(docs/cost.md, "Recurrent layers").

Each step multiplies the step input by the kernel and the previous state by the recurrent
kernel (a GRU with reset_after=False also (r * h_prev) by the candidate columns). The input
products of all steps are one product `x . kernel` ("btf,fg->btg"); the recurrent ones one
product over the stacked previous states ("btu,ug->btg"). Their operands and output gradients
are not outputs of the layer, so the counting step re-runs the recurrence natively from the
layer's input, initial state, mask and kernels, and back-propagates the layer's real output
gradient through it (an approximate multiplier changes the zeros of these tensors only where a
sum of non-zero products cancels exactly). The first step's previous state is the initial
state: its products are counted in the forward and the weight gradient; their input gradient
only when an initial state was passed (TensorFlow computes no gradient for the zeros it
starts from otherwise).
"""

import keras
import tensorflow as tf

from approxtrain.cost import counts, graph

KINDS = ((keras.layers.LSTM, "lstm"), (keras.layers.GRU, "gru"), (keras.layers.SimpleRNN, "simple_rnn"))
INPUT = "btf,fg->btg"
STATE = "btu,ug->btg"


def countable(layer):
    """Whether the re-run gives the products the layer computed: no dropout (its random masks
    cannot be drawn again) and no state carried between batches."""
    cell = layer.cell
    return not layer.stateful and not cell.dropout and not cell.recurrent_dropout


def _bias_parts(cell, kind):
    """(input-side bias, recurrent-side bias) as Keras's cells add them."""
    if not cell.use_bias:
        return None, None
    if kind == "gru" and cell.reset_after:
        return cell.bias[0], cell.bias[1]
    return cell.bias, None


def _step(cell, kind, px, states, state_products):
    """One native step from the input product px; appends each recurrent product (the tensors
    the count needs: (left operand, product)) to state_products; returns (output, new states)."""
    units = cell.units
    h = states[0]
    _, recurrent_bias = _bias_parts(cell, kind)
    if kind == "simple_rnn":
        ph = h @ cell.recurrent_kernel
        state_products["state"].append((h, ph))
        out = px + ph
        out = cell.activation(out) if cell.activation is not None else out
        return out, [out]
    if kind == "lstm":
        ph = h @ cell.recurrent_kernel
        state_products["state"].append((h, ph))
        z0, z1, z2, z3 = tf.split(px + ph, 4, axis=-1)
        i, f, o = (cell.recurrent_activation(z) for z in (z0, z1, z3))
        c = f * states[1] + i * cell.activation(z2)
        out = o * cell.activation(c)
        return out, [out, c]
    # GRU
    x_z, x_r, x_h = tf.split(px, 3, axis=-1)
    if cell.reset_after:
        ph = h @ cell.recurrent_kernel
        state_products["state"].append((h, ph))
        inner = ph if recurrent_bias is None else ph + recurrent_bias
        r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
        z, r = cell.recurrent_activation(x_z + r_z), cell.recurrent_activation(x_r + r_r)
        hh = cell.activation(x_h + r * r_h)
    else:
        ph = h @ cell.recurrent_kernel[:, : 2 * units]
        state_products["state"].append((h, ph))
        r_z, r_r = tf.split(ph, 2, axis=-1)
        z, r = cell.recurrent_activation(x_z + r_z), cell.recurrent_activation(x_r + r_r)
        candidate = r * h
        pc = candidate @ cell.recurrent_kernel[:, 2 * units :]
        state_products["candidate"].append((candidate, pc))
        hh = cell.activation(x_h + pc)
    out = z * h + (1 - z) * hh
    return out, [out]


def _initial_states(cell, kind, x, initial_state):
    if initial_state is not None:
        return [tf.convert_to_tensor(s) for s in tf.nest.flatten(initial_state)]
    zeros = tf.zeros((tf.shape(x)[0], cell.units), x.dtype)
    return [zeros, zeros] if kind == "lstm" else [zeros]


def graph_sums(layer, kind, x, dy, initial_state=None, mask=None):
    """(finish, tensors): the products' count reductions, and the function that turns their
    values into {product name: {phase: Counts}} ("input", "state" and, for a GRU with
    reset_after=False, "candidate")."""
    cell = layer.cell
    steps = x.shape[1]
    if steps is None:
        raise ValueError(f"{layer.name}: the count needs a static sequence length, got input shape {tuple(x.shape)}")
    if layer.go_backwards:
        x = tf.reverse(x, [1])
        mask = None if mask is None else tf.reverse(mask, [1])
    input_bias, _ = _bias_parts(cell, kind)
    state_products = {"state": [], "candidate": []}
    with tf.GradientTape() as tape:
        px = tf.einsum(INPUT, x, cell.kernel)
        tape.watch(px)
        pxb = px if input_bias is None else px + input_bias
        states = _initial_states(cell, kind, x, initial_state)
        prev_out = tf.zeros_like(states[0])
        outputs = []
        for t in range(steps):
            out, new_states = _step(cell, kind, pxb[:, t], states, state_products)
            if mask is not None:  # a masked step keeps the states (Keras's rnn loop)
                keep = tf.cast(mask[:, t], tf.bool)[:, None]
                held = tf.zeros_like(out) if layer.zero_output_for_mask else prev_out
                out = tf.where(keep, out, held)
                new_states = [tf.where(keep, n, s) for n, s in zip(new_states, states)]
            states, prev_out = new_states, out
            outputs.append(out)
        result = tf.stack(outputs, axis=1) if layer.return_sequences else outputs[-1]
        targets = [result, *states] if layer.return_state else [result]
    sources = {"input": px, **{k: [p for _, p in v] for k, v in state_products.items() if v}}
    dys = tf.nest.flatten(dy)[: len(targets)]
    grads = tape.gradient(targets, sources, output_gradients=[tf.zeros_like(t) if g is None else g
                                                              for t, g in zip(targets, dys)])  # fmt: skip
    has_initial = initial_state is not None
    tensors = {"input": graph.einsum_sums(INPUT, x, cell.kernel, grads["input"])}
    kernels = {"state": cell.recurrent_kernel, "candidate": cell.recurrent_kernel}
    if kind == "gru" and not cell.reset_after:
        kernels = {
            "state": cell.recurrent_kernel[:, : 2 * cell.units],
            "candidate": cell.recurrent_kernel[:, 2 * cell.units :],
        }
    for name, products in state_products.items():
        if not products:
            continue
        left = tf.stack([a for a, _ in products], axis=1)
        dout = tf.stack([tf.zeros_like(p) if g is None else g for (_, p), g in zip(products, grads[name])], axis=1)
        tensors[name] = {"first": graph.einsum_sums(STATE, left[:, :1], kernels[name], dout[:, :1])}
        if steps > 1:
            tensors[name]["rest"] = graph.einsum_sums(STATE, left[:, 1:], kernels[name], dout[:, 1:])
    shapes = {"input": (tuple(x.shape), tuple(cell.kernel.shape))}
    shapes.update({k: tuple(v.shape) for k, v in kernels.items() if k in tensors})

    def finish(values):
        result = {
            "input": counts.einsum_from_sums(INPUT, counts.einsum_sizes(INPUT, *shapes["input"]), values["input"])
        }
        batch, units = int(x.shape[0]), cell.units
        for name in ("state", "candidate"):
            if name not in values:
                continue
            w = shapes[name]
            first = counts.einsum_from_sums(
                STATE, counts.einsum_sizes(STATE, (batch, 1, units), w), values[name]["first"]
            )
            if not has_initial:  # no gradient of the zeros the recurrence starts from
                first = dict(first, grad_input=counts.Counts(0, 0, 0, 0, 0))
            if "rest" in values[name]:
                sizes = counts.einsum_sizes(STATE, (batch, steps - 1, units), w)
                rest = counts.einsum_from_sums(STATE, sizes, values[name]["rest"])
                first = {p: counts.Counts(*(a + b for a, b in zip(first[p], rest[p]))) for p in counts.PHASES}
            result[name] = first
        return result

    return finish, tensors
