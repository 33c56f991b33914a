"""approxtrain.quant.quantize's steps (the float32 floor quantize casts), which matmul and conv2d
keep to take the codes' uint8 patterns and the dequantized operand from: bit for bit the
patterns of quantize's codes and dequantize of them, signed and unsigned, per tensor and per
channel, with values clipped at both ends and exact zeros."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from approxtrain.quant.quantize import (  # noqa: E402
    dequantize,
    dequantize_steps,
    minmax,
    params_from_range,
    patterns,
    patterns_of_steps,
    quantize,
    quantize_steps,
)

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("per_channel", [False, True])
def test_steps_give_the_codes_patterns_and_dequantized_values(signed, per_channel):
    rng = np.random.default_rng(3 + signed + 2 * per_channel)
    x = (rng.standard_normal((64, 7)) * rng.uniform(0.1, 4.0, size=7)).astype(np.float32)
    lo, hi = minmax(tf.constant(x), per_channel=per_channel)
    params = params_from_range(lo * 0.8, hi * 0.8, signed)  # a narrower range: both ends clip
    x[0] = 0.0
    x[1] = 1e6
    x[2] = -1e6
    x[3, :2] = [np.float32(1e-30), np.float32(-1e-30)]
    steps = quantize_steps(tf.constant(x), params)
    codes = quantize(tf.constant(x), params)
    np.testing.assert_array_equal(patterns_of_steps(steps, params).numpy(), patterns(codes).numpy())
    got, want = dequantize_steps(steps, params).numpy(), dequantize(codes, params).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bits, signed zeros too
    assert patterns_of_steps(steps, params).dtype == tf.uint8
    q = codes.numpy()
    assert q.min() == (-127 if signed else 0) and q.max() == (127 if signed else 255)
