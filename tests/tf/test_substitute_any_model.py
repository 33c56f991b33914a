"""approxtrain.substitute on any Keras model, its warnings, and approxtrain.coverage.

Graphs with keras.ops nodes, nested and subclassed models, shared layers, layers held as
attributes of custom layers; keras.applications families; tiny keras_hub backbones.
"""

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402
from keras import ops  # noqa: E402

import approxtrain  # noqa: E402
from approxtrain import layers as am  # noqa: E402
from approxtrain._substitute import MULTIPLY_HEAVY, left_native  # noqa: E402
from approxtrain._substituted_save import original_class  # noqa: E402
from _compare import BF16, assert_bits_equal, bf16_values, random_table  # noqa: E402


def relative_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def flat(outputs):
    return np.concatenate([np.asarray(t, np.float64).ravel() for t in keras.tree.flatten(outputs)])


def state(model):
    return [v.numpy().copy() for v in model.variables]


def assert_untouched(model, before, x, outputs):
    """The original's variables and outputs are those it had before substitute()."""
    after = state(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(flat(model(x, training=False)), flat(outputs))


def substitute_quietly(model, multiplier, **kw):
    """substitute() that must not warn: every multiply-heavy layer has an AM twin."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return approxtrain.substitute(model, multiplier, **kw)


def assert_close_and_different(model, x, bf16_bound):
    """bf16 (exact products of 8-bit operands) stays close to native; mbm7 (approximate) differs."""
    native = flat(model(x, training=False))
    bf16 = flat(substitute_quietly(model, BF16)(x, training=False))
    assert 1e-6 < relative_l2(bf16, native) < bf16_bound
    mbm7 = flat(substitute_quietly(model, "mbm7")(x, training=False))
    assert relative_l2(mbm7, native) > max(1e-4, relative_l2(bf16, native))  # mbm7's products are approximate
    assert np.isfinite(mbm7).all()


def assert_training_step_finite(model, x):
    """One SGD step on the mean square of the outputs: finite loss, finite and nonzero gradients."""
    optimizer = keras.optimizers.SGD(0.01)
    with tf.GradientTape() as tape:
        loss = tf.add_n(
            [tf.reduce_mean(tf.square(tf.cast(t, tf.float32))) for t in keras.tree.flatten(model(x, training=True))]
        )
    grads = [
        None if g is None else tf.convert_to_tensor(g).numpy()  # embeddings: IndexedSlices
        for g in tape.gradient(loss, model.trainable_variables)
    ]
    assert np.isfinite(loss.numpy())
    assert all(g is not None and np.isfinite(np.asarray(g)).all() for g in grads)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in grads)
    optimizer.apply(grads, model.trainable_variables)
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


# ---------------------------------------------------------------- graphs, nesting, sharing


def test_keras_ops_nodes_between_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="features")
    a = keras.layers.Dense(5, name="a")(inputs)
    b = keras.layers.Dense(5, name="b")(inputs)
    model = keras.Model(inputs, a + ops.relu(b) * 2.0)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    before, outputs = state(model), model(x)
    new = substitute_quietly(model, BF16)
    assert [type(layer) for layer in new.layers] == [keras.layers.InputLayer, am.AMDense, am.AMDense]
    assert [layer.name for layer in new.layers] == [layer.name for layer in model.layers]
    assert sorted(layer.name for layer in new.layers) == ["a", "b", "features"]
    assert new.input.name == "features"
    got = new(x).numpy()
    # the graph itself, computed with the AM layers' own outputs
    want = new.get_layer("a")(x).numpy() + np.maximum(new.get_layer("b")(x).numpy(), 0) * 2.0
    np.testing.assert_array_equal(got, want)
    assert 1e-6 < relative_l2(got, outputs) < 1e-2
    assert_untouched(model, before, x, outputs)
    # the original's op nodes were not called again by the copy
    assert all(len(op._inbound_nodes) == 1 for op in model.operations)


def test_shared_layer_and_nested_model_stay_shared():
    keras.utils.set_random_seed(1)
    shared = keras.layers.Dense(4, name="shared")
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    inputs = keras.Input((4,))
    y = shared(inputs)
    y = shared(ops.tanh(y))  # the same layer called twice
    y = inner(y)
    outputs = keras.layers.Add(name="sum")([inner(y), shared(y)])  # nested model and layer reused
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    before, out = state(model), model(x)

    new = substitute_quietly(model, BF16)
    new_shared = new.get_layer("shared")
    assert type(new_shared) is am.AMDense
    assert len(new_shared._inbound_nodes) == 3  # one AM layer in all three places
    new_inner = new.get_layer("inner")
    assert new_inner is not inner and type(new_inner.get_layer("inner_dense")) is am.AMDense
    assert len(new.weights) == len(model.weights) == 4
    # replaying the graph by hand with the AM layers gives the model's output bit for bit
    y = new_shared(np.tanh(new_shared(x)))
    y = new_inner(y)
    np.testing.assert_array_equal(new(x).numpy(), (new_inner(y) + new_shared(y)).numpy())
    assert 1e-6 < relative_l2(new(x), out) < 1e-2
    assert approxtrain.coverage(new)["layers"][0] == {
        "name": "shared",
        "class": "AMDense",
        "calls": 3,
        "macs": 3 * 16,
        "approximate": True,
    }
    assert_untouched(model, before, x, out)


@keras.saving.register_keras_serializable(package="test_any_model")
class Block(keras.layers.Layer):
    """A custom layer holding a Dense in an attribute and Dense layers in a list and a dict."""

    def __init__(self, width, **kw):
        super().__init__(**kw)
        self.width = width
        self.proj = keras.layers.Dense(width, name="proj")
        self.stack = [keras.layers.Dense(width, activation="relu", name=f"stack_{i}") for i in range(2)]
        self.heads = {"gate": keras.layers.Dense(width, activation="sigmoid", name="gate")}
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        y = self.proj(x)
        for layer in self.stack:
            y = layer(y)
        return self.norm(y * self.heads["gate"](x))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="test_any_model")
class Outer(keras.layers.Layer):
    """Two levels deep: a custom layer holding a custom layer."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.block = Block(6, name="block")

    def call(self, x):
        return x + self.block(x)


def dense_names(layer):
    return sorted(sub.name for sub in layer._flatten_layers() if isinstance(sub, keras.layers.Dense))


def test_dense_layers_inside_custom_layers_at_any_depth():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(Outer(name="outer")(inputs)))
    x = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    before, out = state(model), model(x)
    assert [layer.name for layer in left_native(model)] == ["proj", "stack_0", "stack_1", "gate", "head"]

    new = substitute_quietly(model, BF16)
    block = new.get_layer("outer").block
    assert type(block) is Block and block is not model.get_layer("outer").block
    assert type(block.proj) is am.AMDense and [type(d) for d in block.stack] == [am.AMDense] * 2
    assert type(block.heads["gate"]) is am.AMDense
    assert left_native(new) == []
    assert dense_names(new) == dense_names(model)
    # Keras's tracking follows: the weights are the AM layers', in the original's order
    assert [w.path for w in new.weights] == [w.path for w in model.weights]
    assert {id(w) for w in new.weights} >= {id(w) for w in block.proj.weights}
    for a, b in zip(new.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert 1e-6 < relative_l2(new(x), out) < 1e-2
    assert_close_and_different(model, x, 1e-2)
    assert_training_step_finite(new, x)
    assert_untouched(model, before, x, out)


def test_include_and_exclude_reach_inside_custom_layers():
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(Outer(name="outer")(inputs)))
    # including a custom layer includes what it holds
    new = substitute_quietly(model, BF16, include=["outer"], strict=True)
    block = new.get_layer("outer").block
    assert type(block.proj) is am.AMDense and type(new.get_layer("head")) is keras.layers.Dense
    # excluding it keeps all of it native, without a warning
    new = substitute_quietly(model, BF16, exclude=["outer"], strict=True)
    assert [layer.name for layer in left_native(new)] == ["proj", "stack_0", "stack_1", "gate"]
    assert type(new.get_layer("head")) is am.AMDense
    # a name inside a custom layer is a valid selector
    new = substitute_quietly(model, BF16, exclude=["gate"], strict=True)
    assert [layer.name for layer in left_native(new)] == ["gate"]


