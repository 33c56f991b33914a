"""AM Keras layers: equality with their Keras twins, exactness, training, config, saving, errors."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
import amsim_reference as ref  # noqa: E402
from _compare import BF16, random_table  # noqa: E402


def bf16_values(rng, shape, scale=1.0):
    """Random float32 values that are exactly representable in bfloat16 (low 16 bits zero)."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def small_ints(rng, shape, bound):
    """Integers in [-bound, bound] as float32: every sum and product of the separable test stays exact."""
    return rng.integers(-bound, bound + 1, shape).astype(np.float32)


def assert_close(actual, expected, rel):
    """max |actual - expected| <= rel * max |expected| (a norm-wise bound, robust to cancellation)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected))
    assert err <= rel * np.max(np.abs(expected)), f"max error {err} vs scale {np.max(np.abs(expected))}"


# (AM class, Keras twin, constructor kwargs, input shape, data maker(rng, shape, bf16)).
# Separable uses small integers: its depthwise result feeds the pointwise product and would
# otherwise not be a bf16 value.
CASES = {
    "dense_rank2": (am.AMDense, keras.layers.Dense, dict(units=5), (4, 6)),
    "dense_rank4": (am.AMDense, keras.layers.Dense, dict(units=3), (2, 3, 2, 5)),
    "conv1d_causal": (
        am.AMConv1D,
        keras.layers.Conv1D,
        dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2),
        (2, 9, 3),
    ),
    "conv1d_strided_groups": (
        am.AMConv1D,
        keras.layers.Conv1D,
        dict(filters=4, kernel_size=3, strides=2, groups=2, padding="same"),
        (2, 9, 4),
    ),
    "conv2d_same": (am.AMConv2D, keras.layers.Conv2D, dict(filters=4, kernel_size=3, padding="same"), (2, 6, 7, 3)),
    "conv2d_strided": (
        am.AMConv2D,
        keras.layers.Conv2D,
        dict(filters=6, kernel_size=(3, 2), strides=(2, 1), groups=3),
        (2, 7, 6, 3),
    ),
    "conv2d_dilated": (
        am.AMConv2D,
        keras.layers.Conv2D,
        dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"),
        (1, 7, 7, 2),
    ),
    "depthwise": (
        am.AMDepthwiseConv2D,
        keras.layers.DepthwiseConv2D,
        dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same"),
        (2, 7, 6, 3),
    ),
    "separable": (
        am.AMSeparableConv2D,
        keras.layers.SeparableConv2D,
        dict(filters=4, kernel_size=3, padding="same"),
        (2, 5, 6, 3),
    ),
}


def twin_pair(case, multiplier, seed=0, **extra):
    """An AM layer and its Keras twin, built, with the same (bf16 or small-integer) weights."""
    am_cls, keras_cls, kwargs, shape = CASES[case]
    rng = np.random.default_rng(seed)
    keras_layer = keras_cls(**kwargs, **extra)
    keras_layer.build(shape)
    make = (lambda s: small_ints(rng, s, 1)) if case == "separable" else (lambda s: bf16_values(rng, s))
    keras_layer.set_weights([make(w.shape) for w in keras_layer.get_weights()])
    am_layer = am_cls(**kwargs, **extra, multiplier=multiplier)
    am_layer.build(shape)
    am_layer.set_weights(keras_layer.get_weights())
    x = small_ints(rng, shape, 2) if case == "separable" else bf16_values(rng, shape)
    return am_layer, keras_layer, x


def output_and_grads(layer, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)  # d loss / d y = upstream, a bf16 value
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_layer_matches_keras_twin_output_and_gradients(case):
    am_layer, keras_layer, x = twin_pair(case, BF16)
    y_shape = keras_layer.compute_output_shape(x.shape)
    rng = np.random.default_rng(1)
    upstream = small_ints(rng, y_shape, 2) if case == "separable" else bf16_values(rng, y_shape)
    got = output_and_grads(am_layer, x, upstream)
    want = output_and_grads(keras_layer, x, upstream)
    assert len(got) == len(want) == 2 + len(keras_layer.trainable_weights)
    for g, w in zip(got, want):
        assert_close(g, w, rel=2e-5)


def test_bf16_differs_from_fp32_on_unrounded_inputs():
    """The comparison above would pass with a native op too; this shows the table is in the path."""
    am_layer, keras_layer, _ = twin_pair("conv2d_same", BF16)
    x = np.random.default_rng(2).standard_normal((2, 6, 7, 3)).astype(np.float32)  # not bf16 values
    assert np.max(np.abs(am_layer(x).numpy() - keras_layer(x).numpy())) > 1e-4


@pytest.mark.parametrize("case", ["dense_rank2", "conv2d_same", "depthwise", "conv1d_causal"])
def test_fp32_multiplier_equals_keras_twin(case):
    am_layer, keras_layer, x = twin_pair(case, "fp32", activation="relu")
    assert_close(am_layer(x).numpy(), keras_layer(x).numpy(), rel=1e-6)


def test_dense_bit_exact_against_reference_with_three_tables():
    """Output and both gradients, bit for bit, each from its own table: the layer routes
    multiplier / grad_input_multiplier / grad_weight_multiplier to the right products."""
    fwd, gin, gw = random_table(1), random_table(2), random_table(3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)  # rank 3: the layer flattens leading axes
    layer = am.AMDense(4, multiplier=fwd, grad_input_multiplier=gin, grad_weight_multiplier=gw)
    layer.build(x.shape)
    kernel = rng.standard_normal((5, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    layer.set_weights([kernel, bias])
    dy = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y, dx, dkernel, dbias = output_and_grads(layer, x, dy)

    x2, dy2 = x.reshape(6, 5), dy.reshape(6, 4)
    want_y = ref.matmul(x2, kernel, *fwd.core_args) + bias
    want_dx = ref.matmul(dy2, kernel.T, *gin.core_args)
    want_dk = ref.matmul(x2.T, dy2, *gw.core_args)
    np.testing.assert_array_equal(y.reshape(6, 4).view(np.uint32), want_y.view(np.uint32))
    np.testing.assert_array_equal(dx.reshape(6, 5).view(np.uint32), want_dx.view(np.uint32))
    np.testing.assert_array_equal(dkernel.view(np.uint32), want_dk.view(np.uint32))
    np.testing.assert_array_equal(dbias, dy2.sum(axis=0, dtype=np.float32))


def test_conv2d_bit_exact_against_reference_with_three_tables():
    fwd, gin, gw = random_table(5), random_table(6), random_table(7)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    layer = am.AMConv2D(
        4,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        multiplier=fwd,
        grad_input_multiplier=gin,
        grad_weight_multiplier=gw,
    )
    layer.build(x.shape)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    layer.set_weights([w])
    dy = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    y, dx, dw = output_and_grads(layer, x, dy)
    pads = (1, 1, 0, 1)  # SAME, stride 2: H 5 -> 3 needs 2 rows (1 top, 1 bottom), W 6 -> 3 needs 1 (right)
    conv = dict(strides=(2, 2), pads=pads)
    np.testing.assert_array_equal(y.view(np.uint32), ref.conv2d(x, w, *fwd.core_args, **conv).view(np.uint32))
    np.testing.assert_array_equal(
        dx.view(np.uint32), ref.conv2d_input_grad(x.shape, w, dy, *gin.core_args, **conv).view(np.uint32)
    )
    np.testing.assert_array_equal(
        dw.view(np.uint32), ref.conv2d_filter_grad(x, w.shape, dy, *gw.core_args, **conv).view(np.uint32)
    )


@pytest.mark.parametrize("case", ["dense_rank4", "conv1d_causal", "conv2d_strided", "depthwise", "separable"])
def test_eager_equals_tf_function(case):
    layer, _, x = twin_pair(case, BF16)
    eager = layer(x).numpy()
    graph = tf.function(lambda t: layer(t))(tf.constant(x)).numpy()
    np.testing.assert_array_equal(eager, graph)


def test_dense_in_tf_function_with_unknown_leading_axes():
    layer, _, x = twin_pair("dense_rank4", BF16)
    graph = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 5], tf.float32)])
    np.testing.assert_array_equal(graph(x).numpy(), layer(x).numpy())
    np.testing.assert_array_equal(graph(x[:1, :2]).numpy(), layer(x[:1, :2]).numpy())


def small_model(multiplier, **layer_kwargs):
    inputs = keras.Input((8, 8, 2))
    y = am.AMConv2D(3, 3, activation="relu", multiplier=multiplier, **layer_kwargs)(inputs)
    y = am.AMDepthwiseConv2D(3, multiplier=multiplier, **layer_kwargs)(y)
    y = am.AMSeparableConv2D(4, 2, multiplier=multiplier, **layer_kwargs)(y)
    y = keras.layers.Reshape((3 * 3, 4))(y)
    y = am.AMConv1D(2, 2, padding="causal", multiplier=multiplier, **layer_kwargs)(y)
    y = keras.layers.Flatten()(y)
    outputs = am.AMDense(3, multiplier=multiplier, **layer_kwargs)(y)
    return keras.Model(inputs, outputs)


def test_fit_with_default_compile_trains_and_is_not_xla():
    from keras.src.trainers.trainer import model_supports_jit

    model = small_model(BF16)
    model.compile(optimizer="sgd", loss="mse")  # jit_compile="auto", Keras's default
    before = [w.numpy() for w in model.trainable_weights]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 8, 8, 2)), rng.standard_normal((8, 3))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.any(b != a.numpy()) for b, a in zip(before, model.trainable_weights))
    assert not model_supports_jit(model)
    assert model_supports_jit(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_auto_jit_compile_on_a_gpu_machine_leaves_am_models_out_of_xla(monkeypatch):
    """Keras turns jit_compile="auto" into XLA only where a non-CPU device exists; pretend one does."""
    devices = tf.config.list_physical_devices
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda device_type=None: devices(device_type) + ([gpu] if device_type in (None, "GPU") else []),
    )
    native = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    native.compile(optimizer="sgd", loss="mse")
    model = small_model(BF16)
    model.compile(optimizer="sgd", loss="mse")
    assert native.jit_compile is True
    assert model.jit_compile is False


def test_explicit_jit_compile_falls_back_to_tf_function():
    model = small_model(BF16)
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is False
    loss = model.train_on_batch(np.ones((2, 8, 8, 2), np.float32), np.zeros((2, 3), np.float32))
    assert np.isfinite(loss)


@pytest.mark.parametrize("case", sorted(CASES))
def test_get_config_round_trip(case, registered_bf16):
    am_cls, _, kwargs, _ = CASES[case]
    layer = am_cls(**kwargs, multiplier=BF16, grad_input_multiplier="fp32", name="layer_x")
    config = layer.get_config()
    keys = ("multiplier", "grad_input_multiplier", "grad_weight_multiplier")
    assert [config[k] for k in keys] == ["bf16", "fp32", None]
    clone = am_cls.from_config(config)
    assert type(clone) is am_cls
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(am_cls) == f"approxtrain>{am_cls.__name__}"


def test_keras_save_load_round_trip(tmp_path, registered_bf16):
    rng = np.random.default_rng(3)
    model = small_model("bf16", grad_weight_multiplier="fp32")
    x = rng.standard_normal((2, 8, 8, 2)).astype(np.float32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    for a, b in zip(model.layers, loaded.layers):
        assert type(a) is type(b)
        if isinstance(a, am.AMLayer):
            assert (b.multiplier, b.grad_input_multiplier, b.grad_weight_multiplier) == ("bf16", None, "fp32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("case", ["dense_rank2", "conv1d_causal", "conv2d_same", "depthwise", "separable"])
def test_mixed_precision_computes_in_float32(case, policy):
    am_layer, keras_layer, x = twin_pair(case, BF16, dtype=policy)
    assert am_layer.compute_dtype == keras_layer.compute_dtype != "float32"
    assert all(w.dtype == "float32" for w in am_layer.weights)
    y = am_layer(x)
    assert y.dtype == keras_layer.compute_dtype
    assert_close(y.numpy().astype(np.float32), keras_layer(x).numpy().astype(np.float32), rel=1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(am_layer(x), tf.float32))
    grads = tape.gradient(loss, am_layer.trainable_weights)
    assert all(g.dtype == tf.float32 and np.isfinite(g.numpy()).all() for g in grads)


def test_mixed_precision_model_fit():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_model(BF16)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((4, 8, 8, 2)), np.zeros((4, 3)), batch_size=2, verbose=0)
    assert model.layers[1].compute_dtype == "float16"
    assert np.isfinite(history.history["loss"]).all()


def test_unknown_multiplier_name_is_a_clear_error():
    with pytest.raises((ValueError, KeyError), match="no_such_multiplier"):
        layer = am.AMDense(2, multiplier="no_such_multiplier")
        layer(np.ones((1, 3), np.float32))


@pytest.mark.parametrize("argument", ["multiplier", "grad_input_multiplier", "grad_weight_multiplier"])
def test_multiplier_of_wrong_type_is_rejected(argument):
    kwargs = {"multiplier": BF16, argument: 7}
    with pytest.raises(TypeError, match=argument):
        am.AMConv2D(2, 3, **kwargs)


def test_multiplier_is_required():
    with pytest.raises(TypeError, match="multiplier"):
        am.AMDense(2)


def test_channels_first_is_rejected():
    with pytest.raises(ValueError, match="channels_last"):
        am.AMConv2D(2, 3, data_format="channels_first", multiplier=BF16)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: am.AMConv2D(2, 3, multiplier=BF16), (2, 5, 5)),
        (lambda: am.AMConv2D(2, 3, multiplier=BF16), (1, 2, 5, 5, 1)),
        (lambda: am.AMDepthwiseConv2D(3, multiplier=BF16), (1, 2, 5, 5, 1)),
        (lambda: am.AMConv1D(2, 3, multiplier=BF16), (2, 5, 5, 1)),
        (lambda: am.AMDense(2, multiplier=BF16), (3,)),
    ],
)
def test_wrong_input_rank_is_a_clear_error(layer, shape):
    with pytest.raises(ValueError, match="ndim|rank|same length as input"):
        layer()(np.ones(shape, np.float32))


def test_wrong_rank_after_build_is_a_clear_error():
    layer = am.AMConv2D(2, 3, multiplier=BF16)
    layer(np.ones((1, 5, 5, 1), np.float32))
    with pytest.raises(ValueError, match="expects inputs of rank 4"):
        layer(np.ones((1, 1, 5, 5, 1), np.float32))


def test_integer_inputs_are_a_clear_error():
    with pytest.raises(TypeError, match="floating point.*int32"):
        am.AMDense(2, multiplier=BF16)(tf.ones((2, 3), tf.int32))
