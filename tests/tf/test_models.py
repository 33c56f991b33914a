"""Model zoo: every model builds with tiny shapes and trains a step; AM builds use AM layers."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import models  # noqa: E402

# Tiny but architecture-preserving settings, so that each model builds and steps in a second or two.
TINY = {
    "lenet300100": ((12, 12, 1), {}),
    "lenet5": ((12, 12, 1), {}),
    "resnet20": ((8, 8, 3), {"width": 4}),
    "resnet32": ((8, 8, 3), {"width": 2}),
    "resnet56": ((8, 8, 3), {"width": 2}),
    "resnet18": ((8, 8, 3), {"width": 4, "stem": "cifar"}),
    "resnet34": ((8, 8, 3), {"width": 2, "stem": "cifar"}),
    "resnet50": ((16, 16, 3), {"width": 2, "stem": "imagenet"}),
    "mobilenetv2": ((8, 8, 3), {"alpha": 0.25, "stem": "cifar"}),
    "transformer": ((8, 8, 1), {"dim": 8, "depth": 1, "num_heads": 2, "patch_size": 4}),
}
HEAVY = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MultiHeadAttention,
)


def test_names_cover_the_zoo():
    assert set(models.names()) == set(TINY)


def one_step(model, num_classes=3, batch=4, seed=0):
    """One eager SGD step on random data: loss finite, every trainable variable gets a gradient."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape[1:])).astype("float32")
    y = np.arange(batch) % num_classes
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = loss_fn(y, probs)
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    keras.optimizers.SGD(0.1).apply(grads, model.trainable_variables)
    changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    assert changed == len(before)
    return probs.numpy(), float(loss)


@pytest.mark.parametrize("name", sorted(TINY))
def test_fp32_model_builds_and_trains_one_step(name):
    shape, options = TINY[name]
    model = models.build(name, shape, 3, **options)
    assert model.input_shape == (None, *shape) and model.output_shape == (None, 3)
    assert model.name == name  # fp32: the plain Keras model, no AM layers anywhere
    heavy = [l for l in model.layers if isinstance(l, HEAVY)]
    assert heavy and all(type(l).__module__.startswith("keras.") for l in heavy)
    probs, loss = one_step(model)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(loss)


@pytest.mark.parametrize("name", sorted(TINY))
def test_am_model_replaces_every_heavy_layer_and_trains(name):
    from approxtrain import layers as am

    shape, options = TINY[name]
    keras.utils.set_random_seed(5)
    native = models.build(name, shape, 3, **options)
    keras.utils.set_random_seed(5)
    model = models.build(name, shape, 3, multiplier="mbm7", **options)
    # Same seed, same initial weights: a comparison's runs start from one point.
    for a, b in zip(native.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    heavy = [type(l).__name__ for l in native.layers if isinstance(l, HEAVY)]
    am_layers = [l for l in model.layers if isinstance(l, am.AMLayer)]
    assert [type(l).__name__ for l in am_layers] == ["AM" + h for h in heavy]
    assert all(l.get_config()["multiplier"] == "mbm7" for l in am_layers)
    assert model.count_params() == native.count_params()
    one_step(model)


def test_gradient_multipliers_alone_select_am_layers():
    from approxtrain import layers as am

    model = models.build("lenet300100", (12, 12, 1), 3, grad_input_multiplier="bf16")
    dense = [l for l in model.layers if isinstance(l, am.AMLayer)]
    assert len(dense) == 3
    assert dense[0].get_config()["multiplier"] == "fp32"
    assert dense[0].get_config()["grad_input_multiplier"] == "bf16"


def test_am_model_is_the_plain_model_substituted():
    from approxtrain import multipliers

    bf16 = multipliers.get("bf16")  # a Multiplier is read as everywhere else, like its name
    keras.utils.set_random_seed(2)
    plain = models.build("lenet5", (12, 12, 1), 3)
    keras.utils.set_random_seed(2)
    model = models.build("lenet5", (12, 12, 1), 3, multiplier=bf16)
    assert model.name == "lenet5_bf16"
    am_layers = [l for l in model.layers if hasattr(l, "multiplier")]
    assert [l.name for l in am_layers] == ["conv1", "conv2", "fc1", "fc2", "logits"]  # the plain model's names
    assert all(l.multiplier is bf16 for l in am_layers)
    for a, b in zip(plain.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="grad_weight_multiplier: unknown multiplier 'nope'"):
        models.build("lenet5", (12, 12, 1), 3, grad_weight_multiplier="nope")
    with pytest.raises(TypeError, match="multiplier: multiplier must be a name, 'fp32' or a Multiplier, got float"):
        models.build("lenet5", (12, 12, 1), 3, multiplier=1.0)


def test_am_model_draws_the_dropout_masks_of_the_plain_one():
    # Forward products fp32 (only the gradients are AM): with the same seed, a training-mode
    # pass differs from the plain model's only if a dropout mask does.
    shape, options = TINY["transformer"]
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
    outputs = []
    for kw in ({}, {"grad_input_multiplier": "bf16"}):
        keras.utils.set_random_seed(4)
        model = models.build("transformer", shape, 3, dropout=0.5, **kw)
        outputs.append(model(x, training=True).numpy())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-7)


