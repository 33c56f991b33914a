"""AMIntMatMul (approxtrain.ops._int_matmul_op.int_matmul_patterns): the integer table GEMM as a
TF op, bit-exact int32 sums against the NumPy reference (tests/int_gemm_reference.py) on every
CPU path (APPROXTRAIN_CPU_PATH), transposes, batch broadcasting, zero sizes, graph mode; the
overflow bound's error; wrong dtypes and shapes; on a GPU, the GPU kernel against the same
reference."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tensorflow.python.framework import kernels  # noqa: E402

import approxtrain as at  # noqa: E402
from approxtrain.ops._int_matmul_op import int_matmul_patterns  # noqa: E402
from int_gemm_reference import patterns, reference, table  # noqa: E402
from test_core_int_kernels import PATHS, set_path  # noqa: E402

pytestmark = pytest.mark.tf


def run(pa, pb, products, transpose_a=False, transpose_b=False):
    got = int_matmul_patterns(pa, pb, products, transpose_a=transpose_a, transpose_b=transpose_b)
    assert got.dtype == tf.int32
    return got.numpy()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (3, 5, 7), (97, 33, 17), (300, 65, 19), (5, 300, 9), (64, 3, 200)], ids=str
)
def test_bit_exact(monkeypatch, path, kind, shape):
    set_path(monkeypatch, path)
    m, n, k = shape
    rng = np.random.default_rng(m * 131 + n * 7 + k)
    pa, pb, products = patterns(rng, (m, k)), patterns(rng, (k, n)), table(kind)
    np.testing.assert_array_equal(run(pa, pb, products), reference(pa, pb, products))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposes_and_batch_broadcast(monkeypatch, path, transpose_a, transpose_b):
    set_path(monkeypatch, path)
    rng = np.random.default_rng(21)
    m, n, k = 29, 40, 13
    pa = patterns(rng, (3, 1, k, m) if transpose_a else (3, 1, m, k))
    pb = patterns(rng, (2, n, k) if transpose_b else (2, k, n))
    products = table("signed", seed=1)
    got = run(pa, pb, products, transpose_a, transpose_b)
    assert got.shape == (3, 2, m, n)
    np.testing.assert_array_equal(got, reference(pa, pb, products, transpose_a, transpose_b))


def test_graph_mode_and_unknown_batch():
    rng = np.random.default_rng(22)
    products = table("unsigned", seed=2)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 11], tf.uint8), tf.TensorSpec([11, 6], tf.uint8)])
    def f(a, b):
        return int_matmul_patterns(a, b, products)

    pa, pb = patterns(rng, (4, 9, 11)), patterns(rng, (11, 6))
    np.testing.assert_array_equal(f(pa, pb).numpy(), reference(pa, pb, products))


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_zero_size_dims(shape):
    m, n, k = shape
    got = run(np.zeros((m, k), np.uint8), np.zeros((k, n), np.uint8), table("signed"))
    assert got.shape == (m, n) and not got.any()


def test_overflow_bound():
    """max|products| = 65535: K = 32768 sums fit int32 (32768 * 65535 = 2147450880), K = 32769
    could overflow and is refused, naming K and the bound."""
    products = np.full((256, 256), 65535, np.int32)
    ones = np.zeros((1, 32768), np.uint8), np.zeros((32768, 2), np.uint8)
    np.testing.assert_array_equal(run(*ones, products), np.full((1, 2), 32768 * 65535))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"AMIntMatMul: K = 32769 products with max \|products\| = 65535 could overflow int32: "
        r"K \* max\|products\| = 2147516415 >= 2\^31 = 2147483648; split K into chunks of at most 32768",
    ):
        run(np.zeros((1, 32769), np.uint8), np.zeros((32769, 2), np.uint8), products)


def test_wrong_dtypes_and_shapes():
    pa, pb, products = np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.uint8), table("signed")
    with pytest.raises(TypeError, match="int_matmul_patterns: a must be a uint8 tensor, got int8"):
        int_matmul_patterns(pa.astype(np.int8), pb, products)
    with pytest.raises(TypeError, match="int_matmul_patterns: products must be a int32 tensor, got int64"):
        int_matmul_patterns(pa, pb, products.astype(np.int64))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"products must have shape \[256, 256\]"):
        int_matmul_patterns(pa, pb, np.zeros((256, 255), np.int32))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="AMIntMatMul: inner dimensions differ"):
        int_matmul_patterns(pa, np.zeros((5, 4), np.uint8), products)


def test_no_gradient_registered():
    a = tf.constant(np.zeros((2, 3), np.uint8))
    with tf.GradientTape() as tape:
        tape.watch(a)
        out = tf.cast(int_matmul_patterns(a, np.zeros((3, 4), np.uint8), table("signed")), tf.float32)
    assert tape.gradient(out, a) is None  # uint8 is not differentiable, and no gradient is defined


def _has_gpu():
    return at.build_info()["tf_gpu_kernels"] and bool(tf.config.list_physical_devices("GPU"))


def test_kernels_registered():
    at.ops.library()
    devices = sorted(k.device_type for k in kernels.get_registered_kernels_for_op("AMIntMatMul").kernel)
    assert devices == (["CPU", "GPU"] if at.build_info()["tf_gpu_kernels"] else ["CPU"])


@pytest.mark.cuda
@pytest.mark.skipif(not _has_gpu(), reason="needs a GPU and an op library with GPU kernels")
@pytest.mark.parametrize("kind", ["signed", "unsigned", "wide"])
@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False), (True, True)])
def test_gpu_bit_exact(kind, transpose_a, transpose_b):
    rng = np.random.default_rng(23)
    m, n, k = 130, 70, 1 if kind == "wide" else 300
    pa = patterns(rng, (2, k, m) if transpose_a else (2, m, k))
    pb = patterns(rng, (n, k) if transpose_b else (k, n))
    products = table(kind)
    with tf.device("/GPU:0"):
        got = int_matmul_patterns(pa, pb, products, transpose_a=transpose_a, transpose_b=transpose_b)
    assert "GPU" in got.device
    np.testing.assert_array_equal(got.numpy(), reference(pa, pb, products, transpose_a, transpose_b))
