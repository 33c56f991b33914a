"""The op library itself: loading, tables, raw-op checks and gradients, tf.distribute, Keras fit."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from approxtrain.train.strategy import mirrored_strategy  # noqa: E402  (one per process, see there)

import amsim_reference as ref  # noqa: E402
from _compare import assert_bits_equal  # noqa: E402

from approxtrain import _op_library, ops  # noqa: E402
from approxtrain.multipliers import Multiplier  # noqa: E402


# --- loading -----------------------------------------------------------------------------------


def test_library_is_found_next_to_the_package_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lib = ops.library()
    assert hasattr(lib, "am_mat_mul") and hasattr(lib, "am_conv2d_backprop_filter")
    version, devices = _op_library.read_stamp(_op_library.PACKAGE_DIR)
    assert version == tf.__version__ and "CPU" in devices


def _fake_build(directory, version):
    (directory / _op_library.LIBRARY_FILE).write_bytes(b"not a shared object")
    if version is not None:
        (directory / _op_library.STAMP_FILE).write_text(version + "\n")


def test_stamp_names_the_version_and_the_kernel_devices(tmp_path):
    assert _op_library.read_stamp(str(tmp_path)) is None
    _fake_build(tmp_path, "2.21.0")  # a stamp of older builds: CPU kernels only
    assert _op_library.read_stamp(str(tmp_path)) == ("2.21.0", ("CPU",))
    (tmp_path / _op_library.STAMP_FILE).write_text("2.21.0\ndevices=CPU,GPU\n")
    assert _op_library.read_stamp(str(tmp_path)) == ("2.21.0", ("CPU", "GPU"))


def test_tf_version_mismatch_names_the_rebuild_command(tmp_path):
    _fake_build(tmp_path, "2.0.0")
    with pytest.raises(ImportError, match="compiled against TensorFlow 2.0.0") as e:
        _op_library.load_from(str(tmp_path))
    assert _op_library.REBUILD_COMMAND in str(e.value)
    assert _op_library.REBUILD_COMMAND == "pip install --no-build-isolation -e ."


def test_missing_library_or_stamp_and_unloadable_library(tmp_path):
    with pytest.raises(ImportError, match="does not exist.*pip install --no-build-isolation -e ."):
        _op_library.load_from(str(tmp_path))
    _fake_build(tmp_path, None)
    with pytest.raises(ImportError, match="is missing"):
        _op_library.load_from(str(tmp_path))
    _fake_build(tmp_path, tf.__version__)
    with pytest.raises(ImportError, match="failed to load.*pip install --no-build-isolation -e ."):
        _op_library.load_from(str(tmp_path))


# --- multipliers and tables --------------------------------------------------------------------


def test_table_is_a_cached_uint16_tensor(bf16):
    t = ops.table(bf16)
    assert t.dtype == tf.uint16 and t.shape == (1 << 14,)
    assert np.array_equal(t.numpy(), bf16.lut)
    assert ops.table(bf16) is t
    # Same name, different table: the cache notices.
    other = Multiplier(bf16.name, 7, "nearest", ref.exact_table(7, truncate_product=True))
    assert np.array_equal(ops.table(other).numpy(), other.lut)


def test_table_made_inside_tf_function_is_eager(random_multiplier):
    fresh = Multiplier("test_fresh_in_function", 3, "truncate", np.arange(64, dtype=np.uint16))

    @tf.function
    def f(a):
        return ops.matmul(a, a, fresh)

    f(tf.ones([2, 2]))
    assert ops.table(fresh).numpy().shape == (64,)  # usable outside the graph it was first made in


def test_resolve():
    assert ops.resolve("fp32") is None
    m = Multiplier("x", 2, "truncate", np.zeros(16, np.uint16))
    assert ops.resolve(m) is m
    with pytest.raises(ValueError, match="unknown multiplier 'nope'"):
        ops.resolve("nope")
    with pytest.raises(TypeError, match="multiplier must be"):
        ops.resolve(7)
    with pytest.raises(ValueError, match="no table"):
        ops.table("fp32")


@pytest.mark.parametrize("length", [0, 3, 8, 100, 1 << 24])
def test_raw_op_rejects_table_lengths_that_are_not_4_to_the_m(length):
    table = tf.zeros([length], tf.uint16)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"table length {length} is not 4\\^M"):
        ops.library().am_mat_mul(tf.ones([2, 2]), tf.ones([2, 2]), table, operand_rounding="truncate")
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not 4\\^M"):
        ops.library().am_conv2d(
            tf.ones([1, 3, 3, 1]),
            tf.ones([1, 1, 1, 1]),
            table,
            strides=[1, 1, 1, 1],
            padding="VALID",
            operand_rounding="truncate",
        )


def test_raw_op_table_must_be_uint16_vector():
    with pytest.raises(tf.errors.InvalidArgumentError, match="1-D"):
        ops.library().am_mat_mul(
            tf.ones([2, 2]), tf.ones([2, 2]), tf.zeros([4, 4], tf.uint16), operand_rounding="truncate"
        )
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        ops.library().am_mat_mul(
            tf.ones([2, 2]), tf.ones([2, 2]), tf.zeros([16], tf.int32), operand_rounding="truncate"
        )
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="operand_rounding"):
        ops.library().am_mat_mul(tf.ones([2, 2]), tf.ones([2, 2]), tf.zeros([16], tf.uint16), operand_rounding="up")


def test_shape_function_rejects_a_bad_static_table_length():
    @tf.function
    def f(a):
        return ops.library().am_mat_mul(a, a, tf.zeros([5], tf.uint16), operand_rounding="truncate")

    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="table length 5"):
        f.get_concrete_function(tf.TensorSpec([2, 2], tf.float32))


@pytest.mark.parametrize("mantissa_bits,rounding", [(1, "nearest"), (4, "truncate"), (10, "nearest")])
def test_any_mantissa_width_bit_exact(mantissa_bits, rounding):
    rng = np.random.default_rng(mantissa_bits)
    lut = rng.integers(0, 1 << 16, size=1 << (2 * mantissa_bits), dtype=np.uint16)
    m = Multiplier(f"test_m{mantissa_bits}", mantissa_bits, rounding, lut)
    a, b = ref.random_floats(rng, (5, 7)), ref.random_floats(rng, (7, 3))
    assert_bits_equal(ops.matmul(a, b, m).numpy(), ref.matmul(a, b, lut, mantissa_bits, rounding), "matmul")


# --- gradients of the bare ops -----------------------------------------------------------------


def test_bare_ops_have_gradients_with_their_own_table(random_multiplier):
    m = random_multiplier
    lib, t = ops.library(), ops.table(m)
    rng = np.random.default_rng(31)
    a, b = tf.constant(ref.random_floats(rng, (3, 4), 0.9)), tf.constant(ref.random_floats(rng, (4, 2), 0.9))
    g = ref.random_floats(rng, (3, 2), 0.9)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        c = lib.am_mat_mul(a, b, t, operand_rounding=m.operand_rounding)
    da, db = tape.gradient(c, [a, b], output_gradients=tf.constant(g))
    args = (m.lut, 7, m.operand_rounding)
    assert_bits_equal(da.numpy(), ref.matmul(g, b.numpy().T, *args), "matmul grad a")
    assert_bits_equal(db.numpy(), ref.matmul(a.numpy().T, g, *args), "matmul grad b")

    x, w = (
        tf.constant(ref.random_floats(rng, (1, 4, 4, 2), 0.9)),
        tf.constant(ref.random_floats(rng, (2, 2, 2, 3), 0.9)),
    )
    gy = ref.random_floats(rng, (1, 3, 3, 3), 0.9)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = lib.am_conv2d(x, w, t, strides=[1, 1, 1, 1], padding="VALID", operand_rounding=m.operand_rounding)
    dx, dw = tape.gradient(y, [x, w], output_gradients=tf.constant(gy))
    assert_bits_equal(dx.numpy(), ref.conv2d_input_grad(x.shape, w.numpy(), gy, *args), "conv grad x")
    assert_bits_equal(dw.numpy(), ref.conv2d_filter_grad(x.numpy(), w.shape, gy, *args), "conv grad w")


def test_second_order_gradient_runs(bf16):
    x = tf.constant(np.linspace(-1, 1, 2 * 5 * 5 * 2, dtype=np.float32).reshape(2, 5, 5, 2))
    w = tf.constant(np.linspace(-1, 1, 3 * 3 * 2 * 2, dtype=np.float32).reshape(3, 3, 2, 2))
    with tf.GradientTape() as outer:
        outer.watch(w)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = ops.conv2d(x, w, bf16, padding="SAME")
        dx = inner.gradient(y, x)
        penalty = tf.reduce_sum(dx * dx)
    dw = outer.gradient(penalty, w)
    assert dw.shape == w.shape and np.isfinite(dw.numpy()).all() and np.abs(dw.numpy()).sum() > 0


# --- tf.distribute and Keras -------------------------------------------------------------------


def _loss_and_grads(x, w, k, m):
    with tf.GradientTape() as tape:
        tape.watch([w, k])
        h = ops.conv2d(x, w, m, padding="SAME")
        y = ops.matmul(tf.reshape(h, [tf.shape(h)[0], -1]), k, m)
        loss = tf.reduce_sum(y * y)
    return loss, tape.gradient(loss, [w, k])


def test_mirrored_strategy_on_two_cpus(random_multiplier):
    m = random_multiplier
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, f"tests/tf/conftest.py should configure two logical CPUs, found {devices}"
    strategy = mirrored_strategy(devices[:2])
    rng = np.random.default_rng(32)
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
    k = rng.standard_normal((6 * 6 * 3, 2)).astype(np.float32)

    @tf.function
    def step(xs):
        loss, grads = _loss_and_grads(xs, tf.constant(w), tf.constant(k), m)
        return loss, grads

    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))
    per_replica = strategy.run(step, args=(next(iter(dataset)),))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[0], axis=None).numpy()
    halves = [_loss_and_grads(tf.constant(x[i : i + 2]), tf.constant(w), tf.constant(k), m) for i in (0, 2)]
    assert loss == pytest.approx(sum(h[0].numpy() for h in halves), rel=1e-6)
    for replica, half in zip(strategy.experimental_local_results(per_replica[1][0]), halves):
        assert_bits_equal(replica.numpy(), half[1][0].numpy(), "replica conv filter grad")


def test_keras_fit_updates_weights_by_the_am_gradient(random_multiplier):
    keras = pytest.importorskip("keras")
    m = random_multiplier

    class AMProjection(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform")

        def call(self, x):
            return ops.matmul(x, self.kernel, m)

    rng = np.random.default_rng(33)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((5,)), AMProjection()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    w0 = model.layers[0].kernel.numpy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with tf.GradientTape() as tape:
        k = tf.constant(w0)
        tape.watch(k)
        loss = tf.reduce_mean(tf.square(ops.matmul(x, k, m) - y))
    expected = w0 - 0.1 * tape.gradient(loss, k).numpy()
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected, rtol=1e-5, atol=1e-6)
