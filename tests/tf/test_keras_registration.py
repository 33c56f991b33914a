"""`import approxtrain` alone lets Keras load .keras files with AM layers, in any import order."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from approxtrain.layers import AMConv2D, AMDense

LOAD = """
{imports}
import sys
import numpy as np
model = keras.models.load_model(sys.argv[1])
print(",".join(type(layer).__name__ for layer in model.layers))
np.save(sys.argv[2], model(np.load(sys.argv[3])).numpy())
assert "approxtrain.layers" in sys.modules
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_registration")
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            AMConv2D(3, 3, multiplier="mbm7"),
            keras.layers.Flatten(),
            AMDense(4, multiplier="mbm7"),
        ]
    )
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    model.save(folder / "m.keras")
    np.save(folder / "x.npy", x)
    return folder, model(x).numpy()


@pytest.mark.parametrize(
    "imports",
    [
        "import approxtrain\nimport keras",
        "import approxtrain\nimport tensorflow\nimport keras",
        # approxtrain.quant imports TensorFlow itself: the layers wait until it has finished
        "from approxtrain.quant import QuantConfig\nimport keras",
    ],
    ids=["approxtrain-then-keras", "approxtrain-then-tensorflow", "through-approxtrain-quant"],
)
def test_load_after_import_approxtrain(saved, imports, tmp_path):
    folder, expected = saved
    script = LOAD.format(imports=imports)
    out = tmp_path / "y.npy"
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::UserWarning",
            "-c",
            script,
            str(folder / "m.keras"),
            str(out),
            str(folder / "x.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "AMConv2D,Flatten,AMDense"
    np.testing.assert_array_equal(np.load(out), expected)


def test_import_approxtrain_leaves_tensorflow_alone():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, approxtrain; print('tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "False"]