def test_lenet_shapes_follow_the_papers():
    assert models.build("lenet300100", (28, 28, 1), 10).count_params() == 266_610
    assert models.build("lenet5", (28, 28, 1), 10).count_params() == 61_706


def test_resnet_depths():
    def convs(model):
        return sum(isinstance(l, keras.layers.Conv2D) for l in model.layers)

    # 6n+2 weighted layers = stem conv + 6n convs + dense; plus 2 projection shortcuts.
    assert convs(models.build("resnet20", (8, 8, 3), 10, width=2)) == 19 + 2
    assert convs(models.build("resnet56", (8, 8, 3), 10, width=2)) == 55 + 2
    # ResNet-50 on ImageNet: 25.6 M parameters (He et al.).
    assert round(models.build("resnet50", (224, 224, 3), 1000).count_params() / 1e5) == 256


def test_stem_choice_changes_the_resolution():
    cifar = models.build("resnet18", (32, 32, 3), 10, width=2, stem="cifar")
    imagenet = models.build("resnet18", (32, 32, 3), 10, width=2, stem="imagenet")

    def last(m):
        return [la for la in m.layers if isinstance(la, keras.layers.GlobalAveragePooling2D)][0].input.shape

    assert last(cifar)[1:3] == (4, 4) and last(imagenet)[1:3] == (1, 1)


def test_mobilenetv2_width_multiplier_and_depthwise():
    full = models.build("mobilenetv2", (224, 224, 3), 1000)
    assert round(full.count_params() / 1e5) == 35  # 3.5 M in the paper
    half = models.build("mobilenetv2", (32, 32, 3), 10, alpha=0.5)
    assert sum(isinstance(l, keras.layers.DepthwiseConv2D) for l in half.layers) == 17
    assert half.count_params() < models.build("mobilenetv2", (32, 32, 3), 10).count_params() / 2


def test_transformer_on_token_sequences():
    model = models.build("transformer", (6,), 2, vocab_size=20, dim=8, depth=1, num_heads=2)
    assert model.input.dtype == "int32"
    out = model(np.array([[1, 2, 3, 4, 5, 6]]))
    assert out.shape == (1, 2)
    with pytest.raises(ValueError, match="needs vocab_size"):
        models.build("transformer", (6,), 2)
    with pytest.raises(ValueError, match="not a multiple of patch_size 3"):
        models.build("transformer", (8, 8, 1), 2, patch_size=3)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'vgg16'; known models: lenet300100, lenet5"):
        models.build("vgg16", (28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"no option\(s\) widht"):
        models.build("resnet20", (32, 32, 3), 10, widht=8)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        models.build("lenet5", (28, 28, 1), 1)
    with pytest.raises(ValueError, match="at least 12x12"):
        models.build("lenet5", (8, 8, 1), 10)
    with pytest.raises(ValueError, match="stem must be"):
        models.build("resnet18", (32, 32, 3), 10, stem="tiny")
    with pytest.raises(ValueError, match="multiplier must be a multiplier name"):
        models.build("lenet5", (28, 28, 1), 10, multiplier=None)
