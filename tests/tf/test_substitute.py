"""approxtrain.substitute: supported layers replaced, weights kept, original untouched."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

import approxtrain  # noqa: E402
from approxtrain import layers as am  # noqa: E402
from _compare import BF16  # noqa: E402

# The layers substitute() replaces (docs/design.md, "Ops, layers and gradients").
SUPPORTED_KERAS = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MultiHeadAttention,
    keras.layers.SimpleRNN,
    keras.layers.GRU,
    keras.layers.LSTM,
)


def is_twin(new_type, old_type):
    """From first principles, not from substitute's map: the twin of Keras's Foo is the AM layer
    AMFoo, a subclass of Foo; an AM layer's twin is its own class (re-targeting)."""
    if issubclass(old_type, am.AMLayer):
        return new_type is old_type
    return (
        issubclass(new_type, am.AMLayer)
        and issubclass(new_type, old_type)
        and new_type.__name__ == "AM" + old_type.__name__
    )


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def relative_l2(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def snapshot(model):
    return [(type(layer), [w.copy() for w in layer.get_weights()]) for layer in all_layers(model)]


def assert_replaced(original, new, replaced_names):
    """Layer by layer: the named ones are AM twins with BF16 and the original's weights, the rest the same type."""
    pairs = list(zip(all_layers(original), all_layers(new)))
    assert len(pairs) == len(list(all_layers(original))) == len(list(all_layers(new)))
    for old, layer in pairs:
        assert layer is not old and layer.name == old.name
        if old.name in replaced_names:
            assert is_twin(type(layer), type(old)), old.name
            assert layer.multiplier is BF16
        else:
            assert type(layer) is type(old), old.name
        for a, b in zip(old.get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(a, b)


def functional_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.DepthwiseConv2D(3, name="dw")(y)
    y = keras.layers.SeparableConv2D(4, 2, activation="relu", name="sep")(y)
    y = keras.layers.Reshape((25, 4))(y)
    y = keras.layers.Conv1D(3, 3, name="conv1d")(y)
    y = keras.layers.MultiHeadAttention(2, 2, name="mha")(y, y)
    y = keras.layers.Flatten()(y)
    outputs = keras.layers.Dense(3, name="head")(y)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)  # Keras's initial kernels; non-zero biases and BN statistics
    model.set_weights(
        [
            w.numpy() if w.path.endswith("kernel") else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
            for w in model.weights
        ]
    )
    return model


SUPPORTED = {"conv", "dw", "sep", "conv1d", "mha", "head"}


def test_functional_model_all_supported_layers_replaced_original_untouched():
    model = functional_model()
    before = snapshot(model)
    new = approxtrain.substitute(model, BF16)
    assert_replaced(model, new, SUPPORTED)
    after = snapshot(model)
    assert [t for t, _ in before] == [t for t, _ in after]
    for (_, wa), (_, wb) in zip(before, after):
        for a, b in zip(wa, wb):
            np.testing.assert_array_equal(a, b)

    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    # bf16 rounds every operand (relative error up to 2^-9 each) through 7 GEMM layers:
    # measured 0.2 % per layer, 0.8 % at the output (attention amplifies).
    err = relative_l2(new(x), model(x))
    assert 1e-4 < err < 2e-2


def test_fp32_substitution_reproduces_the_model():
    model = functional_model()
    new = approxtrain.substitute(model, "fp32")
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    assert relative_l2(new(x), model(x)) < 1e-5


def test_include_and_exclude_by_name_and_class():
    model = functional_model()
    new = approxtrain.substitute(model, BF16, include=["conv", keras.layers.Dense])
    assert_replaced(model, new, {"conv", "head"})
    new = approxtrain.substitute(model, BF16, exclude=[keras.layers.MultiHeadAttention, "dw"])
    assert_replaced(model, new, SUPPORTED - {"mha", "dw"})
    new = approxtrain.substitute(model, BF16, include="sep", exclude="sep")
    assert_replaced(model, new, set())


def test_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((10, 2)),
            keras.layers.Conv1D(4, 3, padding="causal", name="c"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, name="d"),
        ]
    )
    new = approxtrain.substitute(model, BF16, grad_weight_multiplier="fp32")
    assert isinstance(new, keras.Sequential)
    assert_replaced(model, new, {"c", "d"})
    assert new.get_layer("d").grad_weight_multiplier == "fp32"
    x = np.random.default_rng(0).standard_normal((3, 10, 2)).astype(np.float32)
    assert relative_l2(new(x), model(x)) < 2e-2


def test_nested_models_are_substituted_recursively():
    inner_seq = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="seq_dense"), keras.layers.BatchNormalization(name="seq_bn")],
        name="inner_seq",
    )
    inner_in = keras.Input((5,))
    inner_fn = keras.Model(inner_in, keras.layers.Dense(2, name="fn_dense")(inner_in), name="inner_fn")
    inputs = keras.Input((4, 4, 1))
    y = keras.layers.Conv2D(2, 2, name="top_conv")(inputs)
    y = keras.layers.Dense(6, name="top_dense")(keras.layers.Flatten()(y))
    model = keras.Model(inputs, inner_fn(inner_seq(y)))
    new = approxtrain.substitute(model, BF16, exclude="fn_dense")
    assert_replaced(model, new, {"top_conv", "top_dense", "seq_dense"})
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 1)).astype(np.float32)
    assert relative_l2(new(x), model(x)) < 2e-2


