"""GPU kernels of the op library: what the build compiled (runs everywhere), and on a GPU every
AM op, forward and gradient, bit-identical to the same op on the CPU."""

import os
import shutil
import subprocess

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tensorflow.python.framework import kernels  # noqa: E402

import amsim_reference as ref  # noqa: E402
from _compare import assert_bits_equal  # noqa: E402

import approxtrain as at  # noqa: E402
from approxtrain import ops  # noqa: E402
from approxtrain.multipliers import Multiplier  # noqa: E402

OPS = ["AMMatMul", "AMConv2D", "AMConv2DBackpropInput", "AMConv2DBackpropFilter"]
HOST_INPUTS = {"AMConv2DBackpropInput": ["input_sizes"], "AMConv2DBackpropFilter": ["filter_sizes"]}


def _kernel_defs(op):
    ops.library()  # registers the kernels
    return kernels.get_registered_kernels_for_op(op).kernel


# --- the build (no GPU needed) -----------------------------------------------------------------


def test_build_info_tells_which_kernels_are_registered():
    gpu = at.build_info()["tf_gpu_kernels"]
    for op in OPS:
        devices = sorted(k.device_type for k in _kernel_defs(op))
        assert devices == (["CPU", "GPU"] if gpu else ["CPU"]), op


def test_gpu_kernels_are_built_when_cuda_kernels_and_a_cuda_tensorflow_are_there():
    """Both build conditions: _core has CUDA kernels (nvcc found) and TF ships CUDA headers
    (the `tensorflow` wheel does, `tensorflow-cpu` does not).  A build configured with
    -DAPPROXTRAIN_TF_GPU=OFF is the one deliberate exception."""
    info = at.build_info()
    tf_cuda_headers = os.path.exists(
        os.path.join(tf.sysconfig.get_include(), "third_party", "gpus", "cuda", "include", "cuda_runtime_api.h")
    )
    assert info["tf_gpu_kernels"] == (info["cuda"] and tf_cuda_headers)


@pytest.mark.skipif(not at.build_info()["tf_gpu_kernels"], reason="the op library has no GPU kernels")
def test_gpu_kernels_read_only_the_size_vectors_on_the_host():
    for op in OPS:
        (gpu,) = [k for k in _kernel_defs(op) if k.device_type == "GPU"]
        assert sorted(gpu.host_memory_arg) == HOST_INPUTS.get(op, []), op


@pytest.mark.skipif(
    not at.build_info()["tf_gpu_kernels"] or shutil.which("nm") is None, reason="no GPU kernels, or no nm"
)
def test_library_keeps_its_cuda_runtime_private():
    """The CUDA 13 runtime of the kernels is linked in and hidden: no cuda* symbol is left for
    TF's CUDA 12 runtime stubs to satisfy, and none is exported."""
    library = os.path.join(os.path.dirname(at.__file__), "_approxtrain_ops.so")
    dynamic = subprocess.run(["nm", "-D", library], capture_output=True, text=True, check=True).stdout
    leaked = [line for line in dynamic.splitlines() if line.split()[-1].startswith(("cuda", "__cuda"))]
    assert leaked == []


# --- GPU against CPU ---------------------------------------------------------------------------

_no_gpu = pytest.mark.skipif(
    not (at.build_info()["tf_gpu_kernels"] and tf.config.list_physical_devices("GPU")),
    reason="needs a GPU and an op library with GPU kernels",
)


def needs_gpu(test):
    """Marked cuda (GPU-only: the skip CI allows) and skipped where no GPU is usable."""
    return pytest.mark.cuda(_no_gpu(test))


GPU, CPU = "/GPU:0", "/CPU:0"


@pytest.fixture(scope="module", params=[7, 10], ids=["M7", "M10"])
def table(request):
    """Random tables (every index slip shows) for M = 7 (shared-memory kernels) and M = 10 (global)."""
    m = request.param
    rng = np.random.default_rng(m)
    lut = rng.integers(0, 1 << 16, size=1 << (2 * m), dtype=np.uint16)
    return Multiplier(f"test_gpu_random{m}", m, "truncate" if m == 7 else "nearest", lut)


