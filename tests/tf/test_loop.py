"""approxtrain.train.loop: the training loop on tf.distribute that `train` uses instead of Keras' fit."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from approxtrain.train import loop  # noqa: E402
from approxtrain.train.strategy import mirrored_strategy  # noqa: E402


class HookLog(keras.callbacks.Callback):
    """Every standard training hook Keras calls, in order, with its index and logs."""

    def __init__(self):
        super().__init__()
        self.events = []

    def _record(self, name, index=None, logs=None):
        self.events.append((name, index, dict(logs or {})))

    def on_train_begin(self, logs=None):
        self._record("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self._record("epoch_begin", epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._record("batch_begin", batch)

    def on_train_batch_end(self, batch, logs=None):
        self._record("batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._record("epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        self._record("train_end")


def dense_model(first=None):
    inputs = keras.Input((4,))
    y = (first or keras.layers.Dense(3, activation="tanh", name="first"))(inputs)
    y = keras.layers.Dense(2, name="out")(y)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(y))


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def examples(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 2, n).astype(np.int32)


def test_loop_calls_the_hooks_fit_calls_with_the_same_logs_and_weights():
    x, y = examples()
    keras.utils.set_random_seed(1)
    reference = compiled(dense_model())
    initial = reference.get_weights()
    fit_log = HookLog()
    reference.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[fit_log])

    model = compiled(dense_model())
    model.set_weights(initial)
    loop_log = HookLog()
    history = loop.fit(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, callbacks=[loop_log])

    assert [(name, index) for name, index, _ in loop_log.events] == [(n, i) for n, i, _ in fit_log.events]
    assert len(loop_log.events) == 2 + 2 * (2 + 2 * 4)
    for (name, _, got), (_, _, want) in zip(loop_log.events, fit_log.events):
        if name in ("batch_end", "epoch_end"):
            assert sorted(got) == sorted(want) == ["accuracy", "loss"], name
            for key in want:
                assert got[key] == pytest.approx(float(want[key]), rel=1e-6), (name, key)
    assert history.history["loss"] == pytest.approx(reference.history.history["loss"], rel=1e-6)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert int(model.optimizer.iterations.numpy()) == 8


def test_non_finite_loss_names_epoch_step_and_first_layer():
    x, y = examples()
    x[20] = 3e38  # in the third batch of 8: the first layer's sums overflow to inf
    first = keras.layers.Dense(3, kernel_initializer="ones", name="first")
    model = compiled(dense_model(first))
    log = HookLog()
    with pytest.raises(loop.NonFiniteLoss) as caught:
        loop.fit(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, callbacks=[log])
    error = caught.value
    assert (error.epoch, error.step, error.layer) == (1, 3, "'first' (Dense)")
    assert str(error) == (
        f"the loss became {error.loss} at epoch 1, step 3 (first non-finite output: layer 'first' (Dense))"
    )
    assert not np.isfinite(error.loss)
    assert [i for name, i, _ in log.events if name == "batch_end"] == [0, 1]  # stopped at the bad step


def test_row_dropout_layers_are_not_probed_so_their_spread_output_is_never_computed():
    # A row-dropout layer hands its kept units to the next Dense; probing its full-width output
    # would compute that spread every step. The layers after it are still probed.
    from approxtrain import models

    model = compiled(models.build("lenet300100", (28, 28, 1), 10, "mbm7", approx_dropout="row", dropout_rate=0.5))
    probed = [layer.name for layer in loop._Steps(model, tf.distribute.get_strategy()).layers]
    dropped = [layer.name for layer in model.layers if isinstance(layer, am.ApproxDropoutDense)]
    assert len(dropped) == 2
    others = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert probed == [name for name in others if name not in dropped]


def test_loop_under_mirrored_strategy_matches_one_device(bf16):
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(cpus) >= 2, f"tests/tf/conftest.py should configure two logical CPUs, found {cpus}"
    x, y = examples(seed=2)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def am_model():
        return compiled(dense_model(am.AMDense(3, activation="tanh", multiplier=bf16, name="first")))

    keras.utils.set_random_seed(4)
    single = am_model()
    initial = single.get_weights()
    want = loop.fit(single, dataset, epochs=1).history["loss"]

    strategy = mirrored_strategy(cpus[:2])
    with strategy.scope():
        mirrored = am_model()
        mirrored.set_weights(initial)
    got = loop.fit(mirrored, dataset, epochs=1, strategy=strategy).history["loss"]
    assert strategy.num_replicas_in_sync == 2
    # Each replica sums its half batch and the replicas' gradients are added: the same
    # products in another summation order, so close but not bit-identical.
    assert got == pytest.approx(want, rel=1e-5)
    for g, w in zip(mirrored.get_weights(), single.get_weights()):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    assert any(np.any(w != w0) for w, w0 in zip(single.get_weights(), initial))
    assert loop.evaluate(mirrored, dataset, strategy)["loss"] == pytest.approx(
        loop.evaluate(single, dataset)["loss"], rel=1e-4
    )
