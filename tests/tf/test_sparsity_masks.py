"""Masks keep pruned weights exactly 0; schedules and thresholds against NumPy."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from approxtrain import sparsity  # noqa: E402
from approxtrain.train import loop  # noqa: E402


def small_model(multiplier, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    if multiplier == "fp32":
        x = keras.layers.Dense(24, activation="relu", name="fc1")(inputs)
        x = keras.layers.Dense(16, activation="relu", name="fc2")(x)
    else:
        x = am.AMDense(24, activation="relu", multiplier=multiplier, name="fc1")(inputs)
        x = am.AMDense(16, activation="relu", multiplier=multiplier, name="fc2")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs)


def small_data(n=96, batch=16, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = (np.abs(x[:, :4]).argmax(axis=1)).astype(np.int64)
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
}


class PrunedStayZero(keras.callbacks.Callback):
    """After every step: each weight its mask prunes is exactly 0; counts steps that had some."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning, self.checked, self.moved = pruning, 0, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.before = self.pruning.kernel_values()

    def on_train_batch_end(self, batch, logs=None):
        for kernel, mask, before in zip(self.pruning.kernel_values(), self.pruning.mask_values(), self.before):
            pruned = mask == 0
            if pruned.any():
                assert np.all(kernel[pruned] == 0.0)
                self.checked += 1
            self.moved += int(np.any(kernel[~pruned] != before[~pruned]))


@pytest.mark.parametrize("multiplier", ["fp32", "mbm7"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_in_the_loop(multiplier, optimizer):
    model = small_model(multiplier)
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss=keras.losses.SparseCategoricalCrossentropy())
    # Pruning after step 3 and 6: momenta and Adam moments of the pruned weights are not 0 then.
    pruning = sparsity.MagnitudePruning(0.6, schedule="gradual", start=0, end=6, every=3)
    check = PrunedStayZero(pruning)
    _, _, data = small_data()
    loop.fit(model, data, epochs=3, callbacks=[pruning, check])
    assert pruning.step == 18
    assert check.checked >= 12 * 3 and check.moved > 0  # the other weights did train
    for kernel, mask in zip(pruning.kernel_values(), pruning.mask_values()):
        assert (mask == 0).sum() == round(0.6 * mask.size)
        np.testing.assert_array_equal(kernel[mask == 0], 0.0)
    # Masked gradients: the optimizer's slots of pruned weights are exactly 0 too.
    for target, mask in zip(pruning.targets, pruning.mask_values()):
        prefix = target.kernel.path.replace("/", "_") + "_"
        slots = [v for v in model.optimizer.variables if v.name.startswith(prefix)]
        assert slots
        for slot in slots:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(slot)[mask == 0], 0.0)


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adamw"])
def test_pruned_weights_stay_exactly_zero_under_model_fit(optimizer):
    model = small_model("mbm7")
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="sparse_categorical_crossentropy")
    pruning = sparsity.MagnitudePruning(0.5, schedule="oneshot", start=2)
    check = PrunedStayZero(pruning)
    x, y, _ = small_data()
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[pruning, check])
    assert pruning.step == 12 and check.checked >= 10 * 3
    for kernel, mask in zip(pruning.kernel_values(), pruning.mask_values()):
        assert (mask == 0).sum() == round(0.5 * mask.size)
        np.testing.assert_array_equal(kernel[mask == 0], 0.0)


def test_gradual_schedule_follows_the_cubic_formula_and_reaches_its_target_at_end():
    target, start, end, every = 0.9, 10, 70, 20
    pruning = sparsity.MagnitudePruning(target, start=start, end=end, every=every)
    for step in range(100):
        want = (
            0.0 if step < start else target + (0.0 - target) * (1 - min(step - start, end - start) / (end - start)) ** 3
        )
        assert pruning.sparsity_at(step) == pytest.approx(want, abs=1e-12)
    assert pruning.sparsity_at(end) == target
    assert [s for s in range(100) if pruning.is_update_step(s)] == [10, 30, 50, 70]
    # An end that is not on the `every` grid is still an update step.
    assert [s for s in range(60) if sparsity.MagnitudePruning(0.5, start=0, end=25, every=10).is_update_step(s)] == [
        0, 10, 20, 25,
    ]  # fmt: skip


