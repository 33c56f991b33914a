"""AM layers under tf.distribute.MirroredStrategy on two logical CPU devices.

tests/tf/conftest.py splits the CPU into logical devices before TensorFlow starts.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from approxtrain.train.strategy import mirrored_strategy  # noqa: E402  (one per process, see there)
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from _compare import BF16  # noqa: E402


@pytest.fixture(scope="module")
def two_cpus():
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(cpus) >= 2, f"tests/tf/conftest.py should configure two logical CPUs, found {cpus}"
    return cpus[:2]


def small_model():
    inputs = keras.Input((6, 6, 2))
    y = am.AMConv2D(3, 3, activation="relu", multiplier=BF16)(inputs)
    y = am.AMDepthwiseConv2D(2, multiplier=BF16)(y)
    y = keras.layers.Reshape((9, 3))(y)
    y = am.AMMultiHeadAttention(2, 2, multiplier=BF16)(y, y)
    y = am.AMConv1D(2, 2, multiplier=BF16)(y)
    outputs = am.AMDense(2, multiplier=BF16)(keras.layers.Flatten()(y))
    return keras.Model(inputs, outputs)


def one_sgd_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return [w.numpy() for w in model.trainable_weights]


def test_mirrored_step_matches_single_device_step(two_cpus):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    keras.utils.set_random_seed(1)
    single = small_model()
    initial = single.get_weights()
    want = one_sgd_step(single, x, y)

    strategy = mirrored_strategy(two_cpus)
    with strategy.scope():
        mirrored = small_model()
        mirrored.set_weights(initial)
    assert mirrored.distribute_strategy is strategy and strategy.num_replicas_in_sync == 2
    got = one_sgd_step(mirrored, x, y)
    # Each replica sums its half batch, then the replicas' gradients are added: the same
    # products in another summation order, so close but not bit-identical.
    assert len(got) == len(want) == len(initial)  # no non-trainable weights in this model
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert any(np.any(w != w0) for w, w0 in zip(want, initial))  # the step did train


def test_mirrored_fit_several_steps(two_cpus):
    strategy = mirrored_strategy(two_cpus)
    with strategy.scope():
        model = small_model()
        model.compile(optimizer="adam", loss="mse")  # jit_compile="auto": no XLA with AM layers
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((16, 6, 6, 2)), rng.standard_normal((16, 2))
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
