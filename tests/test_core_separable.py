"""Separable tables (every entry the exact product of two per-operand factors: bf16, drum*)
run as float GEMMs of the transformed operands (src/amsim/cpu/gemm_float.h): the detector,
the path choice, and every float path bit for bit against tests/amsim_reference.py."""

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import _core, core, multipliers
from approxtrain.multipliers import Multiplier
from cpu_flags import FLAGS, HALF_WIDTH_AVX512
from test_core_kernels import PATH_ENV, assert_conv_phases_same_bits, assert_same_bits, ref_matmul

SEPARABLE = ("bf16", "drum4", "drum5", "drum6")
NOT_SEPARABLE = ("mbm7", "mitchell7", "bf16_trunc", "fp16m", "mbm3", "mitchell5")
# Forcing one of the table paths keeps separable tables on it.
TABLE_PATHS = ("generic", "avx512-gather", "avx2", "bucket-avx512", "bucket-portable", "avx512")


def float_paths():
    """The float paths this CPU has, as forced names (x86 and AArch64 always have the portable one)."""
    paths = ["float-portable"]
    if {"avx2", "fma"} <= FLAGS:
        paths.append("float-avx2")
    if {"avx512f", "avx512bw"} <= FLAGS:
        paths.append("float-avx512")
    return paths


def expected_auto_path(avx512=True):
    """The float path chosen: AVX-512 where its units are full width (not on Zen 4, where the
    AVX2 kernels measured faster), else AVX2, else the portable kernels."""
    if avx512 and {"avx512f", "avx512bw"} <= FLAGS and not HALF_WIDTH_AVX512:
        return "float-avx512"
    return "float-avx2" if {"avx2", "fma"} <= FLAGS else "float-portable"


@pytest.fixture(params=float_paths() + ["auto", "no-avx512"])
def float_path(request, monkeypatch):
    """Runs a test once per float path (forced), the automatic choice and the AVX2-CPU choice."""
    if request.param != "auto":
        monkeypatch.setenv(PATH_ENV, request.param)
    name = {"auto": expected_auto_path(), "no-avx512": expected_auto_path(avx512=False)}.get(
        request.param, request.param
    )
    lut = multipliers.get("bf16").lut
    assert _core.gemm_cpu_path(7, lut) == name
    return name


# --- the detector ---


@pytest.mark.parametrize("name", SEPARABLE)
def test_separable_tables_are_detected(name):
    m = multipliers.get(name)
    assert _core.table_is_separable(m.lut, m.mantissa_bits)


@pytest.mark.parametrize("name", NOT_SEPARABLE)
def test_other_tables_are_not(name):
    m = multipliers.get(name)
    assert not _core.table_is_separable(m.lut, m.mantissa_bits)


@pytest.mark.parametrize("m_bits", [1, 3, 5, 7])
def test_exact_product_tables_of_every_width_are_detected(m_bits):
    assert _core.table_is_separable(ref.exact_table(m_bits), m_bits)


@pytest.mark.parametrize("where", [0, 1, 129, 5000, (1 << 14) - 1])
def test_one_changed_entry_makes_a_table_not_separable(where):
    lut = multipliers.get("bf16").lut.copy()
    lut[where] ^= np.uint16(1 << 3)
    assert not _core.table_is_separable(lut, 7)
    # ... and the same table edited in place is not taken for the one seen before
    lut[where] ^= np.uint16(1 << 3)
    assert _core.table_is_separable(lut, 7)


def test_asymmetric_factors_are_detected():
    """P[ia][ib] = (1 + ia/8) * (1 + (2 ib + 1)/16): the left operand rounded to 3 bits, the
    right one with a set lowest bit (DRUM-like): different factors per side."""
    ia = np.arange(8)[:, None]
    ib = np.arange(8)[None, :]
    prod = (1 + ia / 8) * (1 + (2 * ib + 1) / 16)
    carry = prod >= 2
    frac = np.where(carry, prod / 2 - 1, prod - 1) * 2**15
    assert np.all(frac == np.round(frac))
    lut = ((carry.astype(np.int64) << 15) | frac.astype(np.int64)).astype(np.uint16).reshape(-1)
    assert _core.table_is_separable(lut, 3)
    mult = Multiplier("asym3", 3, "truncate", lut)
    rng = np.random.default_rng(3)
    a, b = ref.random_floats(rng, (9, 21)), ref.random_floats(rng, (21, 13))
    assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def test_table_size_is_checked():
    with pytest.raises(ValueError, match="16384"):
        _core.table_is_separable(multipliers.get("bf16").lut[:100], 7)


