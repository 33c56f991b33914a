"""AM layers with integer multipliers: forward against NumPy, calibration state, configs, .keras files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import _int_reference as ref
import approxtrain.multipliers as registry
from approxtrain import layers, ops
from approxtrain.quant import QuantConfig, _gemm

pytestmark = pytest.mark.tf
F = np.float32
TEST_MULTIPLIERS = {
    m.name: m
    for m in (
        ref.exact_multiplier(True),
        ref.exact_multiplier(False),
        ref.random_multiplier(True, seed=21),
        ref.random_multiplier(False, seed=22),
    )
}


@pytest.fixture(autouse=True)
def int_setup(monkeypatch, tmp_path):
    """The table GEMM (C1's op or the TF reference) and the test tables resolvable by name, as
    registered integer multipliers are (a config stores the name)."""
    if not ref.have_int_matmul_op():
        monkeypatch.setattr(_gemm, "patterns_matmul", ref.reference_patterns_matmul)
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path))
    real = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda v: TEST_MULTIPLIERS[v] if v in TEST_MULTIPLIERS else real(v))


def range_state(layer, name="inputs"):
    (state,) = [v for v in layer.non_trainable_weights if v.name == f"{name}_range"]
    return state


def test_dense_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 6)).astype(F)
    layer = layers.AMDense(5, multiplier="t8u_rand22", quantization=QuantConfig(granularity="per_channel"))
    y = layer(x).numpy()
    kernel, bias = (v.numpy() for v in layer.weights)
    expected, _ = ref.quantized_matmul(x.reshape(-1, 6), kernel, TEST_MULTIPLIERS["t8u_rand22"], per_channel=True)
    np.testing.assert_array_equal(y, (expected + bias).reshape(3, 4, 5))


def test_conv2d_and_separable_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 6, 3)).astype(F)
    m = TEST_MULTIPLIERS["t8s_rand21"]
    conv = layers.AMConv2D(4, 3, strides=2, padding="same", multiplier=m.name, use_bias=False)
    y = conv(x).numpy()
    expected, _ = ref.reference_conv(x, conv.kernel.numpy(), m, strides=(2, 2), pads=(0, 1, 0, 1))
    np.testing.assert_array_equal(y, expected)
    sep = layers.AMSeparableConv2D(5, 3, multiplier=m.name, use_bias=False)
    y = sep(x).numpy()
    depthwise, pointwise = sep.depthwise_kernel.numpy(), sep.pointwise_kernel.numpy()
    middle, _ = ref.reference_conv(x, depthwise.reshape(3, 3, 1, 3), m)
    expected, _ = ref.reference_conv(middle, pointwise, m)
    np.testing.assert_array_equal(y, expected)


def test_moving_average_updates_in_training_only():
    rng = np.random.default_rng(3)
    first, second = rng.normal(0, 1, size=(8, 6)).astype(F), rng.normal(1, 3, size=(8, 6)).astype(F)
    cfg = QuantConfig(calibration="moving_average", momentum=0.75)
    layer = layers.AMDense(4, multiplier="t8s_exact", quantization=cfg, use_bias=False)
    layer.build((None, 6))
    state = range_state(layer)
    assert state.name == "inputs_range" and not state.trainable
    np.testing.assert_array_equal(state.numpy(), [0, 0, 0])
    # inference before any training: this batch's own range, and no update
    np.testing.assert_array_equal(layer(first, training=False).numpy(), ops.matmul(first, layer.kernel, "t8s_exact"))
    np.testing.assert_array_equal(state.numpy(), [0, 0, 0])
    layer(first, training=True)
    np.testing.assert_array_equal(state.numpy(), [first.min(), first.max(), 1])
    y = layer(second, training=True).numpy()
    lo = F(0.75) * first.min() + F(0.25) * second.min()
    hi = F(0.75) * first.max() + F(0.25) * second.max()
    np.testing.assert_allclose(state.numpy(), [lo, hi, 1], rtol=1e-6)
    lo, hi = state.numpy()[:2]
    np.testing.assert_array_equal(y, ops.matmul(second, layer.kernel, "t8s_exact", input_range=(lo, hi)).numpy())
    y = layer(first, training=False).numpy()
    np.testing.assert_array_equal(state.numpy()[:2], [lo, hi])
    np.testing.assert_array_equal(y, ops.matmul(first, layer.kernel, "t8s_exact", input_range=(lo, hi)).numpy())


@pytest.mark.parametrize("integer_backward", [False, True])
def test_moving_average_state_updates_in_fit(integer_backward):
    cfg = QuantConfig(calibration="moving_average", integer_backward=integer_backward)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            layers.AMConv2D(2, 3, multiplier="t8u_exact", quantization=cfg, activation="relu"),
            keras.layers.Flatten(),
            layers.AMDense(3, multiplier="t8u_exact", quantization=cfg),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(16, 6, 6, 1)).astype(F), rng.integers(0, 3, size=16)
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert range_state(model.layers[0]).numpy()[2] == 1 and range_state(model.layers[-1]).numpy()[2] == 1
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    state = range_state(model.layers[0]).numpy().copy()
    model.predict(x, verbose=0)
    np.testing.assert_array_equal(range_state(model.layers[0]).numpy(), state)


def test_attention_and_lstm_run_with_gradients():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 8)).astype(F)
    for layer, call in (
        (layers.AMMultiHeadAttention(2, 4, multiplier="t8s_exact"), lambda layer, t: layer(t, t)),
        (layers.AMLSTM(6, multiplier="t8s_exact", quantization=QuantConfig(integer_backward=True)), lambda l, t: l(t)),
    ):
        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = call(layer, t)
            loss = tf.reduce_sum(out**2)
        grads = tape.gradient(loss, [t] + layer.trainable_variables)
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
        assert np.abs(grads[0].numpy()).max() > 0


def test_config_round_trip_and_keras_file(tmp_path):
    cfg = QuantConfig(granularity="per_channel", calibration="moving_average", momentum=0.9, integer_backward=True)
    model = keras.Sequential(
        [
            keras.Input((5, 5, 2)),
            layers.AMConv2D(3, 3, multiplier="t8s_rand21", quantization=cfg),
            keras.layers.Flatten(),
            layers.AMDense(4, multiplier="t8s_rand21", grad_input_multiplier="fp32", quantization=cfg),
        ]
    )
    x = np.random.default_rng(6).normal(size=(4, 5, 5, 2)).astype(F)
    model(x, training=True)  # moves the ranges away from their initial zeros
    config = model.layers[2].get_config()
    assert config["multiplier"] == "t8s_rand21" and config["quantization"] == cfg.get_config()
    clone = layers.AMDense.from_config(config)
    assert clone.quantization == cfg and clone.multiplier == "t8s_rand21"
    path = tmp_path / "int.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[0].quantization == cfg
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model(x, training=False).numpy(), loaded(x, training=False).numpy())


def test_float_layers_keep_their_config():
    assert "quantization" not in layers.AMDense(3, multiplier="mbm7").get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(granularity="per_row"), "granularity must be one of .* got 'per_row'"),
        (dict(calibration="ema"), "calibration must be one of .* got 'ema'"),
        (dict(percentile=40), r"percentile must be in \(50, 100\], got 40"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(integer_backward="yes"), "integer_backward must be True or False, got 'yes'"),
    ],
)
def test_bad_quant_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        layers.AMDense(3, multiplier="t8s_exact", quantization=kwargs)


def test_unsupported_layers_and_modes_are_refused():
    with pytest.raises(ValueError, match="quantization: unknown QuantConfig field"):
        layers.AMDense(3, multiplier="t8s_exact", quantization={"bits": 4})
    with pytest.raises(ValueError, match="stateless op takes calibration='minmax' or 'percentile'"):
        ops.matmul(
            np.ones((2, 2), F), np.ones((2, 2), F), "t8s_exact", quantization=QuantConfig(calibration="moving_average")
        )


def test_substitute_and_zoo_take_shipped_integer_multipliers_by_name():
    """substitute / models.build with "mul8s_exact": every AM layer gets it; the model's output is
    the composition of the integer ops on the original weights."""
    import approxtrain as at

    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(4, name="dense")(h)
    model = keras.Model(inputs, outputs)
    am = at.substitute(model, multiplier="mul8s_exact")
    assert [type(layer).__name__ for layer in am.layers[1:]] == ["AMConv2D", "Flatten", "AMDense"]
    assert all(layer.multiplier == "mul8s_exact" for layer in (am.get_layer("conv"), am.get_layer("dense")))
    x = np.random.default_rng(7).normal(size=(2, 8, 8, 2)).astype(F)
    conv, dense = model.get_layer("conv"), model.get_layer("dense")
    h = tf.nn.relu(ops.conv2d(x, conv.kernel, "mul8s_exact", padding="SAME") + conv.bias)
    expected = ops.matmul(tf.reshape(h, [2, -1]), dense.kernel, "mul8s_exact") + dense.bias
    np.testing.assert_array_equal(am(x).numpy(), expected.numpy())
    zoo = at.models.build("lenet5", (28, 28, 1), 10, multiplier="mul8u_trunc4")
    integer_layers = [layer for layer in zoo.layers if getattr(layer, "multiplier", None) == "mul8u_trunc4"]
    assert len(integer_layers) >= 4
