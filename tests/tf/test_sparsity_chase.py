"""Chase: density at target after every prune-and-grow, channels removed as scheduled; export_slim."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import models  # noqa: E402
from approxtrain import sparsity  # noqa: E402
from approxtrain.train import loop  # noqa: E402


def data(shape, n=64, batch=16, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


class Watch(keras.callbacks.Callback):
    """After every step (and so after every update Chase made at it): masks, channels, weights."""

    def __init__(self, chase):
        super().__init__()
        self.chase, self.seen = chase, {}

    def on_train_batch_end(self, batch, logs=None):
        c = self.chase
        self.seen[c.step] = {
            "active": [int(m.sum()) for m in c.mask_values()],
            "removed": [None if cm is None else int((cm.numpy() == 0).sum()) for cm in c.channel_masks],
            "masks": c.mask_values(),
            "kernels": c.kernel_values(),
            "biases": [None if t.bias is None else keras.ops.convert_to_numpy(t.bias) for t in c.targets],
        }


@pytest.mark.parametrize("multiplier", ["fp32", "mbm7"])
def test_chase_keeps_density_and_removes_channels_as_scheduled(multiplier):
    keras.utils.set_random_seed(0)
    model = models.build("lenet5", (16, 16, 1), 10, multiplier=multiplier)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(0.8, channel_sparsity=0.5, update_every=2, end=8, seed=4)
    watch = Watch(chase)
    loop.fit(model, data((16, 16, 1)), epochs=3, callbacks=[chase, watch])  # 12 steps, updates after 2, 4, 6, 8
    sizes = [m.size for m in chase.mask_values()]
    counts = [round(0.2 * n) for n in sizes]
    assert chase.counts == counts
    channels = [int(t.kernel.shape[-1]) for t in chase.targets]
    for step, seen in watch.seen.items():
        # The density stays at its target (every kernel here has room for its count in its live channels).
        assert seen["active"] == counts, step
        c_t = 0.5 * (1 - (1 - min(step, 8) / 8) ** 3)
        want_removed = [round(c_t * n) if step in (2, 4, 6, 8) or step > 8 else None for n in channels]
        for i, (removed, want) in enumerate(zip(seen["removed"], want_removed)):
            if i == len(channels) - 1:
                assert removed is None  # the output layer keeps its classes
            elif want is not None:
                assert removed == want, (step, i)
        for mask, kernel in zip(seen["masks"], seen["kernels"]):
            assert np.all(kernel[mask == 0] == 0.0)
    # The removed count only grows, and reaches round(0.5 * channels) at the end step.
    assert watch.seen[8]["removed"][:-1] == [round(0.5 * n) for n in channels[:-1]]
    assert watch.seen[12]["removed"] == watch.seen[8]["removed"]
    # Removed channels: kernel slice and bias exactly 0, no active weight.
    for cm, mask, kernel, bias in zip(
        chase.channel_masks, *(watch.seen[12][k] for k in ("masks", "kernels", "biases"))
    ):
        if cm is None:
            continue
        dead = cm.numpy() == 0
        assert np.all(mask[..., dead] == 0) and np.all(kernel[..., dead] == 0) and np.all(bias[dead] == 0)
    # Prune and grow moved weights: the mask after step 2 differs from the random start.
    assert any(np.any(a != b) for a, b in zip(watch.seen[1]["masks"], watch.seen[2]["masks"]))
    report = sparsity.sparsity_report(model)
    assert report["weight_sparsity"] >= 0.8 - 1e-9
    assert report["channel_sparsity"] == pytest.approx(sum(round(0.5 * n) for n in channels[:-1]) / sum(channels[:-1]))


def test_channels_removed_are_those_of_lowest_unmasked_mean_magnitude():
    live = tf.Variable(np.ones(4, np.float32))
    magnitude = np.array([[1.0, 5.0, 0.2, 9.0], [3.0, 5.0, 0.4, 9.0]])
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], np.float32)  # means: 1.0, 5.0, 0.3, 9.0
    magnitude[0, 3] = 0.0  # an inactive weight's value does not count
    assert list(sparsity.Chase._remove_channels(live, magnitude, mask, 0.5)) == [0, 1, 0, 1]
    # Already removed channels stay removed; the next lowest goes.
    assert list(sparsity.Chase._remove_channels(live, magnitude, mask, 0.75)) == [0, 0, 0, 1]


def test_erk_densities_keep_the_total_and_cap_at_one():
    shapes = [(5, 5, 1, 6), (5, 5, 6, 16), (400, 120), (120, 84), (84, 10)]
    densities = sparsity.erk_densities(shapes, 0.1)
    sizes = [np.prod(s) for s in shapes]
    assert sum(d * n for d, n in zip(densities, sizes)) == pytest.approx(0.1 * sum(sizes))
    assert max(densities) <= 1.0 and densities[0] > densities[2]  # small kernels stay denser


def test_chase_refuses_model_fit_at_its_first_update():
    keras.utils.set_random_seed(0)
    model = models.build("lenet300100", (8, 8, 1), 10)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    chase = sparsity.Chase(0.5, update_every=2, end=4)
    with pytest.raises(RuntimeError, match="only approxtrain.train.loop.fit records"):
        model.fit(data((8, 8, 1)), epochs=1, verbose=0, callbacks=[chase])


@pytest.mark.parametrize("name, shape", [("lenet5", (16, 16, 1)), ("lenet300100", (8, 8, 1))])
def test_export_slim_gives_a_smaller_model_with_equal_outputs(name, shape):
    keras.utils.set_random_seed(1)
    model = models.build(name, shape, 10, multiplier="mbm7")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(0.7, channel_sparsity=0.4, update_every=2, end=4, seed=0)
    loop.fit(model, data(shape), epochs=1, callbacks=[chase])
    slim = sparsity.export_slim(model)
    x = np.random.default_rng(3).uniform(0, 1, size=(8, *shape)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(slim(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)
    removed = [int((cm.numpy() == 0).sum()) for cm in chase.channel_masks if cm is not None]
    heavy = [layer for layer in slim.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    original = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    widths = [int(layer.kernel.shape[-1]) for layer in heavy]
    assert widths == [int(o.kernel.shape[-1]) - r for o, r in zip(original, removed + [0])]
    assert slim.count_params() < model.count_params()
    assert type(heavy[0]).__name__ == ("AMConv2D" if name == "lenet5" else "AMDense")


def test_export_slim_refuses_graphs_it_cannot_shrink():
    inputs = keras.Input((8,))
    a = keras.layers.Dense(4, name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="add")([a, keras.layers.Dense(4, name="b")(inputs)]), name="two")
    with pytest.raises(sparsity.SlimError) as e:
        sparsity.export_slim(model)
    assert str(e.value) == (
        "'two' is not a plain chain: layer 'b' does not take the previous layer's output "
        "(a branch, skip connection or merge)"
    )
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(sparsity.SlimError, match="cannot shrink through layer 'bn' \\(BatchNormalization\\)"):
        sparsity.export_slim(model)


def test_chase_erk_start_keeps_the_total_density():
    keras.utils.set_random_seed(0)
    model = models.build("lenet5", (16, 16, 1), 10)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(0.9, distribution="erk", end=10, seed=1)
    chase.attach(model)
    chase.on_train_begin()
    masks = chase.mask_values()
    sizes = [m.size for m in masks]
    assert [int(m.sum()) for m in masks] == chase.counts
    assert abs(sum(chase.counts) - 0.1 * sum(sizes)) <= len(sizes)  # rounding per kernel
    assert chase.counts[0] / sizes[0] > chase.counts[2] / sizes[2]  # conv1 (150 weights) denser than fc1
    for kernel, mask in zip(chase.kernel_values(), masks):
        assert np.all(kernel[mask == 0] == 0) and np.all(kernel[mask == 1] != 0)
