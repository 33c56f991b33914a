"""calibration="moving_average" in AMMultiHeadAttention and the recurrent layers: which range each
product is quantized with, how the state moves over training batches (against NumPy), inference,
graph mode, .keras files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import approxtrain.ops
from approxtrain import layers
from approxtrain.layers.recurrent import AMLSTMCell
from approxtrain.quant import QuantConfig

pytestmark = pytest.mark.tf
F = np.float32
M = F(0.75)
MOVING = QuantConfig(calibration="moving_average", momentum=0.75)
ATTENTION_NAMES = ("query_projection", "key_projection", "value_projection", "score_query", "context_probabilities")
# The ranges of the attention products' right operands, by the product (named by its left operand's range).
RIGHT_NAMES = {"score_query": "score_key", "context_probabilities": "context_values"}


@pytest.fixture(autouse=True)
def tmp_store(monkeypatch, tmp_path):
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path))


class _Calls(list):
    """The left operands and their ranges; `.right`: the right operands and theirs, call by call."""

    def clear(self):
        super().clear()
        self.right.clear()


@pytest.fixture
def products(monkeypatch):
    """Every approxtrain.ops.matmul call (the layers' products): (a, input_range) as NumPy."""
    calls = _Calls()
    real = approxtrain.ops.matmul

    def spy(a, b, *args, input_range=None, weight_range=None, **kwargs):
        calls.append((np.asarray(a), None if input_range is None else tuple(float(v) for v in input_range)))
        right_operands.append((np.asarray(b), None if weight_range is None else tuple(float(v) for v in weight_range)))
        return real(a, b, *args, input_range=input_range, weight_range=weight_range, **kwargs)

    right_operands = []
    calls.right = right_operands

    monkeypatch.setattr(approxtrain.ops, "matmul", spy)
    return calls


def state(layer, name):
    (variable,) = [v for v in layer.non_trainable_weights if v.name == f"{name}_range"]
    return variable.numpy()


def moved(previous, operands):
    """The NumPy moving-average rule: momentum * range + (1 - momentum) * this batch's min/max."""
    lo, hi = min(o.min() for o in operands), max(o.max() for o in operands)
    return np.array([M * previous[0] + (F(1) - M) * lo, M * previous[1] + (F(1) - M) * hi, 1], F)


def first(operands):
    return np.array([min(o.min() for o in operands), max(o.max() for o in operands), 1], F)


# --- attention ---------------------------------------------------------------------------------


def attention_calls(calls, use_gate=False):
    """Keras's order of the products in one call: [gate,] query, key, value, scores, context, output."""
    names = (("gate_projection",) if use_gate else ()) + ATTENTION_NAMES + ("output_projection",)
    assert len(calls) == len(names)
    return dict(zip(names, calls))


@pytest.mark.parametrize("multiplier, use_gate", [("mul8s_exact", False), ("mul8u_trunc4", True)])
def test_attention_ranges_move_per_training_batch(products, multiplier, use_gate):
    rng = np.random.default_rng(1)
    batches = [(rng.normal(0, s, size=(2, 5, 8)).astype(F), rng.normal(1, s, size=(2, 3, 6)).astype(F)) for s in (1, 3)]
    layer = layers.AMMultiHeadAttention(2, 4, multiplier=multiplier, quantization=MOVING, use_gate=use_gate)
    names = [*attention_calls([None] * (7 if use_gate else 6), use_gate), *RIGHT_NAMES.values()]
    assert sorted(v.name for v in layer.non_trainable_weights) == sorted(f"{n}_range" for n in names)

    expected = {}
    for step, (query, value) in enumerate(batches):
        products.clear()
        layer(query, value, training=True)
        for name, (a, used) in attention_calls(products, use_gate).items():
            expected[name] = first([a]) if step == 0 else moved(expected[name], [a])
            np.testing.assert_array_equal(state(layer, name), expected[name], err_msg=name)
            # the product was quantized with the moved range
            np.testing.assert_array_equal(used, expected[name][:2], err_msg=name)
        right = attention_calls(products.right, use_gate)
        for product, name in RIGHT_NAMES.items():  # the keys and values of the attention products
            b, used = right[product]
            expected[name] = first([b]) if step == 0 else moved(expected[name], [b])
            np.testing.assert_array_equal(state(layer, name), expected[name], err_msg=name)
            np.testing.assert_array_equal(used, expected[name][:2], err_msg=name)
        assert all(right[n][1] is None for n in right if n not in RIGHT_NAMES)  # projections: weights
        calls = attention_calls(products, use_gate)
        for name in ("query_projection", "gate_projection"):
            if name in calls:
                np.testing.assert_array_equal(calls[name][0], query.reshape(-1, 8))
        for name in ("key_projection", "value_projection"):
            np.testing.assert_array_equal(calls[name][0], value.reshape(-1, 6))

    products.clear()
    layer(batches[0][0], batches[0][1], training=False)
    for name, (_, used) in attention_calls(products, use_gate).items():
        np.testing.assert_array_equal(state(layer, name), expected[name], err_msg=name)
        np.testing.assert_array_equal(used, expected[name][:2], err_msg=name)
    right = attention_calls(products.right, use_gate)
    for product, name in RIGHT_NAMES.items():
        np.testing.assert_array_equal(state(layer, name), expected[name], err_msg=name)
        np.testing.assert_array_equal(right[product][1], expected[name][:2], err_msg=name)


def test_attention_inference_before_training_uses_each_batch_range(products):
    x = np.random.default_rng(2).normal(size=(2, 4, 8)).astype(F)
    layer = layers.AMMultiHeadAttention(2, 4, multiplier="mul8s_exact", quantization=MOVING)
    layer(x, x, training=False)
    for name, (a, used) in attention_calls(products).items():
        assert used == (a.min(), a.max()), name
        np.testing.assert_array_equal(state(layer, name), [0, 0, 0])


# --- recurrent ---------------------------------------------------------------------------------


def loop_calls(calls, per_step):
    """The per-step products of one call: Keras's backend loop first runs the step once on the
    first time step to learn the output's shape (its results unused), then every step."""
    probe, steps = calls[:per_step], calls[per_step:]
    for (a, _), (b, _) in zip(probe, steps):
        np.testing.assert_array_equal(a, b)
    return steps


def recurrent_operands(outputs):
    """h_{t-1} of every step, from the layer's outputs h_1..h_T and the zero initial state."""
    return [np.zeros_like(outputs[:, 0]), outputs[:, :-1]]


@pytest.mark.parametrize("cls", [layers.AMSimpleRNN, layers.AMLSTM, layers.AMGRU])
def test_recurrent_ranges_move_once_per_training_batch(products, cls):
    rng = np.random.default_rng(3)
    batches = [rng.normal(0, 1, size=(3, 5, 4)).astype(F), rng.normal(1, 3, size=(3, 5, 4)).astype(F)]
    layer = cls(6, multiplier="mul8s_exact", quantization=MOVING, return_sequences=True)
    expected = {}
    for step, x in enumerate(batches):
        stored = state(layer, "recurrent")
        products.clear()
        y = layer(x, training=True).numpy()
        (x_used, input_used), steps = products[0], loop_calls(products[1:], 1)
        np.testing.assert_array_equal(x_used, x.reshape(-1, 4))
        assert len(steps) == 5
        for name, operands in (("inputs", [x]), ("recurrent", recurrent_operands(y))):
            expected[name] = first(operands) if step == 0 else moved(expected[name], operands)
            np.testing.assert_array_equal(state(layer, name), expected[name], err_msg=name)
        np.testing.assert_array_equal(input_used, expected["inputs"][:2])
        # every step used the range stored before the batch (its own min/max in the first batch)
        for a, used in steps:
            assert used == ((a.min(), a.max()) if step == 0 else tuple(stored[:2]))

    products.clear()
    layer(batches[0], training=False)
    assert products[0][1] == tuple(expected["inputs"][:2])
    assert len(products) == 7 and all(used == tuple(expected["recurrent"][:2]) for _, used in products[1:])
    for name in expected:
        np.testing.assert_array_equal(state(layer, name), expected[name])


def test_gru_reset_before_has_a_range_for_the_reset_product(products):
    x = np.random.default_rng(4).normal(size=(2, 4, 3)).astype(F)
    layer = layers.AMGRU(5, multiplier="mul8u_exact", quantization=MOVING, reset_after=False)
    layer(x, training=True)
    # per step: h . U[:, :2u] (recurrent), then (r * h) . U[:, 2u:] (reset_recurrent)
    steps = loop_calls(products[1:], 2)
    assert len(steps) == 8
    np.testing.assert_array_equal(state(layer, "recurrent"), first([a for a, _ in steps[0::2]]))
    np.testing.assert_array_equal(state(layer, "reset_recurrent"), first([a for a, _ in steps[1::2]]))


def test_masked_steps_are_left_out_of_the_recurrent_range():
    x = np.random.default_rng(5).normal(size=(3, 6, 4)).astype(F)
    lengths = np.array([6, 3, 1])
    mask = np.arange(6)[None, :] < lengths[:, None]
    layer = layers.AMSimpleRNN(5, multiplier="mul8s_exact", quantization=MOVING, return_sequences=True)
    y = layer(x, mask=mask, training=True).numpy()
    h_previous = np.concatenate([np.zeros_like(y[:, :1]), y[:, :-1]], axis=1)  # h_{t-1} of each step
    np.testing.assert_array_equal(state(layer, "recurrent"), first([h_previous[mask]]))


def test_a_batch_with_no_kept_step_leaves_the_recurrent_range():
    x = np.random.default_rng(11).normal(size=(2, 3, 4)).astype(F)
    layer = layers.AMSimpleRNN(5, multiplier="mul8s_exact", quantization=MOVING)
    layer(x, mask=np.zeros((2, 3), bool), training=True)
    np.testing.assert_array_equal(state(layer, "recurrent"), [0, 0, 0])
    layer(x, training=True)
    trained = state(layer, "recurrent")
    assert trained[2] == 1
    layer(x * 5, mask=np.zeros((2, 3), bool), training=True)
    np.testing.assert_array_equal(state(layer, "recurrent"), trained)
    np.testing.assert_array_equal(state(layer, "inputs"), moved(first([x]), [x * 5]))  # inputs still move


def test_recurrent_graph_mode_moves_state_once_per_batch():
    """In a tf.function (the time loop a tf.while_loop) the state ends as in eager mode."""
    rng = np.random.default_rng(6)
    batches = [rng.normal(0, s, size=(2, 7, 3)).astype(F) for s in (1, 2)]
    eager = layers.AMLSTM(4, multiplier="mul8s_exact", quantization=MOVING, recurrent_dropout=0.0)
    graph = layers.AMLSTM.from_config(eager.get_config())
    eager.build((None, 7, 3))
    graph.build((None, 7, 3))
    graph.set_weights(eager.get_weights())
    traced = tf.function(lambda t: graph(t, training=True))
    for x in batches:
        eager(x, training=True)
        traced(tf.constant(x))
        for name in ("inputs", "recurrent"):
            np.testing.assert_array_equal(state(graph, name), state(eager, name), err_msg=name)


def test_approx_dropout_lstm_moves_ranges():
    x = np.random.default_rng(7).normal(size=(2, 4, 3)).astype(F)
    dropout = layers.ApproxRandomDropout(0.5, pattern="row")
    layer = layers.AMLSTM(
        6, multiplier="mul8s_exact", quantization=MOVING, approx_dropout=dropout, return_sequences=True
    )
    y = layer(x, training=True).numpy()
    np.testing.assert_array_equal(state(layer, "inputs"), first([x]))
    kept = np.flatnonzero(np.abs(y).sum(axis=(0, 1)) > 0)
    scale = F(6) / F(len(kept))  # kept outputs are scaled by units / |K|; the loop multiplied the unscaled h
    np.testing.assert_array_equal(state(layer, "recurrent"), first(recurrent_operands(y[..., kept] / scale)))


def test_cell_called_step_by_step_refuses_moving_average():
    cell = AMLSTMCell(3, multiplier="mul8s_exact", quantization=MOVING, name="cell")
    with pytest.raises(ValueError, match="AMLSTMCell 'cell': calibration='moving_average' is not supported for a cell"):
        keras.layers.RNN(cell)(np.ones((1, 2, 2), F))


# --- training and files ------------------------------------------------------------------------


def sequence_model():
    inputs = keras.Input((5, 4))
    h = layers.AMLSTM(8, multiplier="mul8s_exact", quantization=MOVING, return_sequences=True)(inputs)
    h = layers.AMMultiHeadAttention(2, 4, multiplier="mul8s_exact", quantization=MOVING, use_gate=True)(h, h)
    h = layers.AMGRU(3, multiplier="mul8s_exact", quantization=MOVING, reset_after=False)(h)
    return keras.Model(inputs, h)


def ranges(model):
    return {v.path: v.numpy() for v in model.non_trainable_weights if v.name.endswith("_range")}


def test_training_step_is_finite_and_keras_file_keeps_the_ranges(tmp_path):
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(8, 5, 4)).astype(F), rng.normal(size=(8, 3)).astype(F)
    model = sequence_model()
    model.compile("sgd", "mse")
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    saved = ranges(model)
    assert len(saved) == 2 + 9 + 3  # LSTM: inputs, recurrent; attention: 9; GRU: + reset_recurrent
    assert all(r[2] == 1 and r[0] < r[1] for r in saved.values())
    model.predict(x, verbose=0)
    for path, value in ranges(model).items():
        np.testing.assert_array_equal(value, saved[path], err_msg=path)

    model.save(tmp_path / "moving.keras")
    loaded = keras.models.load_model(tmp_path / "moving.keras")
    assert ranges(loaded).keys() == saved.keys()
    for path, value in ranges(loaded).items():
        np.testing.assert_array_equal(value, saved[path], err_msg=path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model(x, training=False).numpy(), loaded(x, training=False).numpy())


