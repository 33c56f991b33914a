"""Checks of the "fp32" phase of dilated and grouped AM convolutions; a module and a script.

An "fp32" phase is TF's native op. TF's own CPU gradient kernels for dilated and grouped
convs exist only with oneDNN, which TF turns off on CPUs without AVX-512 and which it reads
once, when it is imported. test_conv_fp32_phase.py therefore runs every check here twice:
in-process (this process's oneDNN setting) and, through ``python _fp32_phase_checks.py``,
in a subprocess with TF_ENABLE_ONEDNN_OPTS=0 and no GPU, the setting of such a CPU.

Each check compares forward and gradients with float64 NumPy sums (_compare.conv2d_exact...):
operands are bf16 values, so the bf16 table's products and the native products are exact and
only float32 summation separates them: |diff| <= 2e-5 * sum |products|.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # _compare, amsim_reference

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _compare import BF16, assert_close_to_native, bf16_values, conv2d_exact_with_bounds  # noqa: E402
from approxtrain import layers as am  # noqa: E402
from approxtrain import ops  # noqa: E402
from approxtrain.core import conv_paddings  # noqa: E402
from approxtrain.ops import _native_conv_grads  # noqa: E402

FP32_GRADS = dict(grad_input_multiplier="fp32", grad_weight_multiplier="fp32")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _grads(fn, x, w, g):
    """fn(x, w) and its gradients for the upstream gradient g, as numpy."""
    x, w = tf.constant(x), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = fn(x, w)
    dx, dw = tape.gradient(y, [x, w], output_gradients=tf.constant(g))
    return y.numpy(), dx.numpy(), dw.numpy()


def _assert_matches_exact(got, x, w, g, strides, padding, dilations, groups, what):
    """got = (y, dx, dw) of the grouped conv x by w [KH, KW, C/groups, O]."""
    s, d = _pair(strides), _pair(dilations)
    pads = conv_paddings(padding, x.shape[1:3], w.shape[:2], s, d)
    exact, bounds = conv2d_exact_with_bounds(x, w, g, strides=s, dilations=d, pads=pads, groups=groups)
    for a, b, bound, part in zip(got, exact, bounds, ("forward", "input grad", "filter grad")):
        assert_close_to_native(a, b, bound, f"{what}: {part}")


def _operands(seed, x_shape, w_shape, y_shape):
    rng = np.random.default_rng(seed)
    return bf16_values(rng, x_shape), bf16_values(rng, w_shape), bf16_values(rng, y_shape)


def check_op_fp32_dilated_grouped():
    """ops.conv2d(x, w, "fp32", dilations=2, groups=2), and with the groups inferred."""
    x, w, g = _operands(40, (2, 9, 8, 4), (3, 3, 2, 6), (2, 9, 8, 6))
    for kwargs in (dict(groups=2), {}):
        got = _grads(lambda a, b: ops.conv2d(a, b, "fp32", padding="SAME", dilations=2, **kwargs), x, w, g)
        _assert_matches_exact(got, x, w, g, 1, "SAME", 2, 2, f"conv2d fp32 {kwargs}")


def check_op_fp32_gradients_strided_dilated_explicit():
    """A bf16 forward with fp32 gradients: strides and dilations at once, explicit padding, groups = 3."""
    padding = [[2, 1], [0, 3]]
    x, w, g = _operands(41, (2, 8, 9, 6), (2, 3, 2, 9), (2, 4, 3, 9))
    got = _grads(lambda a, b: ops.conv2d(a, b, BF16, (2, 3), padding, (3, 2), **FP32_GRADS), x, w, g)
    _assert_matches_exact(got, x, w, g, (2, 3), padding, (3, 2), 3, "conv2d bf16, fp32 gradients")


def check_op_fp32_depthwise_dilated():
    """ops.depthwise_conv2d, fp32 throughout and as the gradient phases, dilated (and strided)."""
    x, w, g = _operands(42, (2, 9, 9, 3), (3, 3, 3, 2), (2, 9, 9, 6))
    grouped = w.reshape(3, 3, 1, 6)
    for multiplier, extra in (("fp32", {}), (BF16, FP32_GRADS)):
        y, dx, dw = _grads(lambda a, b: ops.depthwise_conv2d(a, b, multiplier, 1, "SAME", 2, **extra), x, w, g)
        _assert_matches_exact(
            (y, dx, dw.reshape(grouped.shape)),
            x,
            grouped,
            g,
            1,
            "SAME",
            2,
            3,
            f"depthwise {getattr(multiplier, 'name', multiplier)}",
        )
    g2 = g[:, :5, :5]
    y, dx, dw = _grads(lambda a, b: ops.depthwise_conv2d(a, b, "fp32", 2, "SAME", 2), x, w, g2)
    _assert_matches_exact((y, dx, dw.reshape(grouped.shape)), x, grouped, g2, 2, "SAME", 2, 3, "depthwise strided")


def _layer_grads(layer, x, g):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    dx, dkernel = tape.gradient(y, [x, layer.trainable_weights[0]], output_gradients=tf.constant(g))
    return y.numpy(), dx.numpy(), dkernel.numpy()


def check_layer_conv2d_dilated_grouped():
    """AMConv2D(dilation_rate=2, groups=2) with fp32 gradient phases, and fp32 throughout."""
    x, w, g = _operands(43, (2, 9, 8, 4), (3, 3, 2, 6), (2, 9, 8, 6))
    for multiplier, extra in ((BF16, FP32_GRADS), ("fp32", {})):
        layer = am.AMConv2D(
            6, 3, padding="same", dilation_rate=2, groups=2, use_bias=False, multiplier=multiplier, **extra
        )
        layer.build(x.shape)
        layer.set_weights([w])
        _assert_matches_exact(
            _layer_grads(layer, x, g), x, w, g, 1, "SAME", 2, 2, f"AMConv2D {getattr(multiplier, 'name', multiplier)}"
        )


def check_layer_depthwise_dilated():
    """AMDepthwiseConv2D(dilation_rate=2) with fp32 gradient phases, and fp32 throughout."""
    x, w, g = _operands(44, (2, 9, 8, 3), (3, 3, 3, 2), (2, 5, 4, 6))
    grouped = w.reshape(3, 3, 1, 6)
    for multiplier, extra in ((BF16, FP32_GRADS), ("fp32", {})):
        layer = am.AMDepthwiseConv2D(
            3, depth_multiplier=2, dilation_rate=2, use_bias=False, multiplier=multiplier, **extra
        )
        layer.build(x.shape)
        layer.set_weights([w])
        y, dx, dw = _layer_grads(layer, x, g)
        _assert_matches_exact(
            (y, dx, dw.reshape(grouped.shape)),
            x,
            grouped,
            g,
            1,
            "VALID",
            2,
            3,
            f"AMDepthwiseConv2D {getattr(multiplier, 'name', multiplier)}",
        )


def check_graph_with_channels_known_at_run_time():
    """tf.function with unknown channels: fp32 gradients of a conv whose groups only run time knows."""
    spec = tf.TensorSpec([None, None, None, None], tf.float32)

    @tf.function(input_signature=[spec, spec, spec])
    def step(x, w, g):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.conv2d(x, w, BF16, strides=(1, 2), padding="SAME", dilations=(2, 1), **FP32_GRADS)
        return (y,) + tuple(tape.gradient(y, [x, w], output_gradients=g))

    x, w, g = _operands(45, (2, 7, 9, 6), (3, 2, 3, 4), (2, 7, 5, 4))  # groups = 2
    got = [t.numpy() for t in step(x, w, g)]
    _assert_matches_exact(got, x, w, g, (1, 2), "SAME", (2, 1), 2, "tf.function, unknown channels")


CHECKS = [
    check_op_fp32_dilated_grouped,
    check_op_fp32_gradients_strided_dilated_explicit,
    check_op_fp32_depthwise_dilated,
    check_layer_conv2d_dilated_grouped,
    check_layer_depthwise_dilated,
    check_graph_with_channels_known_at_run_time,
]


def main():
    for check in CHECKS:
        check()
        print(f"{check.__name__}: ok")
    state = "on" if _native_conv_grads.onednn_enabled() else "off"
    print(f"oneDNN {state}: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main()
