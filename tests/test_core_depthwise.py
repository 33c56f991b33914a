"""Depthwise convolutions (groups == C) on each of their CPU product kernels, bit for bit
against tests/amsim_reference.py.

conv_depthwise.cpp multiplies with one of three kernels, named by _core.depthwise_cpu_path():
"avx512" and "avx2" (operands encoded once per image, the entry gathered) and "scalar"
(operands packed once). APPROXTRAIN_CPU_PATH selects as a CPU would: "no-avx512" and "avx2"
as an AVX2 CPU without AVX-512, "generic" and "bucket-portable" the scalar kernel.
"""

import platform

import numpy as np
import pytest

import amsim_reference as ref
from cpu_flags import FLAGS
from approxtrain import _core, core, multipliers
from approxtrain.multipliers import Multiplier
from test_core_kernels import PATH_ENV, assert_same_bits


X86 = platform.machine().lower() in ("x86_64", "amd64")
HAS_AVX512 = X86 and {"avx512f", "avx512bw"} <= FLAGS
HAS_AVX2 = X86 and {"avx2", "fma"} <= FLAGS

# kernel name -> the APPROXTRAIN_CPU_PATH value that selects it: table paths, forced so that
# exact-product tables (bf16) stay on the table kernels too (FLOAT_PATHS below test theirs)
FORCING = {"avx512": "avx512", "avx2": "avx2", "scalar": "generic"}
KERNELS = [k for k, has in (("avx512", HAS_AVX512), ("avx2", HAS_AVX2), ("scalar", True)) if has]


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    """Runs a test once per depthwise kernel this CPU has, and checks that it is the one running."""
    monkeypatch.setenv(PATH_ENV, FORCING[request.param])
    assert _core.depthwise_cpu_path() == request.param
    # bf16's exact-product table too stays on a forced table kernel
    assert _core.depthwise_cpu_path(multipliers.get("bf16").lut, 7) == request.param
    return request.param


def test_kernel_chosen_as_the_cpu_would(monkeypatch):
    """Under no-avx512 the depthwise convs run what an AVX2 CPU runs, not the AVX-512 code."""
    monkeypatch.delenv(PATH_ENV, raising=False)
    without_avx512 = "avx2" if HAS_AVX2 else "scalar"
    assert _core.depthwise_cpu_path() == ("avx512" if HAS_AVX512 else without_avx512)
    for forced in ("no-avx512", "avx2"):
        monkeypatch.setenv(PATH_ENV, forced)
        assert _core.depthwise_cpu_path() == without_avx512
    for forced in ("generic", "bucket-portable"):
        monkeypatch.setenv(PATH_ENV, forced)
        assert _core.depthwise_cpu_path() == "scalar"
    for forced in ("avx512", "avx512-gather"):
        monkeypatch.setenv(PATH_ENV, forced)
        assert _core.depthwise_cpu_path() == ("avx512" if HAS_AVX512 else without_avx512)


def multiplier(rng, m, rounding, table):
    if table == "exact":
        lut = ref.exact_table(m)
    else:
        lut = rng.integers(0, 1 << 16, size=1 << (2 * m), dtype=np.uint16)
        if table == "high":  # a zero low byte, as mbm7 and bf16 have
            lut &= np.uint16(0xFF00)
    return Multiplier(f"dw{table}{m}", m, rounding, lut)


def check_depthwise(x, w, dy, mult, strides, dilations, padding):
    """Forward, input and filter gradient of a depthwise conv against the reference."""
    c = x.shape[-1]
    args = mult.lut, mult.mantissa_bits, mult.operand_rounding
    pads = core.conv_paddings(padding, x.shape[1:3], w.shape[:2], strides, dilations)
    kwargs = dict(strides=strides, padding=padding, dilations=dilations, groups=c)
    rkw = dict(strides=strides, dilations=dilations, pads=pads, groups=c)
    assert_same_bits(core.conv2d(x, w, mult, **kwargs), ref.conv2d(x, w, *args, **rkw))
    assert_same_bits(
        core.conv2d_input_grad(x.shape, w, dy, mult, **kwargs), ref.conv2d_input_grad(x.shape, w, dy, *args, **rkw)
    )
    assert_same_bits(
        core.conv2d_filter_grad(x, w.shape, dy, mult, **kwargs), ref.conv2d_filter_grad(x, w.shape, dy, *args, **rkw)
    )


