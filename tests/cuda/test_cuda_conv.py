"""conv2d and its gradients on device="cuda": bit-identical to the CPU core
(and, for small shapes, to the NumPy reference) over strides, dilations,
explicit paddings, groups, depthwise with channel multipliers, and specials.
Skipped where no GPU is usable
(a failure under APPROXTRAIN_REQUIRE_CUDA=1, see conftest.py)."""

import zlib

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import _core, core
from cuda_helpers import ROUNDINGS, assert_same_bits, floats, multiplier, ordinary

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not core.cuda_available(), reason="no usable CUDA device")]

# (N, H, W, C, KH, KW, O, groups, strides, dilations, padding)
CASES = [
    (2, 7, 6, 3, 3, 3, 5, 1, (1, 1), (1, 1), "VALID"),
    (2, 7, 6, 3, 3, 3, 5, 1, (1, 1), (1, 1), "SAME"),
    (1, 9, 8, 4, 3, 2, 6, 2, (2, 1), (1, 2), [[1, 0], [2, 1]]),  # grouped, strided, dilated, explicit pads
    (2, 8, 8, 6, 3, 3, 6, 6, (1, 1), (1, 1), "SAME"),  # depthwise
    (1, 9, 7, 4, 3, 3, 8, 4, (2, 2), (1, 1), [[1, 1], [0, 2]]),  # depthwise, channel multiplier 2
    (2, 6, 7, 5, 2, 3, 5, 5, (1, 2), (2, 1), "SAME"),  # depthwise, dilated
    (1, 5, 5, 8, 1, 1, 12, 1, (1, 1), (1, 1), "VALID"),  # 1x1
    (1, 3, 3, 2, 5, 5, 3, 1, (1, 1), (1, 1), [[2, 2], [2, 2]]),  # filter larger than input
    (2, 11, 10, 16, 3, 3, 24, 4, (2, 2), (1, 1), "SAME"),
]

OPS = ["forward", "input_grad", "filter_grad"]


def run(op, x, w, dy, mul, case, device):
    _, _, _, _, kh, kw, o, groups, strides, dilations, padding = case
    kw_args = dict(strides=strides, padding=padding, dilations=dilations, groups=groups, device=device)
    if op == "forward":
        return core.conv2d(x, w, mul, **kw_args)
    if op == "input_grad":
        return core.conv2d_input_grad(x.shape, w, dy, mul, **kw_args)
    return core.conv2d_filter_grad(x, w.shape, dy, mul, **kw_args)


def tensors(case, rng, make):
    n, h, w_, c, kh, kw, o, groups, strides, dilations, padding = case
    pt, pb, pl, pr = core.conv_paddings(padding, (h, w_), (kh, kw), strides, dilations)
    oh = (h + pt + pb - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (w_ + pl + pr - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    return make(rng, (n, h, w_, c)), make(rng, (kh, kw, c // groups, o)), make(rng, (n, oh, ow, o))


def reference(op, x, w, dy, mul, case):
    _, _, _, _, kh, kw, o, groups, strides, dilations, padding = case
    pads = core.conv_paddings(padding, x.shape[1:3], (kh, kw), strides, dilations)
    args = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
    if op == "forward":
        return ref.conv2d(x, w, mul.lut, mul.mantissa_bits, mul.operand_rounding, **args)
    if op == "input_grad":
        return ref.conv2d_input_grad(x.shape, w, dy, mul.lut, mul.mantissa_bits, mul.operand_rounding, **args)
    return ref.conv2d_filter_grad(x, w.shape, dy, mul.lut, mul.mantissa_bits, mul.operand_rounding, **args)


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: "x".join(map(str, c[:8])) + f"-s{c[8][0]}{c[8][1]}-d{c[9][0]}{c[9][1]}"
)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "m, rounding, kind", [(7, "nearest", "exact"), (4, "truncate", "random"), (11, "nearest", "random")]
)
def test_conv_matches_cpu_and_reference(case, op, m, rounding, kind):
    mul = multiplier(m, rounding, kind)
    rng = np.random.default_rng(zlib.crc32(repr((case, op)).encode()))
    x, w, dy = tensors(case, rng, floats)
    got = run(op, x, w, dy, mul, case, "cuda")
    assert_same_bits(got, run(op, x, w, dy, mul, case, "cpu"), f"{op} vs cpu")
    assert_same_bits(got, reference(op, x, w, dy, mul, case), f"{op} vs reference")


@pytest.mark.parametrize("m", range(1, 12))
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_conv_every_multiplier(m, rounding):
    mul = multiplier(m, rounding, "random", seed=3)
    rng = np.random.default_rng(m)
    for case in (CASES[2], CASES[4]):  # grouped implicit GEMM and depthwise
        x, w, dy = tensors(case, rng, floats)
        for op in OPS:
            assert_same_bits(run(op, x, w, dy, mul, case, "cuda"), run(op, x, w, dy, mul, case, "cpu"), op)


# Larger layers: enough tiles for the big-tile kernel, long filter-gradient K.
LARGE = [
    (16, 32, 32, 64, 3, 3, 64, 1, (1, 1), (1, 1), "SAME"),
    (4, 28, 28, 32, 3, 3, 32, 32, (2, 2), (1, 1), "SAME"),  # depthwise, strided
    (8, 14, 14, 40, 1, 1, 130, 1, (1, 1), (1, 1), "VALID"),
]


@pytest.mark.parametrize("case", LARGE, ids=lambda c: "x".join(map(str, c[:8])))
@pytest.mark.parametrize("op", OPS)
def test_large_conv_layers(case, op):
    mul = multiplier(7, "nearest", "exact")
    rng = np.random.default_rng(5)
    x, w, dy = tensors(case, rng, ordinary)
    assert_same_bits(run(op, x, w, dy, mul, case, "cuda"), run(op, x, w, dy, mul, case, "cpu"), op)


def test_conv_shape_errors_are_value_errors():
    mul = multiplier(7, "nearest", "exact")
    x = np.zeros((1, 5, 5, 4), np.float32)
    with pytest.raises(ValueError, match="C/groups"):
        _core.conv2d_cuda(x, np.zeros((3, 3, 3, 4), np.float32), *mul.core_args, [1, 1], [1, 1], [0, 0, 0, 0], 1)
    with pytest.raises(ValueError, match="dy shape"):
        _core.conv2d_filter_grad_cuda(
            x, [3, 3, 4, 2], np.zeros((1, 2, 2, 2), np.float32), *mul.core_args, [1, 1], [1, 1], [0, 0, 0, 0], 1
        )


def test_conv_bench_entry_point():
    mul = multiplier(7, "nearest", "exact")
    rng = np.random.default_rng(0)
    x, w = ordinary(rng, (2, 16, 16, 8)), ordinary(rng, (3, 3, 8, 8))
    ms = _core.conv2d_cuda_bench(x, w, *mul.core_args, [1, 1], [1, 1], [1, 1, 1, 1], 1, 3)
    assert 0.0 < ms < 1000.0
