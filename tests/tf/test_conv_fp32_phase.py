"""The "fp32" phase of dilated and grouped convs works whatever the CPU (issue 14, item 0).

TF's own CPU kernels for dilated and grouped conv gradients exist only with oneDNN, which TF
turns off on CPUs without AVX-512; approxtrain then computes those gradients from forward
convs (approxtrain/ops/_native_conv_grads.py). The checks live in _fp32_phase_checks.py:
each runs here in-process, and all of them run again in a subprocess with oneDNN off
(TF reads TF_ENABLE_ONEDNN_OPTS once, when it is imported), so the suite covers both
settings on any CPU.
"""

import os
import subprocess
import sys

import pytest

tf = pytest.importorskip("tensorflow")

import _fp32_phase_checks as checks  # noqa: E402
from approxtrain.ops import _native_conv_grads  # noqa: E402


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__)
def test_fp32_phase_in_this_process(check):
    check()


def test_fp32_phase_with_onednn_off_in_a_subprocess(tmp_path):
    env = dict(
        os.environ,
        TF_ENABLE_ONEDNN_OPTS="0",
        CUDA_VISIBLE_DEVICES="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        APPROXTRAIN_HOME=str(tmp_path),
    )
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fp32_phase_checks.py")
    run = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"the checks failed with oneDNN off:\n{run.stdout}\n{run.stderr[-4000:]}"
    assert run.stdout.splitlines()[-1] == f"oneDNN off: {len(checks.CHECKS)} checks passed", run.stdout


def test_without_onednn_the_gradients_use_no_conv2d_backprop_op(monkeypatch):
    """With oneDNN off, the fp32 gradients of a dilated grouped conv are forward Conv2D ops only."""
    from approxtrain import ops

    monkeypatch.setattr(_native_conv_grads, "onednn_enabled", lambda: False)

    @tf.function
    def grads(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.conv2d(x, w, "fp32", padding="SAME", dilations=2)
        return tape.gradient(y, [x, w])

    graph = grads.get_concrete_function(tf.TensorSpec([1, 7, 7, 4]), tf.TensorSpec([3, 3, 2, 4])).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("Conv2D") == 3, types  # forward, input grad, filter grad
    assert not any(t.startswith(("Conv2DBackprop", "DepthwiseConv2dNativeBackprop")) for t in types), types