def operands(rng, case, normal_fraction):
    n, h, wd, c, kh, kw, mult, strides, dilations, padding = case
    x = ref.random_floats(rng, (n, h, wd, c), normal_fraction)
    w = ref.random_floats(rng, (kh, kw, 1, c * mult), normal_fraction)
    pads = core.conv_paddings(padding, (h, wd), (kh, kw), strides, dilations)
    oh = (h + pads[0] + pads[1] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pads[2] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    dy = ref.random_floats(rng, (n, oh, ow, c * mult), normal_fraction)
    return x, w, dy


DEPTHWISE_CASES = [
    # n, h, w, c, kh, kw, channel multiplier, strides, dilations, padding
    (2, 7, 6, 5, 3, 3, 1, (1, 1), (1, 1), "SAME"),
    (1, 9, 8, 3, 3, 2, 2, (2, 1), (1, 2), "SAME"),
    (2, 6, 7, 4, 2, 3, 3, (1, 2), (1, 1), "VALID"),
    (1, 6, 5, 17, 3, 3, 1, (2, 2), (1, 1), [[2, 0], [1, 3]]),
    (1, 5, 6, 67, 3, 3, 1, (1, 1), (2, 2), "SAME"),  # 67 channels: 64 + a 3-lane tail
    (2, 4, 4, 9, 3, 3, 2, (2, 2), (1, 1), "SAME"),  # 18 outputs: 16 + 2, 8 + 8 + 2
    (1, 5, 5, 23, 5, 5, 3, (1, 1), (1, 1), [[0, 4], [3, 1]]),  # 69 outputs
    (1, 4, 5, 70, 1, 1, 1, (1, 1), (1, 1), "VALID"),  # 1x1 taps
    (1, 8, 8, 33, 3, 3, 1, (3, 2), (1, 1), "VALID"),  # dW tasks of 16 channels + a 1-channel tail
]


@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_depthwise_cases(kernel, case):
    rng = np.random.default_rng(DEPTHWISE_CASES.index(case) + 3)
    mult = multiplier(rng, 7, "nearest", "random")
    check_depthwise(*operands(rng, case, 0.95), mult, *case[-3:])


@pytest.mark.parametrize(
    "m_bits, rounding, table",
    [
        (1, "truncate", "random"),
        (3, "nearest", "exact"),
        (5, "truncate", "random"),
        (7, "nearest", "high"),
        (7, "truncate", "random"),
        (10, "nearest", "random"),
        (11, "truncate", "random"),
        (11, "nearest", "exact"),
    ],
)
def test_depthwise_every_mantissa_width(kernel, m_bits, rounding, table):
    """M from 1 to 11 (an encoded word holds an index of 2M <= 22 bits), both roundings."""
    rng = np.random.default_rng(m_bits)
    case = (1, 6, 5, 19, 3, 3, 2, (1, 2), (1, 1), "SAME")
    check_depthwise(*operands(rng, case, 0.95), multiplier(rng, m_bits, rounding, table), *case[-3:])


ANY_BITS_CASES = [
    (2, 6, 6, 37, 3, 3, 2, (1, 1), (1, 1), "SAME"),
    # strided: the input gradient's gaps (and padding) add the zero products of the
    # weights, NaN against infinite ones; channel multiplier 1 and 2
    (1, 7, 8, 21, 3, 3, 2, (2, 2), (1, 1), "SAME"),
    (1, 7, 7, 13, 3, 3, 1, (2, 3), (2, 1), "SAME"),
]


@pytest.mark.parametrize("m_bits", [2, 7])
@pytest.mark.parametrize("case", ANY_BITS_CASES)
def test_depthwise_any_bit_pattern(kernel, m_bits, case):
    """Half the operands drawn from every float32 bit pattern: products that overflow to inf
    or fall below the normal range, subnormals, inf and NaN, all lane positions."""
    rng = np.random.default_rng(20 + m_bits + 5 * ANY_BITS_CASES.index(case))
    check_depthwise(*operands(rng, case, 0.5), multiplier(rng, m_bits, "nearest", "random"), *case[-3:])


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_depthwise_relu_zeros_and_specials(kernel, strides):
    """Inputs as after a ReLU (half zeros, a few -0 and subnormals) mixed in one vector with
    inf, NaN, 2^127 and weights that round to infinity (against padding zeros and zero inputs
    a zero product, against infinite weights NaN); products past the float range."""
    rng = np.random.default_rng(31)
    mult = multiplier(rng, 7, "nearest", "random")
    x = np.maximum(rng.standard_normal((2, 6, 5, 40)), 0).astype(np.float32)
    x.flat[::11] = -0.0
    x.flat[5::13] = 1e-40
    x[0, 1, 2, 3], x[0, 3, 3, 17], x[1, 0, 0, 33], x[1, 5, 4, 39] = np.inf, np.nan, 2.0**127, -np.inf
    x[1, 2, 2, :8] = 2.0**100  # times 2^100 weights: products overflow to inf
    x[1, 3, 1, 8:16] = 2.0**-100  # times 2^-100 weights: products below the normal range
    w = rng.standard_normal((3, 3, 1, 40)).astype(np.float32)
    w[:, :, 0, :8] *= np.float32(2.0**100)
    w[:, :, 0, 8:16] *= np.float32(2.0**-100)
    w[0, 0, 0, 5], w[1, 2, 0, 20] = np.inf, 0.0
    w[2, 2, 0, 2] = w[0, 1, 0, 30] = np.float32(3.4028235e38)  # rounds to inf (nearest)
    out_h, out_w = -(-6 // strides[0]), -(-5 // strides[1])
    dy = np.maximum(rng.standard_normal((2, out_h, out_w, 40)), 0).astype(np.float32)
    dy[0, 2, 2, 3], dy[1, out_h - 1, out_w - 1, 36] = -np.inf, np.float32(-3.4028235e38)
    dy[0, 1, 1, 8:16] = 2.0**-100
    check_depthwise(x, w, dy, mult, strides, (1, 1), "SAME")


def test_depthwise_kernels_agree_on_a_mobilenet_layer(monkeypatch):
    """A MobileNetV2-like layer (ReLU6 inputs, 3x3, stride 2, 96 channels) gives the same
    bits on every kernel the CPU has."""
    rng = np.random.default_rng(41)
    mult = multiplier(rng, 7, "nearest", "high")
    x = np.clip(rng.standard_normal((4, 16, 16, 96)), 0, 6).astype(np.float32)
    w = (rng.standard_normal((3, 3, 1, 96)) * 0.2).astype(np.float32)
    dy = (rng.standard_normal((4, 8, 8, 96)) * 1e-3).astype(np.float32)
    kwargs = dict(strides=2, padding="SAME", groups=96)
    results = {}
    for name in KERNELS:
        monkeypatch.setenv(PATH_ENV, FORCING[name])
        assert _core.depthwise_cpu_path() == name
        results[name] = (
            core.conv2d(x, w, mult, **kwargs),
            core.conv2d_input_grad(x.shape, w, dy, mult, **kwargs),
            core.conv2d_filter_grad(x, w.shape, dy, mult, **kwargs),
        )
    first = results[KERNELS[-1]]
    for name in KERNELS[:-1]:
        for got, expected in zip(results[name], first):
            assert_same_bits(got, expected)


def test_depthwise_over_several_image_chunks(kernel):
    """Operands are prepared and run a chunk of images (up to 2^16 values) at a time: here
    six images of 10,000 values, then two (the filter gradient sums across chunks in image
    order)."""
    rng = np.random.default_rng(51)
    case = (8, 10, 10, 100, 2, 2, 1, (1, 1), (1, 1), "SAME")
    x, w, dy = operands(rng, case, 0.95)
    x[6, 4, 4, 7], dy[7, 5, 5, 3], dy[5, 9, 9, 99] = np.inf, np.nan, -np.inf
    check_depthwise(x, w, dy, multiplier(rng, 7, "nearest", "random"), *case[-3:])


# Exact-product ("separable") tables -- bf16, DRUM, the exact table -- multiply as floats of
# transformed operands on the float GEMM's paths (gemm_float.h), one float multiply a product.
FLOAT_PATHS = [p for p, has in (("float-avx512", HAS_AVX512), ("float-avx2", HAS_AVX2), ("float-portable", X86)) if has]


@pytest.fixture(params=FLOAT_PATHS)
def float_path(request, monkeypatch):
    monkeypatch.setenv(PATH_ENV, request.param)
    assert _core.depthwise_cpu_path(multipliers.get("bf16").lut, 7) == request.param
    assert _core.depthwise_cpu_path(multipliers.get("mbm7").lut, 7) != request.param  # not separable
    return request.param


def test_separable_tables_choose_the_float_path_as_gemm_does(monkeypatch):
    """Unforced, a separable table runs the float path the GEMMs run (float-avx2 on an AVX2 CPU),
    also under no-avx512; other tables keep the table kernels."""
    bf16, mbm7 = multipliers.get("bf16"), multipliers.get("mbm7")
    for forced in (None, "no-avx512"):
        if forced is None:
            monkeypatch.delenv(PATH_ENV, raising=False)
        else:
            monkeypatch.setenv(PATH_ENV, forced)
        assert _core.depthwise_cpu_path(bf16.lut, 7) == _core.gemm_cpu_path(7, bf16.lut)
        assert _core.depthwise_cpu_path(bf16.lut, 7).startswith("float-")
        assert _core.depthwise_cpu_path(mbm7.lut, 7) == _core.depthwise_cpu_path()


def separable(m_bits, rounding):
    return Multiplier(f"dwexact{m_bits}{rounding}", m_bits, rounding, ref.exact_table(m_bits))


@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_depthwise_float_products(float_path, case):
    rng = np.random.default_rng(DEPTHWISE_CASES.index(case) + 60)
    check_depthwise(*operands(rng, case, 0.95), separable(7, "nearest"), *case[-3:])


@pytest.mark.parametrize("m_bits, rounding", [(2, "nearest"), (7, "truncate"), (10, "nearest")])
@pytest.mark.parametrize("case", ANY_BITS_CASES)
def test_depthwise_float_products_any_bit_pattern(float_path, m_bits, rounding, case):
    """Every float32 bit pattern: subnormals (zero before rounding), inf, NaN (never rounded
    into inf), products past the float range and below the normal range."""
    rng = np.random.default_rng(70 + m_bits + 5 * ANY_BITS_CASES.index(case))
    check_depthwise(*operands(rng, case, 0.5), separable(m_bits, rounding), *case[-3:])


def test_depthwise_float_products_shipped_tables(float_path):
    rng = np.random.default_rng(80)
    case = (2, 7, 6, 21, 3, 3, 2, (2, 1), (1, 1), "SAME")
    for name in ("bf16", "drum4", "drum6"):
        check_depthwise(*operands(rng, case, 0.95), multipliers.get(name), *case[-3:])


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
@pytest.mark.parametrize("where", ["weights", "later chunk"])
def test_depthwise_float_products_values_that_round_to_infinity(float_path, strides, where):
    """A finite value that nearest rounding makes infinite must give a signed zero against a
    zero (inf * 0 would give NaN): weights holding one run the call on the table kernels, an
    image chunk holding one runs that chunk on them; the bits are the same either way."""
    rng = np.random.default_rng(90)
    case = (8, 10, 10, 100, 3, 3, 1, strides, (1, 1), "SAME")
    x, w, dy = operands(rng, case, 0.95)
    x[:, 2:4] = 0.0  # zeros for the large values to meet
    dy[:, 1] = 0.0
    big = np.float32(3.4028235e38)
    if where == "weights":
        w[1, 1, 0, 7] = -big
    else:  # images 6 and 7 form the second chunk
        x[6, 4, 4, 7], dy[7, 2, 2, 3] = big, -big
    check_depthwise(x, w, dy, separable(7, "nearest"), *case[-3:])