def _values(rng, shape):
    """Mostly ordinary values, some arbitrary bit patterns and the special values."""
    x = ref.random_floats(rng, int(np.prod(shape)), normal_fraction=0.85)
    if x.size:
        picks = rng.random(x.size) < 0.05
        x[picks] = rng.choice(ref.SPECIALS, int(picks.sum()))
    return x.reshape(shape)


def _run(device, fn, inputs, out_grad_seed):
    """fn(*inputs) and its gradients with respect to every input, all computed on `device`."""
    with tf.device(device):
        xs = [tf.identity(tf.constant(v)) for v in inputs]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = fn(*xs)
        g = tf.constant(_values(np.random.default_rng(out_grad_seed), y.shape.as_list()))
        grads = tape.gradient(y, xs, output_gradients=g)
    assert y.device.endswith(device.replace("/", "device:")), f"ran on {y.device}, not {device}"
    for d in grads:
        assert d.device.endswith(device.replace("/", "device:")), f"gradient on {d.device}, not {device}"
    return [y.numpy()] + [d.numpy() for d in grads]


def _assert_gpu_equals_cpu(fn, inputs, what):
    on_gpu, on_cpu = _run(GPU, fn, inputs, 7), _run(CPU, fn, inputs, 7)
    for name, g, c in zip(["output"] + [f"gradient {i}" for i in range(len(inputs))], on_gpu, on_cpu):
        assert_bits_equal(g, c, f"{what}: {name}")


# (a shape, b shape, transpose_a, transpose_b)
MATMUL_CASES = [
    ((5, 7), (7, 3), False, False),
    ((70, 130), (130, 66), False, False),  # several output tiles
    ((3, 4, 9), (9, 6), False, False),  # B shared by every batch (stride 0)
    ((4, 6), (2, 3, 6, 5), False, False),  # A shared
    ((2, 1, 4, 5), (1, 3, 5, 6), False, False),  # non-uniform broadcast: runs of batched launches
    ((3, 1, 2, 5, 4), (1, 2, 1, 5, 3), True, False),  # non-uniform, rank 5, transposed A
    ((2, 3, 8, 5), (2, 3, 6, 8), True, True),
    ((3, 0), (0, 4), False, False),  # k = 0: every output is +0
]


@needs_gpu
@pytest.mark.parametrize("a_shape,b_shape,ta,tb", MATMUL_CASES)
def test_matmul_and_gradients_on_gpu_equal_cpu(table, a_shape, b_shape, ta, tb):
    rng = np.random.default_rng(sum(a_shape) + 7 * sum(b_shape))
    inputs = [_values(rng, a_shape), _values(rng, b_shape)]
    _assert_gpu_equals_cpu(
        lambda a, b: ops.matmul(a, b, table, transpose_a=ta, transpose_b=tb), inputs, f"matmul {a_shape} x {b_shape}"
    )