def test_am_model_can_be_retargeted():
    model = approxtrain.substitute(functional_model(), BF16)
    new = approxtrain.substitute(model, "fp32", grad_input_multiplier=BF16)
    layer = new.get_layer("head")
    assert type(layer) is am.AMDense
    assert (layer.multiplier, layer.grad_input_multiplier) == ("fp32", BF16)


def test_mobilenet_v2_substituted_close_and_trains():
    # Logits, not softmax: with random weights the activations shrink to ~1e-12 by the head,
    # and the softmax of such logits is exactly uniform for any multiplier.
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    new = approxtrain.substitute(model, BF16)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    originals = [layer for layer in model.layers if type(layer) in kinds]
    assert len(originals) == 53  # 35 Conv2D, 17 DepthwiseConv2D, 1 Dense
    for layer in originals:
        assert is_twin(type(new.get_layer(layer.name)), type(layer))

    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    # Inference mode (BN moving statistics). bf16 rounds both operands of every product
    # (relative error up to 2^-9 each), 53 layers in sequence, and the shrinking random-init
    # activations cancel: measured 0.8-1.9 % over init seeds 0-2, hence a 3 % bound.
    err = relative_l2(new(x, training=False), model(x, training=False))
    assert 1e-4 < err < 3e-2

    new.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = new.train_on_batch(x, np.array([1, 7]))
    assert np.isfinite(loss)
    assert all(np.isfinite(w.numpy()).all() for w in new.trainable_weights)


def test_twins_come_from_the_am_layers_declarations():
    from approxtrain._substitute import TWINS

    from approxtrain._substitute import MULTIPLY_HEAVY

    assert set(TWINS) >= set(SUPPORTED_KERAS) | set(am.AM_LAYERS)
    assert set(TWINS) == {layer.keras_twin for layer in am.AM_LAYERS} | set(am.AM_LAYERS)
    for keras_type, twin in TWINS.items():
        assert is_twin(twin, keras_type), keras_type
    # every twin is a layer with multiplies: the one list covers all of them
    assert all(issubclass(layer.keras_twin, MULTIPLY_HEAVY) for layer in am.AM_LAYERS)
    with pytest.raises(TypeError, match="AMWrong.keras_twin must be one of its bases, got Conv2D"):

        class AMWrong(am.AMLayer, keras.layers.Dense):
            keras_twin = keras.layers.Conv2D


def test_copy_draws_the_dropout_masks_of_the_original():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 4))
    y = keras.layers.Dropout(0.5, name="drop")(inputs)
    y = keras.layers.MultiHeadAttention(2, 2, dropout=0.5, name="mha")(y, y)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.Flatten()(y)))
    x = np.random.default_rng(0).standard_normal((2, 6, 4)).astype(np.float32)
    model(x, training=True)  # the original's seeds have moved on: the copy continues from there
    new = approxtrain.substitute(model, "fp32")  # AM layers computing the native products
    want, got = model(x, training=True).numpy(), new(x, training=True).numpy()
    # A different mask in either dropout would change whole units; fp32 AM layers may differ
    # from Keras's in float rounding only.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model(x, training=True), want, rtol=1e-3)  # masks do change from call to call


def test_bad_arguments_are_clear_errors():
    model = functional_model()
    with pytest.raises(ValueError, match="no_such_layer"):
        approxtrain.substitute(model, BF16, include=["no_such_layer"])
    with pytest.raises(ValueError, match="bn.*no AM twin|no layer with an AM twin"):
        approxtrain.substitute(model, BF16, include=["bn"])
    with pytest.raises(ValueError, match="BatchNormalization"):
        approxtrain.substitute(model, BF16, include=[keras.layers.BatchNormalization])
    with pytest.raises(TypeError, match="layer names"):
        approxtrain.substitute(model, BF16, exclude=[3])
    with pytest.raises(TypeError, match="multiplier"):
        approxtrain.substitute(model, 3.0)
    with pytest.raises(ValueError, match="'conv'.*no_such_multiplier"):
        approxtrain.substitute(model, "no_such_multiplier")

    with pytest.raises(TypeError, match="substitute needs a Keras model, got Dense"):
        approxtrain.substitute(keras.layers.Dense(2), BF16)


def test_channels_first_layer_names_the_layer():
    inputs = keras.Input((3, 8, 8))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, data_format="channels_first", name="cf")(inputs))
    with pytest.raises(ValueError, match="'cf'.*channels_last"):
        approxtrain.substitute(model, BF16)


def test_supported_model_substitutes_strictly_and_quietly():
    import warnings

    model = functional_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer with multiplies has a twin: no warning
        new = approxtrain.substitute(model, BF16, strict=True)
    assert_replaced(model, new, SUPPORTED)
    counts = approxtrain.coverage(new)
    assert counts["share"] == 1.0 and counts["native_macs"] == 0
    assert [row["name"] for row in counts["layers"]] == ["conv", "dw", "sep", "conv1d", "mha", "head"]
