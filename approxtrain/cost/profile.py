"""Runs training steps on real batches, captures each multiply-heavy layer's operands and output
gradients, and counts their products (docs/cost.md).

The step is a tf.function (_CountingStep). While it is traced, each counted layer's `call` is
wrapped (an instance attribute, removed afterwards) to record its input and its output *before*
the activation, whose gradient the tape then gives: dy of the product itself. In the same graph
the recorded tensors are reduced to small integer sums (approxtrain/cost/graph.py), which NumPy
turns into counts (approxtrain/cost/counts.py). Weights are only read (and, with an optimizer,
updated after the read, as in training).
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from approxtrain.cost import conv3d, counts, energy, graph, recurrent


# (Keras class, kind) in the order they are tried: a class before any it subclasses. AM twins
# subclass their Keras class, so they are counted as it.
_KINDS = (
    (keras.layers.MultiHeadAttention, "attention"),
    (keras.layers.GroupQueryAttention, "grouped_attention"),
    (keras.layers.DepthwiseConv2D, "depthwise_conv2d"),
    (keras.layers.DepthwiseConv1D, "depthwise_conv1d"),
    (keras.layers.SeparableConv2D, "separable_conv2d"),
    (keras.layers.SeparableConv1D, "separable_conv1d"),
    (keras.layers.Conv1DTranspose, "conv1d_transpose"),
    (keras.layers.Conv2DTranspose, "conv2d_transpose"),
    (keras.layers.Conv3DTranspose, "conv3d_transpose"),
    (keras.layers.Conv3D, "conv3d"),
    (keras.layers.Conv1D, "conv1d"),
    (keras.layers.Conv2D, "conv2d"),
    (keras.layers.Dense, "dense"),
    (keras.layers.EinsumDense, "einsum_dense"),
    *recurrent.KINDS,
)
RECURRENT = tuple(kind for _, kind in recurrent.KINDS)
ATTENTION = ("attention", "grouped_attention")


def _kind(layer):
    """The count kind of a layer, None where it has none (a recurrent layer with dropout)."""
    kind = next((kind for cls, kind in _KINDS if isinstance(layer, cls)), None)
    return None if kind in RECURRENT and not recurrent.countable(layer) else kind


def _all_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]


class _Recorder:
    def __init__(self):
        self.calls = []  # (layer, kind, payload dict of tensors)

    @contextlib.contextmanager
    def hooked(self, layers):
        try:
            for layer, kind in layers:
                if kind in ATTENTION:
                    layer._compute_attention = self._attention_hook(layer, kind)
                elif kind in RECURRENT:
                    layer.call = self._recurrent_hook(layer, kind)
                else:
                    layer.call = self._product_hook(layer, kind)
            yield
        finally:
            for layer, kind in layers:
                layer.__dict__.pop("_compute_attention" if kind in ATTENTION else "call", None)

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

    def _recurrent_hook(self, layer, kind):
        original = type(layer).call.__get__(layer)

        def call(sequences, initial_state=None, mask=None, training=False):
            out = original(sequences, initial_state=initial_state, mask=mask, training=training)
            self.calls.append((layer, kind, {"x": sequences, "y": out, "initial_state": initial_state, "mask": mask}))
            return out

        return call

    def _attention_hook(self, layer, kind):
        original = type(layer)._compute_attention.__get__(layer)

        def compute(query, key, value, *args, **kw):
            out, scores = original(query, key, value, *args, **kw)
            if scores is None:  # Keras's fused dot_product_attention gives none: P by the explicit path
                rescore = _attention_scores if kind == "attention" else _grouped_attention_scores
                scores = rescore(layer, original, query, key, value, args, kw)
            self.calls.append((layer, kind, {"q": query, "k": key, "v": value, "p": scores, "y": out}))
            return out, scores

        return compute


def _attention_scores(layer, original, query, key, value, args, kw):
    """MultiHeadAttention's softmax P for Q, K, V [B, T|S, N, H] through Keras's explicit path
    (the layer's mask, a causal one made explicit), for the count only: the layer's own output
    is kept."""
    names = ("attention_mask", "training", "return_attention_scores", "use_causal_mask")
    bound = {**dict(zip(names, args)), **kw}
    if bound.get("use_causal_mask") and bound.get("attention_mask") is None:
        bound["attention_mask"] = tf.linalg.band_part(tf.ones((1, query.shape[1], key.shape[1]), tf.bool), -1, 0)
    bound.update(return_attention_scores=True, use_causal_mask=False)
    return original(query, key, value, **bound)[1]


def _grouped_attention_scores(layer, original, query, key, value, args, kw):
    """GroupQueryAttention's softmax P (key and value already repeated to the query heads)
    through Keras's explicit path, which it takes while the layer returns scores."""
    asked = layer._return_attention_scores
    layer._return_attention_scores = True
    try:
        return original(query, key, value, *args, **kw)[1]
    finally:
        layer._return_attention_scores = asked


def _conv_geometry(layer, kind, x_shape, w_shape=None):
    """ConvGeometry of a counted conv layer; the 1-D kinds are read as 2-D with H = 1, depthwise
    as the grouped conv with G = C and filters [KH, KW, 1, C*m]."""
    w_shape = tuple(layer.kernel.shape) if w_shape is None else w_shape
    strides, dilations = tuple(layer.strides), tuple(layer.dilation_rate)
    groups = getattr(layer, "groups", 1)
    if kind in ("conv1d", "depthwise_conv1d"):
        x_shape, w_shape = (x_shape[0], 1, *x_shape[1:]), (1, *w_shape)
        strides, dilations = (1,) + strides, (1,) + dilations
    if kind in ("depthwise_conv2d", "depthwise_conv1d"):
        kh, kw, c, m = w_shape
        w_shape, groups = (kh, kw, 1, c * m), c
    return counts.conv_geometry(x_shape, w_shape, strides, dilations, layer.padding, groups)


def _transpose_pads(layer, u_spatial, z_spatial, k_spatial, strides, dilations):
    """TensorFlow's pads for conv_transpose: those of the conv of the output size back to u."""
    pads = []
    for u, z, k, s, d in zip(u_spatial, z_spatial, k_spatial, strides, dilations):
        total = 0 if layer.padding == "valid" else max((u - 1) * s + (k - 1) * d + 1 - z, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _transpose_geometry(layer, kind, u_shape, z_shape):
    """The ConvGeometry of the convolution a transposed conv layer is the input gradient of: its
    input z has the layer's output shape, its output the layer's input shape u, its kernel
    [KH, KW, filters, C] is the layer's. conv1d_transpose reads as H = 1."""
    w_shape = tuple(layer.kernel.shape)
    strides, dilations = tuple(layer.strides), tuple(layer.dilation_rate)
    if kind == "conv1d_transpose":
        u_shape, z_shape, w_shape = (u_shape[0], 1, *u_shape[1:]), (z_shape[0], 1, *z_shape[1:]), (1, *w_shape)
        strides, dilations = (1,) + strides, (1,) + dilations
    pads = _transpose_pads(layer, u_shape[1:3], z_shape[1:3], w_shape[:2], strides, dilations)
    g = counts.conv_geometry(z_shape, w_shape, strides, dilations, pads)
    if (g.n, g.oh, g.ow, g.o) != tuple(u_shape):
        raise ValueError(f"{layer.name}: transposed conv of {u_shape} -> {z_shape} has no matching convolution")
    return g


def _conv3d_sums(layer, kind, x, y, dy):
    """Conv3D, or Conv3DTranspose as the input gradient of the conv3d from its output shape."""
    kernel = tf.convert_to_tensor(layer.kernel)
    strides, dilations = tuple(layer.strides), tuple(layer.dilation_rate)
    if kind == "conv3d":
        pads = tuple(
            counts.conv_padding(int(size), int(k), s, d, layer.padding)
            for size, k, s, d in zip(x.shape[1:4], kernel.shape[:3], strides, dilations)
        )
        g = conv3d.geometry(tuple(x.shape), tuple(kernel.shape), strides, dilations, pads, layer.groups)
        return (lambda v: conv3d.from_sums(g, **v)), conv3d.graph_sums(x, kernel, dy, g)
    u_shape, z_shape = tuple(x.shape), tuple(y.shape)
    pads = _transpose_pads(layer, u_shape[1:4], z_shape[1:4], kernel.shape[:3], strides, dilations)
    g = conv3d.geometry(z_shape, tuple(kernel.shape), strides, dilations, pads)
    if (g.n, g.od, g.plane.oh, g.plane.ow, g.plane.o) != u_shape:
        raise ValueError(f"{layer.name}: transposed conv of {u_shape} -> {z_shape} has no matching convolution")
    return (lambda v: _as_transposed(conv3d.from_sums(g, **v))), conv3d.graph_sums(dy, kernel, x, g)


def _as_transposed(conv):
    """A transposed conv's phases from those of the convolution it is the input gradient of:
    its forward is that conv's input gradient and its input gradient that conv's forward."""
    return {"forward": conv["grad_input"], "grad_input": conv["forward"], "grad_weight": conv["grad_weight"]}


def _separable_sums(layer, kind, x, dy):
    """SeparableConv1D/2D as its two products: the depthwise conv x -> mid, then the pointwise 1x1
    conv mid -> y (1-D read as 2-D with H = 1). mid and its gradient are recomputed natively from
    the layer's kernels (their zeros are what an exact multiplier gives; an approximate one
    changes them only where a sum of non-zero products happens to cancel exactly)."""
    dk, pk = tf.convert_to_tensor(layer.depthwise_kernel), tf.convert_to_tensor(layer.pointwise_kernel)
    depthwise = "depthwise_conv1d" if kind == "separable_conv1d" else "depthwise_conv2d"
    g1 = _conv_geometry(layer, depthwise, tuple(x.shape), w_shape=tuple(dk.shape))
    if kind == "separable_conv1d":
        x, dk, pk = tf.expand_dims(x, 1), tf.expand_dims(dk, 0), tf.expand_dims(pk, 0)
        dy = tf.expand_dims(dy, 1)
    kh, kw, c, m = dk.shape
    # mid on the explicitly padded input (the same pads for every padding mode, "causal" too), at
    # stride 1 and then subsampled: TensorFlow's CPU depthwise kernel without oneDNN refuses
    # unequal strides, which a 1-D layer read as 2-D has.
    xp = tf.pad(x, [[0, 0], list(g1.pads[0]), list(g1.pads[1]), [0, 0]])
    mid = tf.nn.depthwise_conv2d(xp, dk, (1, 1, 1, 1), "VALID", dilations=g1.dilations)
    mid = mid[:, : (g1.oh - 1) * g1.strides[0] + 1 : g1.strides[0], : (g1.ow - 1) * g1.strides[1] + 1 : g1.strides[1]]
    dmid = tf.einsum("nhwo,co->nhwc", dy, pk[0, 0])
    g2 = counts.conv_geometry(tuple(mid.shape), tuple(pk.shape))
    s1 = graph.conv2d_sums(x, tf.reshape(dk, (kh, kw, 1, c * m)), dmid, g1)
    s2 = graph.conv2d_sums(mid, pk, dy, g2)
    return (lambda v: (counts.conv2d_from_sums(g1, **v[0]), counts.conv2d_from_sums(g2, **v[1]))), (s1, s2)


def _graph_sums(layer, kind, t, dy):
    """(finish, tensors): the layer's count reductions as graph tensors, and the NumPy function
    that turns their values into {phase: Counts}. The kernel is read here, before any update."""
    if kind in ATTENTION:
        # Both products' operands are activations; their counts are taken in NumPy (small models).
        tensors = {**{n: t[n] for n in "qkvp"}, "y": dy}
        return (lambda v: _attention_counts(layer, kind, v, {"y": v["y"]})), tensors
    if kind in ("separable_conv2d", "separable_conv1d"):
        return _separable_sums(layer, kind, t["x"], dy)
    if kind in ("conv3d", "conv3d_transpose"):
        return _conv3d_sums(layer, kind, t["x"], t["y"], dy)
    if kind in RECURRENT:
        return recurrent.graph_sums(layer, kind, t["x"], dy, t["initial_state"], t["mask"])
    x, kernel = t["x"], tf.convert_to_tensor(layer.kernel)
    if kind in ("conv1d_transpose", "conv2d_transpose"):
        g = _transpose_geometry(layer, kind, tuple(x.shape), tuple(t["y"].shape))
        u = tf.reshape(x, (g.n, g.oh, g.ow, g.o))
        dz = tf.reshape(dy, (g.n, g.h, g.w, g.c))
        kernel = tf.reshape(kernel, (g.kh, g.kw, g.cg, g.o))
        return (lambda v: _as_transposed(counts.conv2d_from_sums(g, **v))), graph.conv2d_sums(dz, kernel, u, g)
    if kind in ("conv2d", "conv1d", "depthwise_conv2d", "depthwise_conv1d"):
        g = _conv_geometry(layer, kind, tuple(x.shape))
        x = tf.reshape(x, (g.n, g.h, g.w, g.c))
        kernel = tf.reshape(kernel, (g.kh, g.kw, g.cg, g.o))
        dy = tf.reshape(dy, (g.n, g.oh, g.ow, g.o))
        return (lambda v: counts.conv2d_from_sums(g, **v)), graph.conv2d_sums(x, kernel, dy, g)
    if kind == "dense":
        equation = "mk,ku->mu"
        x, dy = tf.reshape(x, (-1, x.shape[-1])), tf.reshape(dy, (-1, kernel.shape[-1]))
    elif kind == "einsum_dense":
        equation = layer.equation
    else:
        raise AssertionError(kind)
    sizes = counts.einsum_sizes(equation, tuple(x.shape), tuple(kernel.shape))
    return (lambda v: counts.einsum_from_sums(equation, sizes, v)), graph.einsum_sums(equation, x, kernel, dy)


def _attention_counts(layer, kind, t, grads):
    """The two attention products Q.K^T and P.V, in Keras's equations. dS (the gradient of the
    raw scores) is recomputed from P and dP = dOut.V^T through the softmax's Jacobian.
    MultiHeadAttention's score equation names the key first, GroupQueryAttention's the query."""
    q, k, v, p = (np.asarray(t[n]) for n in "qkvp")
    dout = np.asarray(grads["y"])
    (lp, lv), lo = layer._combine_equation.split("->")[0].split(","), layer._combine_equation.split("->")[1]
    dp = np.einsum(f"{lo},{lv}->{lp}", dout, v)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # softmax over the (last) key axis
    ab = layer._dot_product_equation.split("->")[0].split(",")
    lq, lk = (ab[1], ab[0]) if kind == "attention" else (ab[0], ab[1])
    out = layer._dot_product_equation.split("->")[1]
    scores = counts.einsum(f"{lq},{lk}->{out}", q, k, ds)
    combine = counts.einsum(layer._combine_equation, p, v, dout)
    return scores, combine


def _or_zeros(grad, like):
    """The gradient of `like` (a tensor or a list of them), zeros where the tape gave None."""
    if grad is None:
        return tf.nest.map_structure(tf.zeros_like, like)
    if isinstance(like, (list, tuple)):
        return [tf.zeros_like(y) if g is None else g for g, y in zip(grad, like)]
    return grad


class _CountingStep:
    """One training step as a tf.function that returns the count reductions of every call of a
    counted layer (nothing else leaves the graph); calling it runs the step and finishes the
    counts in NumPy: [(layer, kind, grad_input computed, {phase: Counts} or (scores, combine))].

    The hooks are installed only while the function is traced, so the graph is the model's own
    step with the layers' pre-activation outputs as extra tape targets; with an optimizer the
    gradients are applied in the same graph, after the reductions have read the weights."""

    def __init__(self, model, targets, optimizer=None):
        self.model, self.targets, self.optimizer = model, targets, optimizer
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.static = None  # [(layer, kind, grad_input computed, finish)], set by each trace
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)  # its variables cannot be made in the graph
        self._graph = tf.function(self._step)

    def _step(self, x, y):
        recorder = _Recorder()
        with recorder.hooked(self.targets):
            with tf.GradientTape() as tape:
                probs = self.model(x, training=True)
                loss = self.loss_fn(y, probs)
        watched = [t["y"] for _, _, t in recorder.calls]
        inputs = [t.get("x", t.get("q")) for _, _, t in recorder.calls]
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, watched + inputs + list(variables))
        n = len(watched)
        static, sums = [], []
        for (layer, kind, t), dy, dx in zip(recorder.calls, grads[:n], grads[n : 2 * n]):
            finish, tensors = _graph_sums(layer, kind, t, _or_zeros(dy, t["y"]))
            # Keras computes no gradient for the model input: the tape gives None for it.
            static.append((layer, kind, kind in ATTENTION or dx is not None, finish))
            sums.append(tensors)
        if self.optimizer is not None:
            with tf.control_dependencies(tf.nest.flatten(sums)):
                self.optimizer.apply_gradients(zip(grads[2 * n :], variables))
        self.static = static
        return sums

    def __call__(self, x, y):
        values = tf.nest.map_structure(lambda t: t.numpy(), self._graph(x, y))
        return [(layer, kind, gi, finish(v)) for (layer, kind, gi, finish), v in zip(self.static, values)]