# (x shape, w shape, strides, padding, dilations); groups = C / w.shape[2]
CONV_CASES = [
    ((2, 7, 7, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((2, 8, 8, 4), (3, 3, 4, 5), 2, "SAME", 1),
    ((1, 9, 7, 4), (3, 2, 2, 6), (2, 1), "SAME", (1, 2)),  # groups = 2
    ((1, 6, 8, 8), (3, 3, 2, 8), (1, 2), [[2, 2], [0, 3]], (2, 1)),  # groups = 4, explicit padding
    ((2, 6, 6, 3), (2, 2, 1, 6), 1, [[1, 0], [2, 1]], 1),  # depthwise, multiplier 2
    ((2, 9, 9, 5), (3, 3, 1, 5), 2, "SAME", 1),  # depthwise
    ((1, 10, 10, 4), (3, 3, 4, 4), 3, "SAME", 2),
    ((3, 12, 12, 16), (3, 3, 16, 32), 1, "SAME", 1),  # several output tiles
    ((0, 5, 5, 2), (3, 3, 2, 3), 1, "SAME", 1),  # empty batch: dw is +0
    ((1, 5, 5, 2), (3, 3, 2, 0), 1, "VALID", 1),  # no output channels: dx is +0
]


@needs_gpu
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilations", CONV_CASES)
def test_conv2d_and_gradients_on_gpu_equal_cpu(table, x_shape, w_shape, strides, padding, dilations):
    rng = np.random.default_rng(sum(x_shape) + 7 * sum(w_shape))
    inputs = [_values(rng, x_shape), _values(rng, w_shape)]
    groups = x_shape[3] // w_shape[2]
    _assert_gpu_equals_cpu(
        lambda x, w: ops.conv2d(x, w, table, strides=strides, padding=padding, dilations=dilations, groups=groups),
        inputs,
        f"conv2d {x_shape} * {w_shape}",
    )


@needs_gpu
def test_gradient_ops_in_a_tf_function_on_gpu_equal_cpu(table):
    """The raw gradient ops in a graph, sizes from tf.shape (host memory on the GPU)."""
    rng = np.random.default_rng(3)
    x, w, dy = _values(rng, (2, 6, 6, 4)), _values(rng, (3, 3, 2, 6)), _values(rng, (2, 3, 3, 6))
    lib, lut = ops.library(), table.lut
    attrs = dict(strides=[1, 2, 2, 1], padding="SAME", operand_rounding=table.operand_rounding)
    results = {}
    for device in (GPU, CPU):

        @tf.function
        def grads(x, w, dy, lut):
            with tf.device(device):
                dx = lib.am_conv2d_backprop_input(tf.shape(x), w, dy, lut, **attrs)
                dw = lib.am_conv2d_backprop_filter(x, tf.shape(w), dy, lut, **attrs)
                return dx, dw

        with tf.device(device):
            dx, dw = grads(tf.constant(x), tf.constant(w), tf.constant(dy), tf.constant(lut, tf.uint16))
        assert dx.device.endswith(device.replace("/", "device:"))
        results[device] = (dx.numpy(), dw.numpy())
    assert_bits_equal(results[GPU][0], results[CPU][0], "input gradient")
    assert_bits_equal(results[GPU][1], results[CPU][1], "filter gradient")


@needs_gpu
def test_bad_table_on_gpu_is_a_clear_error():
    with tf.device(GPU):
        with pytest.raises(tf.errors.InvalidArgumentError, match="table length 100 is not 4\\^M"):
            ops.library().am_mat_mul(
                tf.ones([2, 2]), tf.ones([2, 2]), tf.zeros([100], tf.uint16), operand_rounding="truncate"
            )


def _small_model(multiplier):
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3))
    h = at.layers.AMConv2D(6, 3, activation="relu", multiplier=multiplier)(inputs)
    h = at.layers.AMDepthwiseConv2D(3, padding="same", multiplier=multiplier)(h)
    h = keras.layers.Flatten()(h)
    outputs = at.layers.AMDense(4, multiplier=multiplier)(h)
    return keras.Model(inputs, outputs)


@needs_gpu
def test_keras_fit_step_on_gpu(table):
    """A Keras fit step with AM layers on the GPU (default compile, so jit_compile="auto"): the
    forward pass is bit-identical to the CPU's; the update agrees up to the non-AM ops (loss,
    optimizer), which TF computes differently on the two devices."""
    import keras

    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32)
    y = rng.standard_normal((16, 4)).astype(np.float32)
    start = _small_model(table).get_weights()
    results = {}
    for device in (GPU, CPU):
        with tf.device(device):
            model = _small_model(table)
            model.set_weights(start)
            forward = model(x)
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
            history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert forward.device.endswith(device.replace("/", "device:"))
        results[device] = (forward.numpy(), history.history["loss"][0], model.get_weights())
    assert_bits_equal(results[GPU][0], results[CPU][0], "forward pass of the AM model")
    assert np.isfinite(results[GPU][1])
    np.testing.assert_allclose(results[GPU][1], results[CPU][1], rtol=1e-5)
    for w0, w_gpu, w_cpu in zip(start, results[GPU][2], results[CPU][2]):
        assert not np.array_equal(w_gpu, w0)
        np.testing.assert_allclose(w_gpu, w_cpu, rtol=1e-4, atol=1e-6)