# --- which path runs ---


@pytest.mark.parametrize("forced", ["auto", "no-avx512", *TABLE_PATHS, "float-portable", "float-avx2", "float-avx512"])
def test_non_separable_tables_never_take_a_float_path(monkeypatch, forced):
    if forced != "auto":
        monkeypatch.setenv(PATH_ENV, forced)
    for name in NOT_SEPARABLE:
        m = multipliers.get(name)
        for shape in [(1024, 1024, 1024), (8192, 64, 576), (5, 3, 2)]:
            assert not _core.gemm_cpu_path(m.mantissa_bits, m.lut, shape).startswith("float")


@pytest.mark.parametrize("forced", TABLE_PATHS)
def test_forcing_a_table_path_keeps_bf16_on_it(monkeypatch, forced):
    monkeypatch.setenv(PATH_ENV, forced)
    lut = multipliers.get("bf16").lut
    assert _core.gemm_cpu_path(7, lut) == _core.gemm_cpu_path(7, None)
    assert not _core.gemm_cpu_path(7, lut).startswith("float")


def test_float_paths_the_cpu_lacks_are_never_forced(monkeypatch):
    lut = multipliers.get("bf16").lut
    for forced, needs in [("float-avx2", {"avx2", "fma"}), ("float-avx512", {"avx512f", "avx512bw"})]:
        monkeypatch.setenv(PATH_ENV, forced)
        assert (_core.gemm_cpu_path(7, lut) == forced) == (needs <= FLAGS)


# --- bits, every float path ---

SHAPES = [(1, 1, 1), (3, 5, 0), (8, 16, 128), (9, 17, 129), (37, 45, 130), (70, 3, 40), (2, 70, 33), (65, 33, 257)]


@pytest.mark.parametrize("name", SEPARABLE)
def test_matmul_random_shapes(float_path, name):
    mult = multipliers.get(name)
    rng = np.random.default_rng(11)
    for m, n, k in SHAPES:
        a, b = ref.random_floats(rng, (m, k)), ref.random_floats(rng, (k, n))
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def special_operands(rng, m, n, k):
    """Ordinary values laced with every special operand of SPECIALS on both sides."""
    a = (rng.standard_normal((m, k)) * np.exp2(rng.integers(-30, 30, (m, k)))).astype(np.float32)
    b = (rng.standard_normal((k, n)) * np.exp2(rng.integers(-30, 30, (k, n)))).astype(np.float32)
    for x in (a, b):
        where = rng.random(x.shape) < 0.3
        x[where] = rng.choice(ref.SPECIALS, int(where.sum()))
    return a, b


@pytest.mark.parametrize("name", SEPARABLE)
def test_matmul_special_values(float_path, name):
    """Zeros of both signs, subnormals, NaN, inf, inf x 0, values near FLT_MAX that nearest
    rounding makes infinite (against zeros too), on both sides: the float path's transform,
    its special rows and its fallback."""
    mult = multipliers.get(name)
    rng = np.random.default_rng(12)
    for m, n, k in [(9, 17, 20), (40, 3, 7), (3, 40, 9)]:
        a, b = special_operands(rng, m, n, k)
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