@pytest.mark.parametrize(
    "make",
    [
        lambda: layers.AMDepthwiseConv2D(3, multiplier="mul8s_exact", quantization=MOVING),
        lambda: layers.AMSeparableConv2D(2, 3, multiplier="mul8s_exact", quantization=MOVING),
        lambda: layers.AMConv2DTranspose(2, 3, multiplier="mul8s_exact", quantization=MOVING),
    ],
)
def test_layers_saving_every_variable_keep_their_ranges_once(tmp_path, make):
    """Twins saving with keras.Layer's save_own_variables (every variable, the ranges among them)
    write each range once and load it back."""
    x = np.random.default_rng(9).normal(size=(2, 5, 5, 2)).astype(F)
    model = keras.Sequential([keras.Input((5, 5, 2)), make()])
    model(x, training=True)
    saved = ranges(model)
    assert all(r[2] == 1 for r in saved.values()) and len(saved) == len(model.layers[0].quantized_inputs)
    np.testing.assert_array_equal(state(model.layers[0], "inputs"), first([x]))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    for path, value in ranges(loaded).items():
        np.testing.assert_array_equal(value, saved[path], err_msg=path)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())


def test_mirrored_training_averages_the_replicas_ranges():
    """Under MirroredStrategy (two logical CPUs, tests/tf/conftest.py) each replica moves the
    state by its share of the batch and the states are averaged (the weights' aggregation)."""
    from approxtrain.train.strategy import mirrored_strategy

    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(cpus) == 2, f"tests/tf/conftest.py should configure two logical CPUs, found {cpus}"
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(8, 5, 4)).astype(F), rng.normal(size=(8, 3)).astype(F)
    with mirrored_strategy(cpus).scope():
        model = sequence_model()
        model.compile("sgd", "mse")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    saved = ranges(model)
    assert len(saved) == 14 and all(np.isfinite(r).all() and r[2] == 1 for r in saved.values())
    halves = [first([x[:4]]), first([x[4:]])]
    lstm_inputs = next(v for path, v in saved.items() if "lstm" in path and path.endswith("inputs_range"))
    np.testing.assert_array_equal(lstm_inputs, (halves[0] + halves[1]) / F(2))