class Net(keras.Model):
    """A subclassed model: Dense layers in attributes and a list, a Conv1D, a MultiHeadAttention."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = keras.layers.Conv1D(8, 3, padding="same", name="conv")
        self.attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
        self.mlp = [keras.layers.Dense(16, activation="gelu", name="up"), keras.layers.Dense(8, name="down")]
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x, training=False):
        y = self.conv(x)
        y = y + self.attention(y, y, training=training)
        for layer in self.mlp:
            y = layer(y)
        return self.head(ops.mean(y, axis=1))


def test_subclassed_model():
    keras.utils.set_random_seed(3)
    model = Net(name="net")
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    out = model(x)
    before = state(model)
    new = substitute_quietly(model, BF16)
    # its class: Net's save-as-substituted subclass (approxtrain/_substituted_save.py)
    assert original_class(type(new)) is Net and new is not model and new.name == "net"
    assert type(new.conv) is am.AMConv1D and type(new.attention) is am.AMMultiHeadAttention
    assert [type(d) for d in new.mlp] == [am.AMDense, am.AMDense] and type(new.head) is am.AMDense
    assert [w.path for w in new.weights] == [w.path for w in model.weights]
    assert 1e-6 < relative_l2(new(x), out) < 2e-2
    assert_close_and_different(model, x, 2e-2)
    assert_training_step_finite(new, x)
    assert_untouched(model, before, x, out)


def test_names_dtypes_and_trainability_are_kept():
    inputs = keras.Input((4,))
    y = keras.layers.Dense(3, name="frozen", trainable=False)(inputs)
    y = keras.layers.Dense(3, name="half", dtype="mixed_float16")(y)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out", dtype="float64")(y))
    new = substitute_quietly(model, BF16)
    for name in ("frozen", "half", "out"):
        old, layer = model.get_layer(name), new.get_layer(name)
        assert type(layer) is am.AMDense
        assert (layer.trainable, layer.dtype_policy.name) == (old.trainable, old.dtype_policy.name)
    assert len(new.trainable_weights) == len(model.trainable_weights) == 4
    assert new(np.ones((1, 4), np.float32)).dtype == model(np.ones((1, 4), np.float32)).dtype == "float64"


class Unserialisable(keras.layers.Layer):
    """A custom layer whose get_config forgets its argument: a copy from config would be wrong."""

    def __init__(self, width=2, **kw):
        super().__init__(**kw)
        self.dense = keras.layers.Dense(width, name="inner")

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {"name": self.name}


def test_model_whose_config_does_not_round_trip_needs_inplace():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Unserialisable(5, name="custom")(inputs))
    x = np.ones((1, 4), np.float32)
    out = model(x)
    with pytest.raises(ValueError) as error:
        approxtrain.substitute(model, BF16)
    assert str(error.value) == (
        "cannot copy 'custom' (Unserialisable): the copy made from its config has other variables; "
        "pass inplace=True to substitute the model itself (it is then modified), or give the custom "
        "layers a get_config() that round-trips"
    )
    custom = model.get_layer("custom")
    assert type(custom.dense) is keras.layers.Dense  # the failed call changed nothing
    new = substitute_quietly(model, BF16, inplace=True)
    assert new is model and model.get_layer("custom") is custom
    assert type(custom.dense) is am.AMDense and custom.dense.name == "inner"
    assert 1e-6 < relative_l2(model(x), out) < 1e-2


def test_inplace_rewrites_a_functional_graph():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="d")(ops.sin(inputs)))
    x = np.ones((2, 4), np.float32)
    out = model(x)
    assert approxtrain.substitute(model, BF16, inplace=True) is model
    assert type(model.get_layer("d")) is am.AMDense
    assert 1e-6 < relative_l2(model(x), out) < 1e-2


def test_inplace_sequential_saves_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")])
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    out = model(x).numpy()
    assert approxtrain.substitute(model, BF16, inplace=True) is model
    assert [type(layer) for layer in model.layers] == [am.AMDense, am.AMDense]
    got = model(x).numpy()
    assert 1e-6 < relative_l2(got, out) < 1e-2
    model.save(tmp_path / "seq.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "seq.keras")(x).numpy(), got)


def test_layers_inside_keras_wrappers_are_reached():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((5, 3))
    y = keras.layers.TimeDistributed(keras.layers.Dense(4, name="inner"), name="td")(inputs)
    y = keras.layers.Bidirectional(keras.layers.LSTM(2, name="lstm"), name="bi")(y)
    model = keras.Model(inputs, y)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 3)).astype(np.float32)
    new = substitute_quietly(model, BF16, strict=True)
    assert left_native(new) == []
    assert type(new.get_layer("td").layer) is am.AMDense
    bi = new.get_layer("bi")
    assert [type(bi.forward_layer).__name__, type(bi.backward_layer).__name__] == ["AMLSTM", "AMLSTM"]
    assert 1e-6 < relative_l2(new(x), model(x)) < 1e-2
    # 5 steps x 3 x 4 for the Dense; per LSTM direction 5 steps x 4 gates x (4 x 2 + 2 x 2)
    counts = approxtrain.coverage(new)
    assert [(row["name"], row["macs"]) for row in counts["layers"]] == [
        ("inner", 60),
        ("forward_lstm", 240),
        ("backward_lstm", 240),
    ]
    assert counts["share"] == 1.0


# ---------------------------------------------------------------- no silent fallbacks


def recurrent_model():
    inputs = keras.Input((5, 3))
    y = keras.layers.GRU(4, return_sequences=True, name="gru")(inputs)
    y = keras.layers.Attention(name="attn")([y, y])
    y = keras.layers.Embedding(10, 2, name="embedding")(ops.cast(ops.abs(y) * 3, "int32"))
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(y))
    return keras.Model(inputs, y)


def test_layers_without_twin_are_warned_about_or_refused():
    model = recurrent_model()
    gru_twin = "GRU" in {twin.__name__ for twin in (layer.keras_twin for layer in am.AM_LAYERS)}
    expected = [("attn", "Attention")] if gru_twin else [("gru", "GRU"), ("attn", "Attention")]
    listing = ", ".join(f"{name!r} ({cls})" for name, cls in expected)
    message = f"{len(expected)} layer(s) with multiplies have no AM twin and stay native: {listing}"
    with pytest.warns(UserWarning) as record:
        new = approxtrain.substitute(model, BF16)
    assert [str(w.message) for w in record] == [f"substitute: {message}"]
    assert type(new.get_layer("head")) is am.AMDense
    assert [(layer.name, type(layer).__name__) for layer in left_native(new)] == expected
    with pytest.raises(ValueError) as error:
        approxtrain.substitute(model, BF16, strict=True)
    assert str(error.value) == f"substitute(strict=True): {message}; exclude them to keep them native"
    # Layers the user keeps native on purpose are not warned about.
    substitute_quietly(model, BF16, exclude=["gru", keras.layers.Attention])
    substitute_quietly(model, BF16, include=["head"], strict=True)


def test_subclass_of_a_keras_layer_is_not_replaced_but_listed():
    class ScaledDense(keras.layers.Dense):
        def call(self, x):
            return 2.0 * super().call(x)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, ScaledDense(2, name="scaled")(inputs))
    with pytest.raises(
        ValueError,
        match=r"^substitute\(strict=True\): 1 layer\(s\) with multiplies have no AM "
        r"twin and stay native: 'scaled' \(ScaledDense\);",
    ):
        approxtrain.substitute(model, BF16, strict=True)


# ---------------------------------------------------------------- coverage


def test_coverage_matches_a_hand_count():
    inputs = keras.Input((6, 4))
    y = keras.layers.Conv1D(5, 3, name="conv")(inputs)  # 4 positions x 5 filters x (3 x 4) = 240
    shared = keras.layers.Dense(3, name="dense")
    y = shared(y) + shared(ops.relu(y))  # 2 calls x 4 rows x 5 x 3 = 120
    y = keras.layers.MultiHeadAttention(2, 2, name="mha")(y, y)  # 4 projections x 4 x 12 + 2 x 4 x 4 x 2 x 2
    y = keras.layers.LayerNormalization(name="norm")(y)  # not multiply-heavy
    model = keras.Model(inputs, y)
    mha = 4 * 4 * 12 + 2 * (4 * 4 * 2 * 2)
    counts = approxtrain.coverage(model)
    assert counts == {
        "approximate_macs": 0,
        "native_macs": 240 + 120 + mha,
        "share": 0.0,
        "layers": [
            {"name": "conv", "class": "Conv1D", "calls": 1, "macs": 240, "approximate": False},
            {"name": "dense", "class": "Dense", "calls": 2, "macs": 120, "approximate": False},
            {"name": "mha", "class": "MultiHeadAttention", "calls": 1, "macs": mha, "approximate": False},
        ],
    }
    new = approxtrain.substitute(model, "mbm7", exclude="conv")
    counts = approxtrain.coverage(new)
    assert (counts["approximate_macs"], counts["native_macs"]) == (120 + mha, 240)
    assert counts["share"] == (120 + mha) / (240 + 120 + mha)
    # "fp32" AM layers run the native op: they count as native
    assert approxtrain.coverage(approxtrain.substitute(model, "fp32"))["share"] == 0.0


def test_coverage_of_convolution_kinds_and_recurrent_layers():
    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)  # 4x4x4 x 27
    y = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(y)  # 2x2x8 x 9
    y = keras.layers.SeparableConv2D(5, 2, name="sep")(y)  # 1x1x8 x 4 + 1x1x5 x 8
    y = keras.layers.Conv2DTranspose(2, 3, strides=2, name="tr")(y)  # 1x1x5 x 9 x 2
    y = keras.layers.Reshape((9, 2))(y)
    y = keras.layers.LSTM(3, return_sequences=True, name="lstm")(y)  # 9 x 4 x (2x3 + 3x3)
    y = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 4), name="ein")(y)  # 9 x 3 x 4
    model = keras.Model(inputs, y)
    macs = {row["name"]: row["macs"] for row in approxtrain.coverage(model)["layers"]}
    assert macs == {
        "conv": 64 * 27,
        "dw": 32 * 9,
        "sep": 8 * 4 + 5 * 8,
        "tr": 5 * 9 * 2,
        "lstm": 9 * 4 * (6 + 9),
        "ein": 9 * 3 * 4,
    }


def test_coverage_needs_known_shapes():
    inputs = keras.Input((None, 4), name="tokens")
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError) as error:
        approxtrain.coverage(model)
    assert str(error.value) == (
        f"coverage: input 'tokens' of model {model.name!r} has shape (None, None, 4); "
        "pass inputs=<an example batch> to fix the unknown sizes"
    )
    counts = approxtrain.coverage(model, inputs=np.zeros((7, 5, 4), np.float32))
    assert counts["native_macs"] == 5 * 4 * 2


def test_train_summary_line_for_a_zoo_model():
    from approxtrain._coverage import zoo_summary

    # lenet5 on 28x28x1: conv1 28*28*6 x 5*5, conv2 10*10*16 x 5*5*6, fc1 400x120, fc2 120x84, logits 84x10
    total = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    results = {"settings": {"multiplier": "mbm7"}, "dataset": {"input_shape": [28, 28, 1], "num_classes": 10}}
    assert zoo_summary(results, "lenet5", {}) == (
        f"approximate multiplies: 100.0% of {total:,} MACs per sample in 5 multiply-heavy layer(s)"
    )
    results["settings"]["multiplier"] = "fp32"
    assert zoo_summary(results, "lenet5", {}) == (
        f"approximate multiplies: 0.0% of {total:,} MACs per sample in 5 multiply-heavy layer(s); "
        "native: conv1 (Conv2D), conv2 (Conv2D), fc1 (Dense), fc2 (Dense), logits (Dense)"
    )


# ---------------------------------------------------------------- keras.applications


def application(name, size, **kw):
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None, **kw
    )


def check_application(model, size, tmp_path):
    heavy = [layer for layer in model._flatten_layers() if isinstance(layer, MULTIPLY_HEAVY)]
    assert len(heavy) > 10
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    before, native = state(model), model(x, training=False)
    new = approxtrain.substitute(model, BF16, strict=True)  # strict: nothing may stay native
    assert left_native(new) == []
    assert approxtrain.coverage(new)["share"] == 1.0
    logits = new(x, training=False).numpy()
    # Logits, inference mode. bf16 rounds both operands of every product (2^-9 relative each),
    # through dozens of layers of random-init weights: a few percent at most.
    assert 1e-5 < relative_l2(logits, native) < 0.1
    new.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), logits)
    new.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(new.train_on_batch(x, np.array([1, 7])))
    assert all(np.isfinite(w.numpy()).all() for w in new.trainable_weights)
    assert_untouched(model, before, x, native)


# The fast suite: the families whose graphs use keras.ops between layers (MobileNetV3's hard
# sigmoid, ConvNeXt's layer scale) and a plain residual one, ~90 s on 2 cores; the rest is slow.
FAST_APPLICATIONS = [
    ("MobileNetV3Small", 32, {"minimalistic": False}),
    ("ConvNeXtTiny", 32, {}),
    ("ResNet50V2", 32, {}),
]
SLOW_APPLICATIONS = [
    ("MobileNetV3Small", 32, {"minimalistic": True}),
    ("EfficientNetV2B0", 32, {}),
    ("InceptionV3", 75, {}),
    ("MobileNetV2", 32, {}),
    ("DenseNet121", 32, {}),
    ("EfficientNetB0", 32, {}),
]


@pytest.mark.parametrize("name,size,kw", FAST_APPLICATIONS, ids=[n for n, _, _ in FAST_APPLICATIONS])
def test_application_fully_substituted(name, size, kw, tmp_path):
    check_application(application(name, size, **kw), size, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,size,kw", SLOW_APPLICATIONS, ids=[f"{n}-{'-'.join(map(str, kw.values()))}" for n, _, kw in SLOW_APPLICATIONS]
)
def test_application_fully_substituted_slow(name, size, kw, tmp_path):
    check_application(application(name, size, **kw), size, tmp_path)


# ---------------------------------------------------------------- keras_hub backbones


def import_keras_hub():
    return pytest.importorskip("keras_hub")  # requirements.txt, "# tests"


def token_inputs(with_segments):
    ids = np.random.default_rng(0).integers(1, 50, (2, 8)).astype(np.int32)
    x = {"token_ids": ids, "padding_mask": np.ones((2, 8), np.int32)}
    if with_segments:
        x["segment_ids"] = np.zeros((2, 8), np.int32)
    return x


def test_keras_hub_bert_and_vit_fully_substituted():
    keras_hub = import_keras_hub()
    keras.utils.set_random_seed(0)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    vit = keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    image = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    for model, x, heavy in ((bert, token_inputs(True), 7), (vit, image, 7)):
        # Dense / MultiHeadAttention inside TransformerEncoder-style subclassed layers
        assert len(left_native(model)) == heavy
        before, out = state(model), model(x)
        new = substitute_quietly(model, BF16, strict=True)
        assert original_class(type(new)) is type(model) and left_native(new) == []
        assert_close_and_different(model, x, 0.05)
        assert_training_step_finite(new, x)
        assert_untouched(model, before, x, out)


def test_keras_hub_gpt2_fully_substituted():
    keras_hub = import_keras_hub()
    from approxtrain.layers.keras_hub_twins import AMCachedMultiHeadAttention

    keras.utils.set_random_seed(0)
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    x = token_inputs(False)
    # keras_hub's CachedMultiHeadAttention (a MultiHeadAttention subclass with its own call: a
    # key/value cache) and the two MLP Dense layers.
    assert [type(layer).__name__ for layer in left_native(gpt2)] == ["CachedMultiHeadAttention", "Dense", "Dense"]
    before, out = state(gpt2), gpt2(x)
    new = substitute_quietly(gpt2, "mbm7", strict=True)
    assert original_class(type(new)) is type(gpt2) and left_native(new) == []
    attention = new.get_layer("transformer_layer_0")._self_attention_layer
    assert type(attention) is AMCachedMultiHeadAttention and attention.multiplier == "mbm7"
    assert_close_and_different(gpt2, x, 0.1)
    assert_training_step_finite(new, x)
    assert_untouched(gpt2, before, x, out)


def attention_pair(multiplier, batch=2, length=5, width=6, heads=2, key_dim=3):
    """An AMCachedMultiHeadAttention and an AMMultiHeadAttention with the same bf16 weights."""
    from approxtrain.layers.keras_hub_twins import AMCachedMultiHeadAttention

    rng = np.random.default_rng(1)
    cached = AMCachedMultiHeadAttention(num_heads=heads, key_dim=key_dim, multiplier=multiplier)
    plain = am.AMMultiHeadAttention(num_heads=heads, key_dim=key_dim, multiplier=multiplier)
    for layer in (cached, plain):
        layer.build((batch, length, width), (batch, length, width))
    cached.set_weights([bf16_values(rng, w.shape, 0.5) for w in cached.get_weights()])
    plain.set_weights(cached.get_weights())
    return cached, plain, bf16_values(rng, (batch, length, width))


def test_cached_attention_twin_is_am_attention_with_keras_hubs_call():
    import_keras_hub()
    from keras_hub.src.layers.modeling.cached_multi_head_attention import CachedMultiHeadAttention
    from approxtrain.layers.keras_hub_twins import AMCachedMultiHeadAttention

    # call is keras_hub's (the cache); build and _compute_attention are AMMultiHeadAttention's.
    assert AMCachedMultiHeadAttention.call is CachedMultiHeadAttention.call
    assert AMCachedMultiHeadAttention.build is am.AMMultiHeadAttention.build
    assert AMCachedMultiHeadAttention._compute_attention is am.AMMultiHeadAttention._compute_attention
    table = random_table(3)
    cached, plain, x = attention_pair(table)
    assert cached.multiplier is table
    batch, length = x.shape[:2]
    causal = np.broadcast_to(np.tril(np.ones((length, length), bool)), (batch, length, length))

    # Training path (no cache): AMMultiHeadAttention's products, bit for bit; not the native ones.
    got = cached(x, x, attention_mask=causal)
    assert_bits_equal(got, plain(x, x, attention_mask=causal), "no cache")
    native = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    native.build(x.shape, x.shape)
    native.set_weights(cached.get_weights())
    assert relative_l2(got, native(x, x, attention_mask=causal)) > 1e-2

    # Cached decode, one token at a time into a zero cache: each step's output is the full
    # causal pass's row (masked positions have probability 0, and 0 times anything is 0), up to
    # the native softmax, whose Eigen kernels (oneDNN off) may give 0.99999994 for one query row
    # where a block of rows gives 1.0. A random table turns that last bit into an unrelated
    # product, so the decode path is checked with the exact bf16 table, to a tolerance.
    cached, plain, x = attention_pair(BF16)
    got = cached(x, x, attention_mask=causal)
    cache = np.zeros((batch, 2, length, 2, 3), np.float32)
    for i in range(length):
        mask = causal[:, i : i + 1, :]
        step, cache = cached(x[:, i : i + 1], x[:, i : i + 1], attention_mask=mask, cache=cache, cache_update_index=i)
        assert np.isfinite(np.asarray(step)).all()
        np.testing.assert_allclose(step, np.asarray(got)[:, i : i + 1], rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
    # The filled cache holds the key and value projections of the whole sequence.
    assert_bits_equal(cache[:, 0], cached._key_dense(x), "key cache")
    assert_bits_equal(cache[:, 1], cached._value_dense(x), "value cache")
    # Static cache (no update index): the cached keys and values are used, the inputs ignored.
    static, _ = cached(x, np.zeros_like(x), attention_mask=causal, cache=cache)
    assert_bits_equal(static, got, "static cache")


# ---------------------------------------------------------------- .keras round trip of rebuilt layers


def assert_same_layers(loaded, substituted):
    """The same multiply-heavy layers, each of the same class and multiplier, none native."""
    assert left_native(loaded) == []
    pairs = list(zip(_leaves_of(loaded), _leaves_of(substituted), strict=True))
    assert pairs
    for a, b in pairs:
        assert (a.name, type(a), a.multiplier) == (b.name, type(b), b.multiplier)


def _leaves_of(model):
    from approxtrain._substitute import _leaves

    return _leaves(model)


def assert_round_trip(substituted, x, path):
    """Saved and loaded, the substituted model is itself again: AM layers, weights, outputs bit for bit."""
    out = flat(substituted(x, training=False))
    substituted.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(substituted) and isinstance(loaded, type(substituted).__mro__[1])
    assert_same_layers(loaded, substituted)
    # Keras names the top scope of a layer loaded twice in one process "outer_1": compare below it.
    assert [w.path.partition("/")[2] for w in loaded.weights] == [w.path.partition("/")[2] for w in substituted.weights]
    for a, b in zip(loaded.weights, substituted.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(flat(loaded(x, training=False)), out)
    return loaded


def test_custom_layers_inside_a_functional_model_reload_as_am_layers(tmp_path):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(Outer(name="outer")(inputs)))
    x = np.random.default_rng(1).standard_normal((2, 3, 6)).astype(np.float32)
    new = substitute_quietly(model, "mbm7")
    loaded = assert_round_trip(new, x, tmp_path / "outer.keras")
    block = loaded.get_layer("outer").block
    assert type(block.proj) is am.AMDense and block.proj.multiplier == "mbm7"
    assert relative_l2(flat(loaded(x)), flat(model(x))) > 1e-4  # mbm7, not the native products
    # Saved again, it loads again (the loaded model is marked as the substituted one was).
    assert_round_trip(loaded, x, tmp_path / "again.keras")
    # A model of Keras layers only stores its AM layers' configs itself: it keeps its class.
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert type(substitute_quietly(plain, "mbm7")) is keras.Sequential


def test_loading_refuses_an_am_layer_without_its_place():
    from approxtrain._substitute import replay
    from approxtrain._substituted_save import record

    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, Outer(name="outer")(inputs), name="m")
    stray = am.AMDense(4, name="not_there", multiplier="mbm7")
    stray.build((None, 6))
    with pytest.raises(ValueError) as e:
        replay(model, [record(stray)])
    assert str(e.value) == (
        "cannot load the substituted Functional 'm': its AM layer 'not_there' (AMDense) has no "
        "place in the model its config builds (did the model's class change since it was saved?); "
        "loading it with native layers would silently drop the approximate multiplier"
    )
    assert left_native(model) != []  # and nothing was replaced on the way


def keras_hub_backbones(keras_hub):
    """Tiny BERT, GPT-2 and ViT backbones (no weights download) and an input for each."""
    keras.utils.set_random_seed(0)
    image = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    small = dict(num_heads=2, hidden_dim=8)
    return [
        (
            keras_hub.models.BertBackbone(
                vocabulary_size=50, num_layers=2, intermediate_dim=16, max_sequence_length=8, **small
            ),
            token_inputs(True),
        ),
        (
            keras_hub.models.GPT2Backbone(
                vocabulary_size=50, num_layers=1, intermediate_dim=16, max_sequence_length=8, **small
            ),
            token_inputs(False),
        ),
        (keras_hub.models.ViTBackbone(image_shape=(8, 8, 3), patch_size=4, num_layers=2, mlp_dim=16, **small), image),
    ]


def test_keras_hub_backbones_reload_from_keras_files(tmp_path):
    keras_hub = import_keras_hub()
    for model, x in keras_hub_backbones(keras_hub):
        new = substitute_quietly(model, "mbm7", strict=True)
        assert approxtrain.coverage(new, inputs=x)["share"] == 1.0
        loaded = assert_round_trip(new, x, tmp_path / f"{model.name}.keras")
        assert approxtrain.coverage(loaded, inputs=x)["share"] == 1.0
        assert relative_l2(flat(loaded(x)), flat(model(x))) > 1e-4, model.name  # not native


@pytest.mark.slow  # a new Python importing TensorFlow: ~25 s on 2 cores
def test_substituted_gpt2_loads_in_a_fresh_process(tmp_path):
    """As a user loads it: a new Python that imports approxtrain.layers only (not keras_hub, not
    approxtrain's keras_hub twins) before keras.models.load_model."""
    import subprocess
    import sys

    keras_hub = import_keras_hub()
    model, x = keras_hub_backbones(keras_hub)[1]
    new = substitute_quietly(model, "mbm7", strict=True)
    np.save(tmp_path / "ids.npy", x["token_ids"])
    np.save(tmp_path / "out.npy", np.asarray(new(x, training=False)))
    new.save(tmp_path / "gpt2.keras")
    script = (
        "import sys, numpy as np, keras, approxtrain.layers\n"
        "from approxtrain._substitute import left_native, _leaves\n"
        "d = sys.argv[1]\n"
        "m = keras.models.load_model(d + '/gpt2.keras')\n"
        "ids = np.load(d + '/ids.npy')\n"
        "out = np.asarray(m({'token_ids': ids, 'padding_mask': np.ones_like(ids)}, training=False))\n"
        "assert left_native(m) == [], left_native(m)\n"
        "print(sorted(type(layer).__name__ for layer in _leaves(m)))\n"
        "print(np.array_equal(out, np.load(d + '/out.npy')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-3:] == ["['AMCachedMultiHeadAttention', 'AMDense', 'AMDense']", "True", ""]