@pytest.mark.parametrize("side", ["a", "b"])
def test_operand_that_rounds_to_infinity_meets_zero(float_path, side):
    """FLT_MAX rounds to infinity under bf16's nearest rounding; against +-0 the contract says a
    signed zero (inf * 0 would be NaN), against a nonzero value +-inf."""
    mult = multipliers.get("bf16")
    rng = np.random.default_rng(13)
    a = rng.standard_normal((20, 24)).astype(np.float32)
    b = rng.standard_normal((24, 18)).astype(np.float32)
    big, zero = (a, b) if side == "a" else (b, a)
    big[3, 5] = np.float32(3.4028235e38)
    big[4, 6] = np.float32(-3.4e38)
    zero[5, :] = 0.0
    zero[:, 5] = -0.0
    zero[6, :] = 0.0
    zero[:, 6] = 0.0
    zero[:, 4] = 0.0
    zero[4, :] = 0.0
    out = core.matmul(a, b, mult)
    assert_same_bits(out, ref_matmul(a, b, mult))
    assert not np.isnan(out).any()


def test_products_that_overflow_underflow_and_sums_that_cancel_to_subnormal(float_path):
    mult = multipliers.get("bf16")
    a = np.array([[2.0**100, 2.0**-100, 1.5 * 2.0**-63, 2.0**64, -(2.0**-70)]], np.float32)
    b = np.array([[2.0**100], [2.0**-100], [2.0**-63], [-(2.0**63)], [2.0**-60]], np.float32)
    # row sums: +inf; a product below the normal range (flushed); ...
    assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
    # 1.5 * 2^-125 - 1.25 * 2^-125 = 2^-127: subnormal, flushed to +0 (and -0 the other way)
    x = np.array([[1.5 * 2.0**-63, -1.25 * 2.0**-63], [-1.5 * 2.0**-63, 1.25 * 2.0**-63]], np.float32)
    y = np.array([[2.0**-62], [2.0**-62]], np.float32)
    out = core.matmul(x, y, mult)
    assert_same_bits(out, ref_matmul(x, y, mult))
    assert out.view(np.uint32).tolist() == [[0x00000000], [0x80000000]]


@pytest.mark.parametrize("name", ["bf16", "drum5"])
def test_transposed_and_strided_views(float_path, name):
    mult = multipliers.get(name)
    rng = np.random.default_rng(14)
    a, b = ref.random_floats(rng, (33, 47)), ref.random_floats(rng, (47, 19))
    expected = ref_matmul(a, b, mult)
    for ta in (False, True):
        for tb in (False, True):
            got = core.matmul(a.T.copy() if ta else a, b.T.copy() if tb else b, mult, transpose_a=ta, transpose_b=tb)
            assert_same_bits(got, expected)
    # Non-contiguous operands and broadcast batches read in place.
    wide = ref.random_floats(rng, (33, 94))
    assert_same_bits(core.matmul(wide[:, ::2], b, mult), ref_matmul(wide[:, ::2], b, mult))


@pytest.mark.parametrize("name", ["bf16", "drum4"])
def test_batched_matmul(float_path, name):
    mult = multipliers.get(name)
    rng = np.random.default_rng(15)
    a = ref.random_floats(rng, (2, 3, 9, 21), normal_fraction=0.9)
    b = ref.random_floats(rng, (2, 1, 21, 34), normal_fraction=0.9)
    expected = np.stack([np.stack([ref_matmul(a[i, j], b[i, 0], mult) for j in range(3)]) for i in range(2)])
    assert_same_bits(core.matmul(a, b, mult), expected)
    shared = ref.random_floats(rng, (21, 5), normal_fraction=0.9)  # one B for every batch: a tall GEMM
    assert_same_bits(core.matmul(a, shared, mult), np.stack([[ref_matmul(x, shared, mult) for x in y] for y in a]))