NO_PRODUCTS = counts.Counts(0, 0, 0, 0, 0)


def _targets(model):
    """([(layer, kind)] of the counted layers, [names of the multiply-heavy layers not counted]).

    Every multiply-heavy layer (approxtrain._substitute.MULTIPLY_HEAVY: Conv3D, recurrent layers,
    ...) that has no count yet is named under "not_counted", never left out silently."""
    from approxtrain._substitute import _leaves

    targets = [(layer, kind) for layer in _all_layers(model) if (kind := _kind(layer)) is not None]
    skipped = [layer.name for layer in _leaves(model) if _kind(layer) is None]
    return targets, skipped


def counting_step(model, optimizer=None):
    """The step profile() runs per batch, callable as step(x, labels) (for benchmarks):
    [(layer, kind, grad_input computed, counts)] per call of a counted layer."""
    return _CountingStep(model, _targets(model)[0], optimizer)


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
    targets, skipped = _targets(model)
    # attention: its projections are EinsumDense sublayers, counted on their own
    totals = {}  # entry name -> {"type", phase -> summed Counts, "grad_input_computed"}
    order = []
    batch_size = None
    done = 0
    step = _CountingStep(model, targets, optimizer)
    for x, y in dataset:
        if done == batches:
            break
        batch_size = batch_size or int(x.shape[0])
        seen = {}
        for layer, kind, gi_computed, result in step(x, y):
            seen[layer.name] = seen.get(layer.name, 0) + 1
            base = layer.name if seen[layer.name] == 1 else f"{layer.name}#{seen[layer.name]}"
            if kind in ATTENTION:
                parts = [(f"{base}/scores", "attention_scores", result[0], True)]
                parts += [(f"{base}/combine", "attention_combine", result[1], True)]
            elif kind in ("separable_conv2d", "separable_conv1d"):
                # The pointwise conv's input gradient (of the inner tensor) is always computed.
                dims = kind[-2:]
                parts = [(f"{base}/depthwise", f"depthwise_conv{dims}", result[0], gi_computed)]
                parts += [(f"{base}/pointwise", f"conv{dims}", result[1], True)]
            elif kind in RECURRENT:
                # Only the input products read the layer input; the state's gradient is internal.
                parts = [(f"{base}/input", "rnn_input", result["input"], gi_computed)]
                parts += [(f"{base}/{name}", f"rnn_{name}", result[name], True) for name in ("state", "candidate")
                          if name in result]  # fmt: skip
            else:
                parts = [(base, kind, result, gi_computed)]
            for entry, etype, result, gi_computed in parts:
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
