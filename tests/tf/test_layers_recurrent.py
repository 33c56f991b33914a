"""AMSimpleRNN, AMGRU, AMLSTM: AM products bit for bit, closeness to the Keras twins, wrappers, saving.

The bit-exact tests run the recurrence in NumPy with the reference AM matmul
(tests/amsim_reference.py) and float32 elementwise gate math. The activations (sigmoid,
tanh) are the layer's own, evaluated by TensorFlow on the reference's values: their float32
bits are TF's, not NumPy's, and they are native in the layer anyway. Gradients are checked
with the layer's own intermediate tensor dL/d(x . kernel) (the output of the hoisted input
product, obtained through `layer.cell.input_products` and `layer.recurrence`, which the test
first shows to be exactly what the layer computes). The recurrent kernel's gradient is checked
bit for bit on one step (T = 1, nonzero initial state); over several steps it is TensorFlow's
sum of per-step AM products in its loop-gradient order, which has no canonical order to
reproduce, so it is only compared with the twin under bf16 (tolerance).
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

import approxtrain as at  # noqa: E402
from approxtrain import layers as am  # noqa: E402
import amsim_reference as ref  # noqa: E402
from _compare import BF16, assert_bits_equal, bf16_values, random_table  # noqa: E402

B, T, D, U = 2, 3, 3, 4

# name -> (AM class, Keras twin, constructor kwargs)
CASES = {
    "simple_rnn": (am.AMSimpleRNN, keras.layers.SimpleRNN, {}),
    "gru": (am.AMGRU, keras.layers.GRU, {}),
    "gru_reset_before": (am.AMGRU, keras.layers.GRU, dict(reset_after=False)),
    "lstm": (am.AMLSTM, keras.layers.LSTM, {}),
}


def twin_pair(case, multiplier, data_seed=0, shape=(B, T, D), **extra):
    """The Keras twin with bf16 weights, and the AM layer made from its config and weights
    (the way substitute() makes it)."""
    am_cls, keras_cls, kwargs = CASES[case]
    rng = np.random.default_rng(data_seed)
    twin = keras_cls(U, **kwargs, **extra)
    twin.build(shape)
    twin.set_weights([bf16_values(rng, w.shape, 0.5) for w in twin.get_weights()])
    # (Keras's SimpleRNN.get_config omits `seed`, so it is passed on by hand.)
    seed = {k: v for k, v in extra.items() if k == "seed"}
    layer = am_cls.from_config(twin.get_config() | dict(multiplier=multiplier) | seed)
    layer.build(shape)
    layer.set_weights(twin.get_weights())
    return layer, twin, bf16_values(rng, shape)


def state_count(case):
    return 2 if case == "lstm" else 1


# --- NumPy reference recurrences ---------------------------------------------------------------


def native(fn, x):
    """A native activation of the layer, evaluated by TF on a float32 array."""
    return np.asarray(fn(tf.constant(x, tf.float32)))


def reference_forward(case, cell, x, states, m):
    """All hidden outputs [B, T, U] and the final states, AM products from the reference."""
    kernel, recurrent = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
    bias = cell.bias.numpy()
    act, rec_act = cell.activation, getattr(cell, "recurrent_activation", None)
    b, t, d = x.shape
    u = cell.units
    x_kernel = ref.matmul(x.reshape(b * t, d), kernel, *m.core_args).reshape(b, t, -1)
    h = states[0]
    c = states[1] if case == "lstm" else None
    outputs = []
    for step in range(t):
        xk = x_kernel[:, step]
        if case == "simple_rnn":
            h = native(act, (xk + bias) + ref.matmul(h, recurrent, *m.core_args))
        elif case == "lstm":
            z = (xk + ref.matmul(h, recurrent, *m.core_args)) + bias
            i, f = native(rec_act, z[:, :u]), native(rec_act, z[:, u : 2 * u])
            c = f * c + i * native(act, z[:, 2 * u : 3 * u])
            h = native(rec_act, z[:, 3 * u :]) * native(act, c)
        else:
            xb = xk + (bias[0] if cell.reset_after else bias)
            if cell.reset_after:
                inner = ref.matmul(h, recurrent, *m.core_args) + bias[1]
            else:
                inner = ref.matmul(h, recurrent[:, : 2 * u], *m.core_args)
            z = native(rec_act, xb[:, :u] + inner[:, :u])
            r = native(rec_act, xb[:, u : 2 * u] + inner[:, u : 2 * u])
            if cell.reset_after:
                m_h = r * inner[:, 2 * u :]
            else:
                m_h = ref.matmul(r * h, recurrent[:, 2 * u :], *m.core_args)
            candidate = native(act, xb[:, 2 * u :] + m_h)
            h = z * h + (np.float32(1) - z) * candidate
        outputs.append(h)
    return np.stack(outputs, axis=1), ([h, c] if case == "lstm" else [h])


def decomposed(layer, x, states, upstream):
    """The layer's call in its two parts under one tape: outputs, final states, and the
    gradients w.r.t. x . kernel (the layer's own intermediate tensor), x, the kernels and states."""
    x = tf.constant(x)
    states = [tf.constant(s) for s in states]
    with tf.GradientTape() as tape:
        tape.watch([x] + states)
        x_kernel = layer.cell.input_products(x)
        _, outputs, final = layer.recurrence(x_kernel, states)
        loss = tf.reduce_sum(outputs * upstream)
    grads = tape.gradient(loss, [x_kernel, x, layer.cell.kernel, layer.cell.recurrent_kernel] + states)
    return outputs.numpy(), [s.numpy() for s in final], [g.numpy() for g in grads]


def three_table_layer(case, steps, seed):
    fwd, gin, gw = random_table(seed), random_table(seed + 1), random_table(seed + 2)
    layer, _, _ = twin_pair(case, fwd, data_seed=seed, shape=(B, steps, D), return_sequences=True)
    layer = type(layer).from_config(
        layer.get_config() | dict(multiplier=fwd, grad_input_multiplier=gin, grad_weight_multiplier=gw)
    )
    layer.build((B, steps, D))
    layer.set_weights(twin_pair(case, fwd, data_seed=seed, shape=(B, steps, D))[1].get_weights())
    rng = np.random.default_rng(seed + 10)
    x = rng.standard_normal((B, steps, D)).astype(np.float32)
    states = [rng.standard_normal((B, U)).astype(np.float32) * 0.5 for _ in range(state_count(case))]
    upstream = rng.standard_normal((B, steps, U)).astype(np.float32)
    return layer, (fwd, gin, gw), x, states, upstream


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_input_products_bit_exact_with_three_tables(case):
    """Three steps: every output bit from the reference recurrence; the kernel and input
    gradients bit for bit from the layer's own dL/d(x . kernel), each from its own table."""
    layer, (fwd, gin, gw), x, states, upstream = three_table_layer(case, T, seed=20)
    outputs, final, (d_xk, dx, dkernel, _, *_) = decomposed(layer, x, states, upstream)
    # The decomposition is what the layer does: same bits through the layer's own call.
    whole = layer(x, initial_state=[tf.constant(s) for s in states])
    assert_bits_equal(whole.numpy(), outputs, f"{case}: layer call vs input_products + recurrence")

    want, want_final = reference_forward(case, layer.cell, x, states, fwd)
    assert_bits_equal(outputs, want, f"{case} outputs")
    for got, expected in zip(final, want_final):
        assert_bits_equal(got, expected, f"{case} final state")

    x_flat, d_flat = x.reshape(B * T, D), d_xk.reshape(B * T, -1)
    kernel = layer.cell.kernel.numpy()
    assert np.abs(d_flat).max() > 0
    # dW = X^T . dZ over (batch, time) ascending: ONE AM GEMM, X the table row, grad_weight table.
    assert_bits_equal(dkernel, ref.matmul(x_flat.T, d_flat, *gw.core_args), f"{case} d kernel")
    # dX = dZ . W^T, dZ the table row, grad_input table.
    assert_bits_equal(dx.reshape(B * T, D), ref.matmul(d_flat, kernel.T, *gin.core_args), f"{case} d inputs")


@pytest.mark.parametrize("case", sorted(CASES))
def test_recurrent_products_of_one_step_bit_exact_with_three_tables(case):
    """T = 1 from a nonzero state: the recurrent kernel's gradient (and, where the state
    enters only through the product, the state's gradient) bit for bit."""
    layer, (fwd, gin, gw), x, states, upstream = three_table_layer(case, 1, seed=40)
    outputs, _, (d_xk, _, _, d_recurrent, *d_states) = decomposed(layer, x, states, upstream)
    assert_bits_equal(outputs, reference_forward(case, layer.cell, x, states, fwd)[0], f"{case} outputs")
    cell = layer.cell
    recurrent = cell.recurrent_kernel.numpy()
    h0, dz = states[0], d_xk[:, 0]
    u = U
    if case in ("simple_rnn", "lstm"):
        # The pre-activation is x.W + h.U (+ b): d(h.U) = d(x.W).
        assert_bits_equal(d_recurrent, ref.matmul(h0.T, dz, *gw.core_args), f"{case} d recurrent_kernel")
        assert_bits_equal(d_states[0], ref.matmul(dz, recurrent.T, *gin.core_args), f"{case} d h0")
        return
    # GRU: the reset gate r, recomputed from the (bit-exact) forward products.
    xb = np.asarray(cell.input_products(tf.constant(x)))[:, 0]
    bias = cell.bias.numpy()
    xb = xb + (bias[0] if cell.reset_after else bias)
    if cell.reset_after:
        inner = ref.matmul(h0, recurrent, *fwd.core_args) + bias[1]
        r = native(cell.recurrent_activation, xb[:, u : 2 * u] + inner[:, u : 2 * u])
        d_inner = np.concatenate([dz[:, : 2 * u], dz[:, 2 * u :] * r], axis=1)  # d(r * m_h)/d m_h = r
        want = ref.matmul(h0.T, d_inner, *gw.core_args)
    else:
        inner = ref.matmul(h0, recurrent[:, : 2 * u], *fwd.core_args)
        r = native(cell.recurrent_activation, xb[:, u : 2 * u] + inner[:, u : 2 * u])
        want = np.concatenate(
            [ref.matmul(h0.T, dz[:, : 2 * u], *gw.core_args), ref.matmul((r * h0).T, dz[:, 2 * u :], *gw.core_args)],
            axis=1,
        )
    # (The state also enters through z * h natively, so its gradient is a native sum: not checked here.)
    zero = np.float32(0)  # slice gradients are summed with zeros: -0 becomes +0
    assert_bits_equal(d_recurrent + zero, want + zero, f"{case} d recurrent_kernel")


# --- closeness to the twin ---------------------------------------------------------------------


def outputs_and_grads(layer, x, upstream, **call_kwargs):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        ys = y if isinstance(y, (list, tuple)) else [y]
        loss = sum(tf.reduce_sum(t * u) for t, u in zip(ys, upstream))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [t.numpy() for t in ys] + [g.numpy() for g in grads]


def max_rel_error(got, want):
    return max(float(np.max(np.abs(g - w))) / float(np.max(np.abs(w))) for g, w in zip(got, want))


def upstream_for(twin, x, **call_kwargs):
    rng = np.random.default_rng(99)
    y = twin(x, **call_kwargs)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [bf16_values(rng, t.shape) for t in ys]


# The hidden state is not a bf16 value after the first step, so the bf16 table rounds it:
# the difference from the twin is a few bf16 roundings per step (2^-8 relative), not 2e-5.
BF16_REL = 1.5e-2


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_close_to_twin_and_mbm7_moves_away(case):
    layer, twin, x = twin_pair(case, BF16, return_sequences=True)
    upstream = upstream_for(twin, x)
    want = outputs_and_grads(twin, x, upstream)
    got = outputs_and_grads(layer, x, upstream)
    assert len(got) == len(want) == 2 + len(twin.trainable_weights)
    bf16_error = max_rel_error(got, want)
    assert bf16_error <= BF16_REL, f"{case}: bf16 relative error {bf16_error}"
    mbm7 = type(layer).from_config(layer.get_config() | dict(multiplier="mbm7"))
    mbm7.build(x.shape)
    mbm7.set_weights(twin.get_weights())
    mbm7_error = max_rel_error(outputs_and_grads(mbm7, x, upstream)[:1], want[:1])
    assert mbm7_error > 3 * max_rel_error(got[:1], want[:1]) and mbm7_error > 5e-3, (case, mbm7_error)


VARIANTS = {
    "last_output": dict(),
    "sequences_and_state": dict(return_sequences=True, return_state=True),
    "backwards": dict(go_backwards=True, return_sequences=True),
    "backwards_state": dict(go_backwards=True, return_state=True),
    "unrolled": dict(unroll=True, return_sequences=True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_variants_match_twin(case, variant):
    layer, twin, x = twin_pair(case, BF16, shape=(B, 4, D), **VARIANTS[variant])
    got, want = layer(x), twin(x)
    got = got if isinstance(got, (list, tuple)) else [got]
    want = want if isinstance(want, (list, tuple)) else [want]
    assert [t.shape for t in got] == [t.shape for t in want]
    assert max_rel_error([t.numpy() for t in got], [t.numpy() for t in want]) <= BF16_REL


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_masking_matches_twin(case):
    layer, twin, x = twin_pair(case, BF16, shape=(B, 4, D), return_sequences=True, return_state=True)
    mask = np.array([[True, True, False, True], [True, False, False, False]])
    got = [t.numpy() for t in layer(x, mask=mask)]
    want = [t.numpy() for t in twin(x, mask=mask)]
    assert max_rel_error(got, want) <= BF16_REL
    # A masked step keeps the previous output: sample 1 repeats its first output.
    np.testing.assert_array_equal(got[0][1, 1:], np.broadcast_to(got[0][1, :1], (3, U)))


@pytest.mark.parametrize("dropout", [dict(dropout=0.3), dict(dropout=0.3, recurrent_dropout=0.4)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_training_dropout_matches_twin(case, dropout):
    """Same seed, same masks: the hoisted input product applies the per-step dropout mask (one per
    gate under recurrent dropout, Keras's implementation=1) the way the twin does."""
    layer, twin, x = twin_pair(case, BF16, shape=(B, 4, D), return_sequences=True, seed=3, **dropout)
    got, want = layer(x, training=True).numpy(), twin(x, training=True).numpy()
    assert max_rel_error([got], [want]) <= BF16_REL
    assert np.max(np.abs(got - layer(x).numpy())) > 1e-2  # the masks did act


@pytest.mark.parametrize("case", ["gru", "lstm"])
def test_stateful_continues_across_calls_bit_exact(case):
    layer, _, x = twin_pair(case, "mbm7", shape=(B, 4, D), return_sequences=True)
    stateful = type(layer).from_config(layer.get_config() | dict(stateful=True))
    stateful.build((B, 4, D))
    stateful.set_weights(layer.get_weights())
    halves = np.concatenate([stateful(x[:, :2]).numpy(), stateful(x[:, 2:]).numpy()], axis=1)
    assert_bits_equal(halves, layer(x).numpy(), f"{case} stateful halves vs whole")
    stateful.reset_state()
    assert_bits_equal(stateful(x[:, :2]).numpy(), layer(x[:, :2]).numpy(), f"{case} after reset_state")


# --- never the fused path ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["gru", "lstm"])
def test_fused_backend_path_is_never_taken(case, monkeypatch):
    """Keras's LSTM/GRU call backend.lstm / backend.gru first (cuDNN on a GPU): the AM layers must not."""
    from keras.src import backend

    def fused(*args, **kwargs):
        raise AssertionError("fused backend path called")

    name = "lstm" if case == "lstm" else "gru"
    monkeypatch.setattr(backend, name, fused)
    layer, twin, x = twin_pair(case, BF16)
    with pytest.raises(AssertionError, match="fused backend path called"):
        twin(x)  # the patch is on the path the twin takes
    layer(x)
    layer.use_cudnn = "auto"  # what Bidirectional does with the wrapped layer's value
    assert layer.use_cudnn is False
    layer(x)


def test_use_cudnn_true_is_a_clear_error():
    with pytest.raises(ValueError, match="AMLSTM 'rnn_x': use_cudnn=True asks for the fused cuDNN kernel"):
        am.AMLSTM(3, multiplier="bf16", use_cudnn=True, name="rnn_x")


# --- wrappers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["gru", "lstm"])
def test_bidirectional_of_am_layer_matches_twin(case):
    layer, twin, x = twin_pair(case, BF16, return_sequences=True)
    wrapped, wrapped_twin = keras.layers.Bidirectional(layer), keras.layers.Bidirectional(twin)
    wrapped.build(x.shape)
    wrapped_twin.build(x.shape)
    wrapped_twin.set_weights([bf16_values(np.random.default_rng(5), w.shape, 0.5) for w in wrapped_twin.get_weights()])
    wrapped.set_weights(wrapped_twin.get_weights())
    assert type(wrapped.forward_layer) is type(wrapped.backward_layer) is type(layer)
    assert wrapped.backward_layer.go_backwards
    assert max_rel_error([wrapped(x).numpy()], [wrapped_twin(x).numpy()]) <= BF16_REL


def test_time_distributed_am_dense_and_rnn_in_a_model_train():
    rng = np.random.default_rng(6)
    model = keras.Sequential(
        [
            keras.Input((T, D)),
            keras.layers.TimeDistributed(am.AMDense(3, multiplier="mbm7")),
            keras.layers.Bidirectional(am.AMLSTM(U, multiplier="mbm7", return_sequences=True)),
            am.AMSimpleRNN(U, return_sequences=True, multiplier="mbm7", grad_weight_multiplier="fp32"),
            am.AMGRU(U, multiplier="mbm7", dropout=0.25, recurrent_dropout=0.25),
            am.AMDense(2, multiplier="mbm7"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    before = [w.numpy() for w in model.trainable_weights]
    loss = model.train_on_batch(rng.standard_normal((4, T, D)), rng.standard_normal((4, 2)))
    assert np.isfinite(loss)
    assert all(np.any(b != a.numpy()) for b, a in zip(before, model.trainable_weights))


def test_substitute_replaces_top_level_recurrent_layers():
    model = keras.Sequential(
        [
            keras.Input((T, D)),
            keras.layers.LSTM(U, return_sequences=True),
            keras.layers.GRU(U, reset_after=False),
            keras.layers.Dense(2),
        ]
    )
    new = at.substitute(model, multiplier="mbm7")
    assert [type(layer) for layer in new.layers] == [am.AMLSTM, am.AMGRU, am.AMDense]
    assert new.layers[1].cell.reset_after is False
    for a, b in zip(model.weights, new.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# Substitution INSIDE wrappers is the substitution engine's job (another change reaches layers
# held as attributes of other layers, e.g. Bidirectional.forward_layer / backward_layer): this
# test states what it must do. The AM layers support it already (from the twin's config plus the
# multipliers, weights by set_weights: test_bidirectional_of_am_layer_matches_twin).
def test_substitute_reaches_inside_bidirectional():
    model = keras.Sequential([keras.Input((T, D)), keras.layers.Bidirectional(keras.layers.LSTM(U))])
    new = at.substitute(model, multiplier="mbm7")
    wrapper = new.layers[0]
    assert type(wrapper.forward_layer) is am.AMLSTM and type(wrapper.backward_layer) is am.AMLSTM
    x = np.random.default_rng(7).standard_normal((B, T, D)).astype(np.float32)
    for a, b in zip(model.weights, new.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.max(np.abs(new(x).numpy() - model(x).numpy())) > 0


# --- config and saving -------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_get_config_round_trip(case, registered_bf16):
    am_cls, _, kwargs = CASES[case]
    layer = am_cls(
        U,
        **kwargs,
        multiplier=BF16,
        grad_input_multiplier="fp32",
        return_state=True,
        go_backwards=True,
        dropout=0.25,
        name="rnn_x",
    )
    config = layer.get_config()
    assert [config[k] for k in ("multiplier", "grad_input_multiplier", "grad_weight_multiplier")] == [
        "bf16",
        "fp32",
        None,
    ]
    clone = am_cls.from_config(config)
    assert type(clone) is am_cls and type(clone.cell) is am_cls.cell_class
    assert clone.get_config() == config
    assert clone.cell.multiplier == "bf16" and clone.cell.grad_input_multiplier == "fp32"
    assert keras.saving.get_registered_name(am_cls) == f"approxtrain>{am_cls.__name__}"


def test_keras_save_load_round_trip(tmp_path, registered_bf16):
    model = keras.Sequential(
        [
            keras.Input((T, D)),
            am.AMLSTM(U, return_sequences=True, multiplier="bf16", grad_weight_multiplier="fp32"),
            keras.layers.Bidirectional(am.AMGRU(U, reset_after=False, return_sequences=True, multiplier="mbm7")),
            am.AMSimpleRNN(2, go_backwards=True, multiplier="mbm7"),
        ]
    )
    x = np.random.default_rng(8).standard_normal((B, T, D)).astype(np.float32)
    path = str(tmp_path / "rnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert_bits_equal(loaded(x).numpy(), model(x).numpy(), "loaded model")
    lstm = loaded.layers[0]
    assert type(lstm) is am.AMLSTM and type(lstm.cell) is am.AMLSTM.cell_class
    assert (lstm.multiplier, lstm.grad_input_multiplier, lstm.grad_weight_multiplier) == ("bf16", None, "fp32")
    assert type(loaded.layers[1].backward_layer) is am.AMGRU
