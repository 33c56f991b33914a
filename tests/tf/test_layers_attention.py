"""AMMultiHeadAttention: six AM products, Keras twin equality, config, saving, training."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from _compare import BF16  # noqa: E402


def assert_close(actual, expected, rel, scale=None):
    """max |actual - expected| <= rel * scale (default: max |expected|)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected))
    scale = np.max(np.abs(expected)) if scale is None else scale
    assert err <= rel * scale, f"max error {err} vs scale {scale}"


def twin_pair(multiplier, query_shape=(2, 5, 6), value_shape=(2, 7, 4), **kwargs):
    """AMMultiHeadAttention and keras.layers.MultiHeadAttention with the same weights, plus inputs."""
    rng = np.random.default_rng(0)
    query = rng.standard_normal(query_shape).astype(np.float32)
    value = rng.standard_normal(value_shape).astype(np.float32)
    twin = keras.layers.MultiHeadAttention(**kwargs)
    twin(query, value)
    twin.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in twin.get_weights()])
    layer = am.AMMultiHeadAttention(**kwargs, multiplier=multiplier)
    layer(query, value)
    layer.set_weights(twin.get_weights())
    return layer, twin, query, value


def bf16_reference(twin, query, value):
    """The twin's computation with every operand of its six GEMMs rounded to bf16 (rank-3 inputs,
    default attention axis): what the bf16 table computes, up to summation order."""
    r = lambda t: tf.cast(tf.cast(t, tf.bfloat16), tf.float32)  # noqa: E731  (round to nearest even)
    q = tf.einsum("btd,dnh->btnh", r(query), r(twin.query_dense.kernel)) + twin.query_dense.bias
    k = tf.einsum("bsd,dnh->bsnh", r(value), r(twin.key_dense.kernel)) + twin.key_dense.bias
    v = tf.einsum("bsd,dnh->bsnh", r(value), r(twin.value_dense.kernel)) + twin.value_dense.bias
    q = q * (1.0 / np.sqrt(float(twin.key_dim)))
    scores = tf.nn.softmax(tf.einsum("btnh,bsnh->bnts", r(q), r(k)), axis=-1)
    context = tf.einsum("bnts,bsnh->btnh", r(scores), r(v))
    out = twin.output_dense
    return tf.einsum("btnh,nho->bto", r(context), r(out.kernel)) + out.bias, scores


def test_bf16_rounds_the_operands_of_all_six_products():
    layer, twin, query, value = twin_pair(BF16, num_heads=2, key_dim=3)
    got, got_scores = layer(query, value, return_attention_scores=True)
    want, want_scores = bf16_reference(twin, query, value)
    assert_close(got_scores.numpy(), want_scores.numpy(), rel=1e-5)
    assert_close(got.numpy(), want.numpy(), rel=1e-5)
    # ... and the native computation is measurably different: the tables are really used.
    assert np.max(np.abs(got.numpy() - twin(query, value).numpy())) > 1e-4


@pytest.mark.parametrize(
    "kwargs, query_shape, value_shape",
    [
        (dict(num_heads=2, key_dim=3), (2, 5, 6), (2, 7, 4)),
        (dict(num_heads=3, key_dim=2, value_dim=4, output_shape=5, use_bias=False), (2, 4, 6), (2, 3, 6)),
        (dict(num_heads=2, key_dim=2, attention_axes=(1, 2)), (2, 3, 4, 5), (2, 2, 3, 5)),
        (dict(num_heads=2, key_dim=2, use_gate=True), (2, 4, 6), (2, 3, 6)),
    ],
)
def test_fp32_equals_keras_twin_output_and_gradients(kwargs, query_shape, value_shape):
    layer, twin, query, value = twin_pair("fp32", query_shape, value_shape, **kwargs)

    def run(mha):
        q, v = tf.constant(query), tf.constant(value)
        with tf.GradientTape() as tape:
            tape.watch([q, v])
            y, scores = mha(q, v, return_attention_scores=True)
            loss = tf.reduce_sum(y * y)
        return [y, scores] + tape.gradient(loss, [q, v] + mha.trainable_weights)

    got, want = run(layer), run(twin)
    assert len(got) == len(want) == 4 + len(twin.trainable_weights)
    for g, w in zip(got[:2], want[:2]):
        assert_close(g.numpy(), w.numpy(), rel=1e-5)
    # The key bias gradient is zero in exact arithmetic (softmax ignores a per-query shift), so
    # its computed value is rounding noise: gradients are compared on their common scale.
    grad_scale = max(np.max(np.abs(w.numpy())) for w in want[2:])
    for g, w in zip(got[2:], want[2:]):
        assert_close(g.numpy(), w.numpy(), rel=1e-5, scale=grad_scale)


