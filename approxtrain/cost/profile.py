"""Runs training steps on real batches, captures each multiply-heavy layer's operands and output
gradients, and counts their products (docs/cost.md).

Capture: each counted layer's `call` is wrapped for the duration (an instance attribute, removed
afterwards) to record its input and its output *before* the activation, whose gradient the tape
then gives: dy of the product itself. Weights are only read. The counting runs after the step.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from approxtrain.cost import counts, energy


def _kind(layer):
    L = keras.layers
    if isinstance(layer, L.MultiHeadAttention):
        return "attention"
    if isinstance(layer, L.DepthwiseConv2D):
        return "depthwise_conv2d"
    if isinstance(layer, (L.SeparableConv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return None  # not counted yet (listed under "skipped")
    if isinstance(layer, (L.Conv1D, L.Conv2D)):
        return "conv1d" if isinstance(layer, L.Conv1D) else "conv2d"
    if isinstance(layer, L.Dense):
        return "dense"
    if isinstance(layer, L.EinsumDense):
        return "einsum_dense"
    return None


def _all_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]


class _Recorder:
    def __init__(self):
        self.calls = []  # (layer, kind, payload dict of tensors)

    @contextlib.contextmanager
    def hooked(self, layers):
        try:
            for layer, kind in layers:
                if kind == "attention":
                    layer._compute_attention = self._attention_hook(layer)
                else:
                    layer.call = self._product_hook(layer, kind)
            yield
        finally:
            for layer, kind in layers:
                layer.__dict__.pop("_compute_attention" if kind == "attention" else "call", None)

    def _product_hook(self, layer, kind):
        original = type(layer).call.__get__(layer)

        def call(inputs, *args, **kw):
            activation = layer.activation
            layer.activation = None
            try:
                pre = original(inputs, *args, **kw)
            finally:
                layer.activation = activation
            self.calls.append((layer, kind, {"x": inputs, "y": pre}))
            return pre if activation is None else activation(pre)

        return call

    def _attention_hook(self, layer):
        original = type(layer)._compute_attention.__get__(layer)

        def compute(query, key, value, *args, **kw):
            out, scores = original(query, key, value, *args, **kw)
            self.calls.append((layer, "attention", {"q": query, "k": key, "v": value, "p": scores, "y": out}))
            return out, scores

        return compute


def _conv_counts(layer, kind, x, dy):
    w = layer.kernel.numpy()
    strides, dilations = tuple(layer.strides), tuple(layer.dilation_rate)
    padding = layer.padding
    if kind == "conv1d":
        x, dy, w = x[:, None], dy[:, None], w[None]
        strides, dilations = (1,) + strides, (1,) + dilations
    if kind == "depthwise_conv2d":
        return counts.depthwise_conv2d(x, w, dy, strides, dilations, padding)
    return counts.conv2d(x, w, dy, strides, dilations, padding, groups=layer.groups)


def _attention_counts(layer, t, grads):
    """The two attention products Q.K^T and P.V, in Keras's equations. dS (the gradient of the
    raw scores) is recomputed from P and dP = dOut.V^T through the softmax's Jacobian."""
    q, k, v, p = (np.asarray(t[n]) for n in "qkvp")
    dout = np.asarray(grads["y"])
    (lp, lv), lo = layer._combine_equation.split("->")[0].split(","), layer._combine_equation.split("->")[1]
    dp = np.einsum(f"{lo},{lv}->{lp}", dout, v)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # softmax over the (last) key axis
    ab = layer._dot_product_equation.split("->")[0].split(",")  # (key letters, query letters)
    out = layer._dot_product_equation.split("->")[1]
    scores = counts.einsum(f"{ab[1]},{ab[0]}->{out}", q, k, ds)
    combine = counts.einsum(layer._combine_equation, p, v, dout)
    return scores, combine


def _layer_counts(layer, kind, t, grads):
    x = np.asarray(t["x"]) if "x" in t else None
    dy = np.asarray(grads["y"]) if "y" in grads else None
    if kind in ("conv2d", "conv1d", "depthwise_conv2d"):
        result = _conv_counts(layer, kind, x, dy)
    elif kind == "dense":
        result = counts.dense(x, layer.kernel.numpy(), dy)
    elif kind == "einsum_dense":
        result = counts.einsum(layer.equation, x, layer.kernel.numpy(), dy)
    else:
        raise AssertionError(kind)
    return result


def _gradients(model, loss_fn, x, y, recorder):
    with tf.GradientTape(persistent=True) as tape:
        probs = model(x, training=True)
        loss = loss_fn(y, probs)
    watched = [t.get("y") for _, _, t in recorder.calls]
    inputs = [t.get("x", t.get("q")) for _, _, t in recorder.calls]
    variables = model.trainable_variables
    grads = tape.gradient(loss, watched + inputs + list(variables))
    del tape
    n = len(watched)
    return loss, grads[:n], grads[n : 2 * n], grads[2 * n :]


