"""Chase: density at target after every prune-and-grow, channels removed as scheduled; export_slim."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import models  # noqa: E402
from approxtrain import sparsity  # noqa: E402
from approxtrain.sparsity import chase as chase_module  # noqa: E402
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
    chase = sparsity.Chase(
        0.8, channel_sparsity=0.5, update_every=2, end=8, seed=4, channel_scope="layer", distribution="uniform"
    )
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


def test_global_channel_removal_reaches_the_total_and_keeps_the_floors():
    keras.utils.set_random_seed(0)
    model = models.build("lenet5", (16, 16, 1), 10)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(0.8, channel_sparsity=0.5, update_every=2, end=8, seed=4, min_channels=0.5)
    watch = Watch(chase)
    loop.fit(model, data((16, 16, 1)), epochs=3, callbacks=[chase, watch])  # updates after 2, 4, 6, 8
    channels = [int(t.kernel.shape[-1]) for t in chase.targets][:-1]
    floors = [max(1, int(0.25 * n)) for n in channels]
    for step in (2, 4, 6, 8, 12):
        c_t = 0.5 * (1 - (1 - min(step, 8) / 8) ** 3)
        removed = watch.seen[step]["removed"][:-1]
        assert sum(removed) == round(c_t * sum(channels)), step
        assert all(n - r >= f for n, r, f in zip(channels, removed, floors)), step
        for mask, kernel in zip(watch.seen[step]["masks"], watch.seen[step]["kernels"]):
            assert np.all(kernel[mask == 0] == 0.0)
    report = sparsity.sparsity_report(model)
    assert report["channel_sparsity"] == pytest.approx(round(0.5 * sum(channels)) / sum(channels))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channel_score": "l1"}, "channel_score must be one of umm, active_mean, got 'l1'"),
        ({"channel_scope": "net"}, "channel_scope must be one of global, layer, got 'net'"),
        ({"min_channels": 1.5}, "min_channels must be a fraction in [0, 1], got 1.5"),
        ({"exploration": "both"}, "exploration must be one of layer, global, got 'both'"),
    ],
)
def test_bad_chase_channel_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError) as e:
        sparsity.Chase(0.9, channel_sparsity=0.3, **kwargs)
    assert str(e.value) == message


def test_channel_scores_are_the_unmasked_and_the_active_mean_magnitude():
    magnitude = np.array([[1.0, -5.0, 0.25, 9.0], [3.0, 5.0, 0.5, 9.0]])
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], np.float32)
    magnitude[0, 3] = 0.0  # a pruned weight is 0
    # UMM: sum of |w| over active weights / all weights of the channel (2 here).
    assert list(chase_module.channel_scores(magnitude, mask, "umm")) == [0.5, 5.0, 0.375, 4.5]
    assert list(chase_module.channel_scores(magnitude, mask, "active_mean")) == [1.0, 5.0, 0.375, 9.0]
    # A channel without active weights scores 0 under both.
    assert chase_module.channel_scores(magnitude, np.zeros_like(mask), "active_mean").tolist() == [0.0] * 4
    # A conv kernel's output channel is its last axis: (kh, kw, in, out).
    kernel = np.arange(2 * 2 * 3 * 2, dtype=np.float64).reshape(2, 2, 3, 2)
    ones = np.ones_like(kernel, np.float32)
    assert chase_module.channel_scores(kernel, ones, "umm").tolist() == [kernel[..., 0].mean(), kernel[..., 1].mean()]
    with pytest.raises(ValueError) as e:
        chase_module.channel_scores(kernel, ones, "l2")
    assert str(e.value) == "channel_score must be one of umm, active_mean, got 'l2'"


def test_channels_removed_per_layer_are_those_of_lowest_score():
    scores = [np.array([0.5, 5.0, 0.375, 4.5])]
    live = chase_module.remove_channels(scores, [np.ones(4)], [2])
    assert live[0].tolist() == [0, 1, 0, 1]
    # Already removed channels stay removed; the next lowest goes.
    assert chase_module.remove_channels(scores, live, [3])[0].tolist() == [0, 1, 0, 0]
    # Fewer wanted than already removed: nothing comes back.
    assert chase_module.remove_channels(scores, live, [1])[0].tolist() == [0, 1, 0, 1]


def test_global_channel_removal_ranks_all_layers_and_stops_at_each_floor():
    scores = [np.array([0.1, 0.2, 0.9]), np.array([0.3, 0.05, 0.15, 0.4, 0.8])]
    live = [np.ones(3), np.ones(5)]
    # Lowest first: b1 0.05, a0 0.1, b2 0.15, a1 0.2 (layer a at its floor 2: kept), b0 0.3.
    new = chase_module.remove_channels(scores, live, 4, floors=[2, 1])
    assert [v.tolist() for v in new] == [[0, 1, 1], [0, 0, 0, 1, 1]]
    # A later, larger target continues from there: b3 0.4 next (a1 still at its floor).
    new = chase_module.remove_channels(scores, new, 5, floors=[2, 1])
    assert [v.tolist() for v in new] == [[0, 1, 1], [0, 0, 0, 0, 1]]
    # Floors that leave too little: as many as the floors allow, no more.
    new = chase_module.remove_channels(scores, live, 8, floors=[1, 1])
    assert [v.tolist() for v in new] == [[0, 0, 1], [0, 0, 0, 0, 1]]
    # Ties go to the earlier layer, then the lower index.
    tied = chase_module.remove_channels([np.array([1.0, 1.0]), np.array([1.0])], [np.ones(2), np.ones(1)], 2, [0, 0])
    assert [v.tolist() for v in tied] == [[0, 0], [1]]


def test_channel_floors_are_beta_times_the_kept_share_of_each_layer():
    # LeNet-5's removable layers, 30 % channel sparsity, beta 0.5: floor(0.35 n), at least 1.
    assert chase_module.channel_floors([6, 16, 120, 84], 0.3, 0.5) == [2, 5, 42, 29]
    assert chase_module.channel_floors([6, 16, 120, 84], 0.3, 0.2) == [1, 2, 16, 11]
    assert chase_module.channel_floors([2, 10], 0.9, 0.5) == [1, 1]
    assert chase_module.channel_floors([10], 0.3, 1.0) == [7]


def test_drop_fraction_follows_rigls_cosine_decay_exactly():
    # f_t = drop_fraction / 2 (1 + cos(pi t / end)): the full fraction at 0, half at end / 2,
    # 0 at end and after it.
    assert sparsity.cosine_fraction(0, 400, 0.3) == 0.3
    assert sparsity.cosine_fraction(200, 400, 0.3) == 0.15
    assert sparsity.cosine_fraction(400, 400, 0.3) == 0.0
    assert sparsity.cosine_fraction(1000, 400, 0.3) == 0.0
    # A quarter and three quarters of the way: 0.5 / 2 (1 +- sqrt(1/2)), to the last bit or so.
    assert sparsity.cosine_fraction(100, 400, 0.5) == pytest.approx(0.25 * (1 + np.sqrt(0.5)), abs=1e-16)
    assert sparsity.cosine_fraction(300, 400, 0.5) == pytest.approx(0.25 * (1 - np.sqrt(0.5)), abs=1e-16)
    # The same as the half-angle form drop_fraction * cos^2(pi t / (2 end)) at every step.
    for step in range(0, 401, 7):
        assert sparsity.cosine_fraction(step, 400, 0.3) == pytest.approx(
            0.3 * np.cos(np.pi * step / 800) ** 2, abs=1e-15
        )


def test_prune_and_grow_drops_smallest_magnitudes_and_grows_largest_gradients():
    magnitude = np.array([0.5, 0.1, 0.3, 0.0, 0.0, 0.2])
    gradient = np.array([0.0, 0.0, 0.0, 0.9, 0.4, 0.0])
    mask = np.array([1, 1, 1, 0, 0, 1], np.float32)
    everywhere = np.ones(6, bool)
    # Half of 4 active: 0.1 and 0.2 dropped; the two largest gradients grown.
    new, grown = chase_module.prune_and_grow(magnitude, gradient, mask, everywhere, 0.5, 4)
    assert new.tolist() == [1, 0, 1, 1, 1, 0] and grown.tolist() == [0, 0, 0, 1, 1, 0]
    # Position 3 not allowed (a removed channel): the next best, a tie at 0, goes to the lower
    # index, which may be a weight just dropped (RigL allows it; it restarts from 0).
    allowed = np.array([1, 1, 1, 0, 1, 1], bool)
    new, grown = chase_module.prune_and_grow(magnitude, gradient, mask, allowed, 0.5, 4)
    assert new.tolist() == [1, 1, 1, 0, 1, 0] and grown.tolist() == [0, 1, 0, 0, 1, 0]
    # Fewer allowed positions than the count (the caller masks the disallowed out first): all of
    # them, no more; the one dropped is the only place to grow.
    allowed = np.array([1, 0, 1, 0, 0, 0], bool)
    new, grown = chase_module.prune_and_grow(magnitude, gradient, mask * allowed, allowed, 0.5, 4)
    assert new.tolist() == [1, 0, 1, 0, 0, 0] and grown.tolist() == [0, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("exploration", ["layer", "global"])
def test_global_exploration_moves_weights_between_kernels_keeping_the_total(exploration):
    keras.utils.set_random_seed(0)
    model = models.build("lenet300100", (8, 8, 1), 10)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(
        0.8, update_every=2, end=8, drop_fraction=0.4, seed=3, exploration=exploration, distribution="uniform"
    )
    chase.attach(model)
    chase.on_train_begin()
    before = chase.mask_values()
    # fc1's active weights tiny, the others' large; only fc2's inactive weights have gradients.
    for target, mask, scale, grad in zip(chase.targets, before, (1e-3, 1.0, 1.0), (0.0, 1.0, 0.0)):
        target.kernel.assign(mask * scale)
        chase._gradients[id(target.kernel)].assign((1.0 - mask) * grad)
    chase.update(2)
    after = [int(m.sum()) for m in chase.mask_values()]
    fraction = 0.2 * (1 + np.cos(np.pi * 2 / 8))
    if exploration == "layer":
        assert after == chase.counts
    else:  # all the drops from fc1 (smallest |w| overall), all the growth in fc2
        dropped = int(round(fraction * sum(chase.counts)))
        assert dropped < chase.counts[0]
        assert after == [chase.counts[0] - dropped, chase.counts[1] + dropped, chase.counts[2]]


def test_each_update_drops_the_cosine_share_of_active_weights():
    keras.utils.set_random_seed(0)
    model = models.build("lenet300100", (8, 8, 1), 10)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy())
    chase = sparsity.Chase(0.8, update_every=2, end=8, drop_fraction=0.4, seed=3, distribution="uniform")
    chase.attach(model)
    chase.on_train_begin()
    for step in (2, 4, 6, 8):
        before = chase.mask_values()
        # Large gradients on every inactive weight, none on active ones: the dropped weights are
        # not regrown at once, so the ones that flip 1 -> 0 are exactly the dropped ones.
        for target, mask in zip(chase.targets, before):
            chase._gradients[id(target.kernel)].assign(1.0 - mask)
        chase.update(step)
        after = chase.mask_values()
        fraction = 0.2 * (1 + np.cos(np.pi * step / 8))
        for count, old, new in zip(chase.counts, before, after):
            assert int(((old == 1) & (new == 0)).sum()) == int(round(fraction * count)), step
            assert int(new.sum()) == count
    # At the end step the share is 0: nothing moves.
    assert fraction == 0.0


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