def test_gradual_pruning_reaches_the_target_exactly_at_the_end_step():
    model = small_model("fp32")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy())
    pruning = sparsity.MagnitudePruning(0.8, start=2, end=10, every=4)
    achieved = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            masks = pruning.mask_values()
            achieved[pruning.step] = sum((m == 0).sum() for m in masks) / sum(m.size for m in masks)

    _, _, data = small_data()
    loop.fit(model, data, epochs=2, callbacks=[pruning, Record()])
    sizes = [m.size for m in pruning.mask_values()]
    for step in (2, 6, 10):
        s = 0.8 + (0.0 - 0.8) * (1 - (step - 2) / 8) ** 3
        assert achieved[step] == sum(round(s * n) for n in sizes) / sum(sizes)
    assert achieved[9] == achieved[6] and achieved[10] > achieved[9]
    assert [round(0.8 * n) for n in sizes] == [int((m == 0).sum()) for m in pruning.mask_values()]
    assert achieved[12] == achieved[10]  # the target is kept after the end


def test_layer_and_global_scope_thresholds_match_numpy():
    rng = np.random.default_rng(5)
    weights = [
        rng.normal(scale=s, size=shape).astype(np.float32)
        for s, shape in ((1.0, (30, 20)), (0.1, (20, 10)), (3.0, (10, 4)))
    ]
    ones = [np.ones_like(w) for w in weights]
    layer = sparsity.magnitude_masks(weights, ones, 0.7, "layer")
    for w, m in zip(weights, layer):
        k = round(0.7 * w.size)
        threshold = np.sort(np.abs(w).ravel())[k - 1]
        np.testing.assert_array_equal(m, (np.abs(w) > threshold).astype(np.float32))
    global_ = sparsity.magnitude_masks(weights, ones, 0.7, "global")
    everything = np.concatenate([np.abs(w).ravel() for w in weights])
    threshold = np.sort(everything)[round(0.7 * everything.size) - 1]
    for w, m in zip(weights, global_):
        np.testing.assert_array_equal(m, (np.abs(w) > threshold).astype(np.float32))
    # The global threshold prunes the small-scale kernel hardest, unlike the per-layer one.
    assert (global_[1] == 0).mean() > 0.95 and (global_[2] == 0).mean() < 0.3
    # Already pruned weights stay pruned even when their value is large.
    masks = [m.copy() for m in layer]
    masks[0][0, 0] = 0.0
    weights[0][0, 0] = 100.0
    assert sparsity.magnitude_masks(weights, masks, 0.8, "layer")[0][0, 0] == 0.0


def test_prunable_kernels_are_the_multiply_heavy_layers_only():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = am.AMConv2D(4, 3, multiplier="mbm7", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inputs, outputs)
    names = [t.name for t in sparsity.prunable(model)]
    assert names == [model.get_layer("conv").kernel.path, model.get_layer("dw").kernel.path,
                     model.get_layer("out").kernel.path]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": 1.5}, "target must be a fraction in [0, 1), got 1.5"),
        ({"target": 0.5, "schedule": "linear"}, "schedule must be one of gradual, oneshot, got 'linear'"),
        ({"target": 0.5, "scope": "net"}, "scope must be one of layer, global, got 'net'"),
        ({"target": 0.5, "start": 10, "end": 5}, "end must be an integer >= 10, got 5"),
        ({"target": 0.5, "end": 5, "every": 0}, "every must be an integer >= 1, got 0"),
    ],
)
def test_bad_pruning_arguments_are_named(kwargs, message):
    kwargs = {"end": 10, **kwargs}
    with pytest.raises(ValueError) as e:
        sparsity.MagnitudePruning(**kwargs)
    assert str(e.value) == message


def test_sparsity_report_counts_each_weight_at_every_output_position():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = am.AMConv2D(4, 3, padding="same", multiplier="mbm7", name="conv")(inputs)  # 8x8 outputs
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    kernel[..., 0] = 0.0  # one output channel: 27 weights, each used at 64 positions
    kernel[0, 0, 0, 1] = 0.0
    conv.set_weights([kernel, bias])
    report = sparsity.sparsity_report(model)
    macs = 108 * 64 + 256 * 2
    assert report["multiplies_skipped"] == (28 * 64) / macs
    assert report["weight_sparsity"] == 28 / (108 + 512)
    assert report["channel_sparsity"] == 1 / 4  # the last kernel (the outputs) is not counted
    assert [row["zero"] for row in report["layers"]] == [28, 0]
