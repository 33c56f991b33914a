"""CI's convergence check: an approximate multiplier trains LeNet-5 on real data.

One epoch on 12,000 Fashion-MNIST images, fp32 and mbm7 from the same initial weights (the mbm7
model is `substitute` of the fp32 one before training), evaluated on 2,000 test images.  Broken
gradients, a swapped operand or a wrong table leave a network near chance (0.10); a bypassed
table leaves the weights equal to fp32's.  Runs in well under two minutes on 2 cores.
The long version is test_convergence.py (marked slow).
"""

import numpy as np
import pytest
import keras

import approxtrain as at
from approxtrain.data import catalog
from approxtrain.data.arrays import load_arrays
from _runs import needs_fashion

FASHION = catalog.get("fashion_mnist")
pytestmark = needs_fashion

TRAIN, TEST = 12000, 2000
# Measured on this data and these settings (one epoch, test accuracy): mbm7 0.781, fp32 0.726;
# chance is 0.10. The bound leaves room for other CPUs' float reduction orders in the native ops.
MIN_ACCURACY = 0.65


@pytest.fixture(scope="module")
def data():
    arrays = load_arrays(FASHION)
    scale = np.float32(1 / 255)
    return (
        (arrays.x_train[:TRAIN].astype(np.float32) * scale, arrays.y_train[:TRAIN]),
        (arrays.x_test[:TEST].astype(np.float32) * scale, arrays.y_test[:TEST]),
    )


def _train_one_epoch(model, data):
    (x, y), (x_test, y_test) = data
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    return model.evaluate(x_test, y_test, batch_size=500, verbose=0, return_dict=True)["accuracy"]


def test_lenet5_trains_one_epoch_with_mbm7(data):
    keras.utils.set_random_seed(0)
    native = at.models.build("lenet5", input_shape=(28, 28, 1), num_classes=10)
    approximate = at.substitute(native, multiplier="mbm7")
    start = [w.copy() for w in approximate.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(start, native.get_weights()))
    assert any(type(layer).__name__.startswith("AM") for layer in approximate.layers)

    acc_mbm7 = _train_one_epoch(approximate, data)
    acc_fp32 = _train_one_epoch(native, data)
    print(f"test accuracy after one epoch: mbm7 {acc_mbm7:.4f}, fp32 {acc_fp32:.4f}")
    assert acc_mbm7 > MIN_ACCURACY, (acc_mbm7, acc_fp32)
    assert acc_fp32 > MIN_ACCURACY, (acc_mbm7, acc_fp32)
    # The approximate products changed the training trajectory: every kernel ends elsewhere.
    for layer in approximate.layers:
        if hasattr(layer, "kernel"):
            mine = layer.kernel.numpy()
            theirs = native.get_layer(layer.name).kernel.numpy()
            assert not np.array_equal(mine, theirs), layer.name
            assert np.isfinite(mine).all()