CONV_CASES = [
    # n, h, w, c, kh, kw, o, strides, padding
    (2, 8, 7, 3, 3, 3, 6, (1, 1), "SAME"),  # narrow channels
    (2, 9, 8, 3, 3, 3, 6, (2, 2), "SAME"),
    (1, 6, 6, 20, 3, 3, 40, (1, 1), "VALID"),  # wider
    (2, 7, 7, 17, 3, 3, 36, (2, 2), "SAME"),
    (1, 5, 4, 64, 1, 1, 70, (1, 1), "VALID"),  # 1x1, wide (the gathered/in-place helpers' shapes)
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("name", ["bf16", "drum6"])
def test_conv_forward_and_grads(float_path, case, name):
    n, h, w, c, kh, kw, o, strides, padding = case
    mult = multipliers.get(name)
    rng = np.random.default_rng(16)
    x = ref.random_floats(rng, (n, h, w, c), normal_fraction=0.95)
    wt = ref.random_floats(rng, (kh, kw, c, o), normal_fraction=0.95)
    pads = core.conv_paddings(padding, (h, w), (kh, kw), strides, (1, 1))
    assert_conv_phases_same_bits(
        rng, x, wt, mult, dict(strides=strides, padding=padding), dict(strides=strides, pads=pads)
    )


def test_conv_with_weights_that_round_to_infinity(float_path):
    """Weights at FLT_MAX against zero padding (a signed zero, not NaN): the right operand of the
    forward GEMM, so the float path declines the call and a table path takes it."""
    mult = multipliers.get("bf16")
    args = mult.lut, 7, "nearest"
    rng = np.random.default_rng(17)
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    x[0, 2, 2, :] = 0.0
    wt = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    wt[1, 1, 2, 3] = np.float32(3.4028235e38)
    pads = core.conv_paddings("SAME", (5, 5), (3, 3), (1, 1), (1, 1))
    y = core.conv2d(x, wt, mult, padding="SAME")
    assert_same_bits(y, ref.conv2d(x, wt, *args, pads=pads))
    assert not np.isnan(y).any()


def test_filter_grad_over_several_patch_chunks(float_path):
    """A filter gradient whose patch matrix spans several 4 MiB chunks: each chunk's GEMM
    continues the sums in dW (gemm_cpu's accumulate), narrow C (4 filters: run transposed)."""
    mult = multipliers.get("bf16")
    rng = np.random.default_rng(18)
    x = ref.random_floats(rng, (4, 101, 100, 3), normal_fraction=0.97)
    dy = ref.random_floats(rng, (4, 101, 100, 4), normal_fraction=0.97)
    pads = core.conv_paddings("SAME", (101, 100), (3, 3), (1, 1), (1, 1))
    expected = ref.conv2d_filter_grad(x, (3, 3, 3, 4), dy, mult.lut, 7, "nearest", pads=pads)
    assert_same_bits(core.conv2d_filter_grad(x, (3, 3, 3, 4), dy, mult, padding="SAME"), expected)


def permuted_factor_table(m_bits):
    """P[ia][ib] = f[ia] * f[ib] with f a permutation of 1 + i / 2^M: separable, but no factor
    is its index's own fraction bits, so the transform must look each one up (bf16's and
    DRUM's factors need no lookup: the kernels mask the fraction instead)."""
    side = 1 << m_bits
    f = 1 + ((np.arange(side) * 5 + 3) % side) / side
    prod = f[:, None] * f[None, :]
    carry = prod >= 2
    frac = np.where(carry, prod / 2 - 1, prod - 1) * 2**15
    assert np.all(frac == np.round(frac))
    return ((carry.astype(np.int64) << 15) | frac.astype(np.int64)).astype(np.uint16).reshape(-1)


@pytest.mark.parametrize("rounding", ["truncate", "nearest"])
def test_factors_that_need_a_lookup(float_path, rounding):
    lut = permuted_factor_table(4)
    assert _core.table_is_separable(lut, 4)
    mult = Multiplier(f"perm4{rounding}", 4, rounding, lut)
    rng = np.random.default_rng(12)
    for m, n, k in SHAPES:
        a, b = special_operands(rng, m, n, k)
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
    x = ref.random_floats(rng, (2, 6, 7, 9), 0.8)
    w = ref.random_floats(rng, (3, 3, 1, 9), 0.8)
    pads = core.conv_paddings("SAME", (6, 7), (3, 3), (1, 1), (1, 1))
    args = mult.lut, mult.mantissa_bits, mult.operand_rounding
    for groups, w_ in ((9, w), (1, ref.random_floats(rng, (3, 3, 9, 5), 0.8))):  # depthwise, then plain
        assert_same_bits(
            core.conv2d(x, w_, mult, padding="SAME", groups=groups),
            ref.conv2d(x, w_, *args, strides=(1, 1), dilations=(1, 1), pads=pads, groups=groups),
        )