def test_masks_and_causal_mask_follow_keras():
    layer, twin, query, _ = twin_pair("fp32", (2, 5, 6), (2, 5, 6), num_heads=2, key_dim=3)
    mask = np.tril(np.ones((2, 5, 5), bool))
    mask[1, :, 3:] = False
    for kwargs in (dict(attention_mask=mask), dict(use_causal_mask=True)):
        assert_close(layer(query, query, **kwargs).numpy(), twin(query, query, **kwargs).numpy(), rel=1e-5)


def test_dropout_only_in_training():
    layer, twin, query, value = twin_pair(BF16, num_heads=2, key_dim=3, dropout=0.5, seed=3)
    reference, _ = bf16_reference(twin, query, value)
    assert_close(layer(query, value, training=False).numpy(), reference.numpy(), rel=1e-5)
    dropped = layer(query, value, training=True).numpy()
    assert np.isfinite(dropped).all() and np.max(np.abs(dropped - reference.numpy())) > 1e-3


def test_bf16_gradients_reach_every_weight_and_stay_close_to_fp32():
    layer, twin, query, value = twin_pair(BF16, num_heads=2, key_dim=3)
    grads = []
    for mha in (layer, twin):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(mha(query, value) ** 2)
        grads.append(tape.gradient(loss, mha.trainable_weights))
    assert len(grads[0]) == 8  # q, k, v, output: kernel and bias each
    grad_scale = max(np.max(np.abs(w.numpy())) for w in grads[1])
    for g, w in zip(*grads):
        assert np.isfinite(g.numpy()).all()
        # bf16 operand rounding (relative 2^-9 per operand) through softmax: a loose bound
        assert_close(g.numpy(), w.numpy(), rel=3e-2, scale=grad_scale)


def test_projections_are_am_and_weights_are_keras():
    layer, twin, _, _ = twin_pair(BF16, num_heads=2, key_dim=3)
    assert [w.path for w in layer.weights] == [w.path.replace(twin.name, layer.name) for w in twin.weights]
    assert all(
        type(p).__name__ == "_AMProjection"
        for p in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
    )
    assert not layer.supports_jit


def test_config_save_load_and_fit(tmp_path, registered_bf16):
    query = keras.Input((5, 6))
    y = am.AMMultiHeadAttention(2, 3, multiplier="bf16", grad_input_multiplier="fp32")(query, query)
    outputs = am.AMDense(1, multiplier="bf16")(keras.layers.Flatten()(y))
    model = keras.Model(query, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    history = model.fit(x, np.zeros((4, 1)), batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    path = str(tmp_path / "mha.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    mha = loaded.layers[1]
    assert type(mha) is am.AMMultiHeadAttention
    assert (mha.multiplier, mha.grad_input_multiplier, mha.grad_weight_multiplier) == ("bf16", "fp32", None)
    config = mha.get_config()
    assert am.AMMultiHeadAttention.from_config(config).get_config() == config


def test_tf_function_with_unknown_batch_and_lengths_equals_eager():
    layer, _, query, value = twin_pair(BF16, num_heads=2, key_dim=3)
    spec = lambda d: tf.TensorSpec([None, None, d], tf.float32)  # noqa: E731
    graph = tf.function(lambda q, v: layer(q, v), input_signature=[spec(6), spec(4)])
    np.testing.assert_array_equal(graph(query, value).numpy(), layer(query, value).numpy())
    shorter = graph(query[:1, :3], value[:1, :2]).numpy()  # the same trace, other shapes
    np.testing.assert_array_equal(shorter, layer(query[:1, :3], value[:1, :2]).numpy())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    layer, twin, query, value = twin_pair(BF16, num_heads=2, key_dim=3, dtype=policy)
    y = layer(query, value)
    assert y.dtype == twin.compute_dtype != "float32"
    assert all(w.dtype == "float32" for w in layer.weights)
    assert_close(y.numpy().astype(np.float32), twin(query, value).numpy().astype(np.float32), rel=3e-2)


def test_flash_attention_is_rejected():
    with pytest.raises(ValueError, match="flash_attention"):
        am.AMMultiHeadAttention(2, 3, flash_attention=True, multiplier=BF16)