NO_PRODUCTS = counts.Counts(0, 0, 0, 0, 0)


def profile(model, dataset, multipliers=("fp32",), batches=1, optimizer=None, name=None):
    """Counts the products of `batches` training steps of `model` on `dataset` (batches of
    (x, labels)); returns the report dict of docs/cost.md, averaged over the batches.

    optimizer: applied to the step's gradients when given (the run's own; the weights change as
    in training), else the steps compute forward and backward only."""
    if isinstance(multipliers, str):
        multipliers = [m for m in multipliers.split(",") if m]
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches!r}")
    figures = {m: energy.figure(m) for m in multipliers}
    targets, skipped = [], []
    for layer in _all_layers(model):
        kind = _kind(layer)
        if kind is not None:
            targets.append((layer, kind))
        elif isinstance(
            layer,
            (
                keras.layers.SeparableConv2D,
                keras.layers.Conv3D,
                keras.layers.Conv1DTranspose,
                keras.layers.Conv2DTranspose,
                keras.layers.Conv3DTranspose,
            ),
        ):
            skipped.append(layer.name)
    # attention: its projections are EinsumDense sublayers, counted on their own
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    totals = {}  # entry name -> {"type", phase -> summed Counts, "grad_input_computed"}
    order = []
    batch_size = None
    done = 0
    for x, y in dataset:
        if done == batches:
            break
        batch_size = batch_size or int(x.shape[0])
        recorder = _Recorder()
        with recorder.hooked(targets):
            _, out_grads, in_grads, var_grads = _gradients(model, loss_fn, x, y, recorder)
        if optimizer is not None:
            optimizer.apply_gradients(zip(var_grads, model.trainable_variables))
        seen = {}
        for (layer, kind, t), dy, dx in zip(recorder.calls, out_grads, in_grads):
            seen[layer.name] = seen.get(layer.name, 0) + 1
            base = layer.name if seen[layer.name] == 1 else f"{layer.name}#{seen[layer.name]}"
            tensors = {k: v.numpy() for k, v in t.items()}
            grads = {"y": dy.numpy() if dy is not None else np.zeros(tensors["y"].shape, np.float32)}
            if kind == "attention":
                parts = zip(
                    (f"{base}/scores", f"{base}/combine"),
                    ("attention_scores", "attention_combine"),
                    _attention_counts(layer, tensors, grads),
                )
            else:
                parts = [(base, kind, _layer_counts(layer, kind, tensors, grads))]
            for entry, etype, result in parts:
                gi_computed = not (kind != "attention" and dx is None)
                if not gi_computed:
                    result = dict(result, grad_input=NO_PRODUCTS)
                if entry not in totals:
                    order.append(entry)
                    totals[entry] = {
                        "type": etype,
                        "grad_input_computed": gi_computed,
                        **{p: np.zeros(5, np.float64) for p in counts.PHASES},
                    }
                for p in counts.PHASES:
                    totals[entry][p] += np.array(result[p], np.float64)
        done += 1
    if done == 0:
        raise ValueError("the dataset gave no batch")
    return _report(name or model.name, multipliers, figures, batch_size, done, order, totals, skipped)


def _phase_dict(arr, batches, figures):
    c = counts.Counts(*(int(round(v / batches)) for v in arr))
    d = c.to_dict()
    d["rcp_share"] = c.redundant / c.cartesian if c.cartesian else 0.0
    d["energy_pj"] = {m: energy.energy_pj(f, c.macs, c.zero_operand) for m, f in figures.items()}
    return d


def _report(name, multipliers, figures, batch_size, batches, order, totals, skipped):
    layers, phase_sums = [], {p: np.zeros(5) for p in counts.PHASES}
    for entry in order:
        t = totals[entry]
        row = {"name": entry, "type": t["type"]}
        for p in counts.PHASES:
            row[p] = _phase_dict(t[p], batches, figures)
            phase_sums[p] += t[p]
        if not t["grad_input_computed"]:
            row["grad_input"]["note"] = "not computed: Keras computes no gradient for the model input"
        layers.append(row)
    total = {p: _phase_dict(phase_sums[p], batches, figures) for p in counts.PHASES}
    step = _phase_dict(sum(phase_sums.values()), batches, figures)
    total.update({k: step[k] for k in ("macs", "zero_operand", "cartesian", "valid", "redundant", "energy_pj")})
    total["skippable_share"] = step["zero_operand"] / step["macs"] if step["macs"] else 0.0
    return {
        "model": name,
        "multiplier": list(multipliers),
        "batch_size": batch_size,
        "batches": batches,
        "energy_figures": figures,
        "layers": layers,
        "total": total,
        "not_counted": skipped,
    }
