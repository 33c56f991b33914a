"""Setup shared by every TensorFlow test.

At import -- before any test module runs a TF op -- the CPU is split into two
logical devices, so tf.distribute.MirroredStrategy tests have two replicas on
a machine without GPUs.  TF allows this only before it initialises its
devices; if something initialised TF earlier, the split is skipped and the
distribution tests say so when they find fewer than two devices.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # tests/ for amsim_reference
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    import tensorflow as tf
except ImportError:  # the test files skip themselves (pytest.importorskip)
    tf = None

if tf is not None:
    _cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    except RuntimeError:
        pass  # TF was already initialised; see the docstring

import amsim_reference as ref  # noqa: E402


@pytest.fixture(scope="session")
def bf16():
    """The exact-product table for 7 mantissa bits, nearest rounding (bf16's multiplier)."""
    from approxtrain.multipliers import Multiplier

    return Multiplier("test_bf16", 7, "nearest", ref.exact_table(7))


@pytest.fixture(scope="session")
def random_multiplier():
    """A valid table of random entries: any slip in index, operand order or rounding shows."""
    from approxtrain.multipliers import Multiplier

    rng = np.random.default_rng(1234)
    lut = rng.integers(0, 1 << 16, size=1 << 14, dtype=np.uint16)
    return Multiplier("test_random7", 7, "truncate", lut)


@pytest.fixture
def registered_bf16():
    """The name "bf16" resolves to the exact-product table the layer tests call BF16, so tests that
    save and load multiplier *names* compare like with like."""
    from approxtrain import multipliers

    m = multipliers.get("bf16")
    assert (m.mantissa_bits, m.operand_rounding) == (7, "nearest")
    np.testing.assert_array_equal(m.lut, ref.exact_table(7))
