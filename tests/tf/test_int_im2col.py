"""AMIntIm2Col (approxtrain.ops._int_matmul_op.int_im2col): the uint8 im2col patches of the integer
convolutions, byte for byte against patches taken by explicit NumPy indexing, for windows with
strides, dilations, one and many channels, one-pixel outputs; the static shape; its errors; and
approxtrain.quant's Im2Col.patches through it against its TF-op form (what runs where a GPU is)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from approxtrain.ops._int_matmul_op import int_im2col  # noqa: E402
from approxtrain.quant import ops as quant_ops  # noqa: E402

pytestmark = pytest.mark.tf


def reference_patches(padded, kernel, strides, dilations):
    """patches[n, oh, ow, (a * kw + b) * C + c] = padded[n, oh*sh + a*dh, ow*sw + b*dw, c]."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    n, h, w, c = padded.shape
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, oh, ow, kh * kw * c), np.uint8)
    for y in range(oh):
        for x in range(ow):
            for a in range(kh):
                for b in range(kw):
                    tap = (a * kw + b) * c
                    out[:, y, x, tap : tap + c] = padded[:, y * sh + a * dh, x * sw + b * dw, :]
    return out


# (input [N, H, W, C], kernel, strides, dilations)
CASES = [
    ((3, 28, 28, 1), (5, 5), (1, 1), (1, 1)),  # LeNet-5's first conv
    ((2, 12, 12, 6), (5, 5), (1, 1), (1, 1)),
    ((2, 34, 34, 16), (3, 3), (2, 2), (1, 1)),
    ((2, 10, 9, 3), (3, 2), (1, 2), (2, 1)),
    ((1, 7, 7, 64), (1, 1), (2, 2), (1, 1)),
    ((2, 5, 5, 5), (5, 5), (1, 1), (1, 1)),  # one output pixel
    ((4, 6, 11, 2), (2, 3), (3, 1), (1, 3)),
]


@pytest.mark.parametrize("shape, kernel, strides, dilations", CASES, ids=str)
def test_patches_byte_for_byte(shape, kernel, strides, dilations):
    rng = np.random.default_rng(sum(shape))
    padded = rng.integers(0, 256, size=shape, dtype=np.uint8)
    got = int_im2col(padded, kernel, strides, dilations)
    want = reference_patches(padded, kernel, strides, dilations)
    assert got.dtype == tf.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


def test_static_shape_in_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, 34, 34, 16], tf.uint8)])
    def f(padded):
        out = int_im2col(padded, (3, 3), (2, 2), (1, 1))
        assert out.shape.as_list() == [None, 16, 16, 144]
        return out

    padded = np.random.default_rng(1).integers(0, 256, size=(2, 34, 34, 16), dtype=np.uint8)
    np.testing.assert_array_equal(f(padded).numpy(), reference_patches(padded, (3, 3), (2, 2), (1, 1)))


def test_errors():
    padded = np.zeros((1, 4, 4, 2), np.uint8)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="AMIntIm2Col: the window does not fit"):
        int_im2col(tf.constant(padded), (5, 1), (1, 1), (1, 1))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="AMIntIm2Col: window values must be >= 1"):
        int_im2col(padded, (3, 3), (0, 1), (1, 1))
    with pytest.raises(TypeError, match="int_im2col: padded must be a uint8 tensor, got float32"):
        int_im2col(padded.astype(np.float32), (3, 3), (1, 1), (1, 1))


@pytest.mark.parametrize("shape, kernel, strides, dilations", CASES, ids=str)
def test_quant_patches_same_on_both_paths(monkeypatch, shape, kernel, strides, dilations):
    geometry = quant_ops.Im2Col(*kernel, strides, dilations, [0, 0, 0, 0], 1, shape[-1], 8)
    padded = tf.constant(np.random.default_rng(2).integers(0, 256, size=shape, dtype=np.uint8))
    monkeypatch.setattr(quant_ops, "fused_op_usable", lambda: True)
    fused = geometry.patches(padded).numpy()
    monkeypatch.setattr(quant_ops, "fused_op_usable", lambda: False)
    np.testing.assert_array_equal(fused, geometry.patches(padded).numpy())
    np.testing.assert_array_equal(fused, reference_patches(padded.numpy(), kernel, strides, dilations))
