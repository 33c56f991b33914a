"""The CPU kernels of the native core, every path, bit for bit against tests/amsim_reference.py.

The CPU paths are chosen at run time (gemm_cpu_path); APPROXTRAIN_CPU_PATH narrows the
choice so the generic (no SIMD) and gather paths are checked on a machine that would
pick a faster one.
"""

import re

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import _core, core, multipliers
from approxtrain.multipliers import Multiplier

ROUNDINGS = ("truncate", "nearest")
PATH_ENV = "APPROXTRAIN_CPU_PATH"


def random_table(rng, m):
    """Arbitrary 16-bit entries: the kernels must not assume anything about them."""
    return rng.integers(0, 1 << 16, size=1 << (2 * m), dtype=np.uint16)


def high_byte_table(rng, m):
    """Arbitrary entries with a zero low byte (results with at most 7 fraction bits, as mbm7,
    mitchell7 and bf16_trunc give): at M = 7 the kernels look up only the high bytes."""
    return random_table(rng, m) & np.uint16(0xFF00)


TABLES = {"exact": lambda rng, m: ref.exact_table(m), "random": random_table, "high": high_byte_table}


def multiplier(m, rounding="truncate", table="exact", seed=0):
    lut = TABLES[table](np.random.default_rng(seed + m), m)
    return Multiplier(f"{table}{m}", m, rounding, lut)


def with_high_table(widths):
    """(M, table) pairs: each width with a random table, and M = 7 with a high-byte table."""
    return [(m, "random") for m in widths] + [(7, "high")]


def assert_same_bits(actual, expected):
    """Equal bit patterns (signed zeros included); any NaN matches any NaN."""
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    bad = (nan_a != nan_e) | (~nan_e & (actual.view(np.uint32) != expected.view(np.uint32)))
    if bad.any():
        where = tuple(int(t) for t in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements differ; first at {where}: "
            f"got {actual[where]!r}, expected {expected[where]!r}"
        )


def ref_matmul(a, b, mult):
    return ref.matmul(a, b, mult.lut, mult.mantissa_bits, mult.operand_rounding)


def forced_path_name(forced, m_bits=7, shape=None):
    """The GEMM path _core reports with APPROXTRAIN_CPU_PATH=forced."""
    import os

    saved = os.environ.get(PATH_ENV)
    os.environ[PATH_ENV] = forced
    try:
        return _core.gemm_cpu_path(m_bits, None, shape)
    finally:
        if saved is None:
            del os.environ[PATH_ENV]
        else:
            os.environ[PATH_ENV] = saved


def available_paths():
    # "bucket-portable": the bucket GEMM's plain C++ kernels, built everywhere;
    # "avx2" / "bucket-avx512": its AVX2 + FMA / AVX-512 kernels (gemm_bucket.h),
    # forced for every shape; "avx512": the register-table kernels alone.
    paths = ["auto", "generic", "bucket-portable"]
    if forced_path_name("avx512-gather") == "avx512-gather":  # AVX-512 machines
        paths.append("avx512-gather")
    if forced_path_name("avx2") == "avx2":
        paths.append("avx2")
    if forced_path_name("bucket-avx512") == "bucket-avx512":
        paths.append("bucket-avx512")
        paths.append("avx512")
    return paths


@pytest.fixture(params=available_paths())
def cpu_path(request, monkeypatch):
    """Runs a test once per CPU path this machine has ("auto" = the default choice)."""
    if request.param != "auto":
        monkeypatch.setenv(PATH_ENV, request.param)
    return request.param


def test_path_names_and_override(monkeypatch):
    names = {
        "avx512vbmi",
        "avx512vbmi-high",
        "avx512vbmi-chunks",
        "avx512-gather",
        "avx2",
        "bucket-avx512",
        "bucket-portable",
        "generic",
    }
    for m in range(1, 12):
        assert _core.gemm_cpu_path(m) in names
    rng = np.random.default_rng(0)
    high, exact = high_byte_table(rng, 7), ref.exact_table(7)
    # bf16's exact-product table is separable: the float GEMM (tests/test_core_separable.py)
    assert _core.gemm_cpu_path(7, exact).startswith("float-")
    if forced_path_name("avx512") == "avx512vbmi":  # the register-table kernels, by table
        monkeypatch.setenv(PATH_ENV, "avx512")
        assert _core.gemm_cpu_path(7, high) == "avx512vbmi-high"
        assert _core.gemm_cpu_path(6, high_byte_table(rng, 6)) == "avx512vbmi"  # only M = 7 has the high path
        one_low_byte = high.copy()
        one_low_byte[-1] |= 1
        assert _core.gemm_cpu_path(7, one_low_byte) == "avx512vbmi"
        monkeypatch.delenv(PATH_ENV)
    with pytest.raises(ValueError, match="16384"):
        _core.gemm_cpu_path(7, high[:100])
    if "avx512-gather" in available_paths():
        monkeypatch.setenv(PATH_ENV, "avx512-gather")
        assert all(_core.gemm_cpu_path(m) == "avx512-gather" for m in range(1, 12))
        assert _core.gemm_cpu_path(7, high) == "avx512-gather"
    monkeypatch.setenv(PATH_ENV, "generic")
    assert all(_core.gemm_cpu_path(m) == "generic" for m in range(1, 12))
    assert _core.gemm_cpu_path(7, high) == "generic"
    assert _core.gemm_cpu_path(7, high, (8192, 64, 576)) == "generic"
    monkeypatch.setenv(PATH_ENV, "bucket-portable")
    assert all(_core.gemm_cpu_path(m, None, (1, 1, 1)) == "bucket-portable" for m in range(1, 12))
    for bucket in ("avx2", "bucket-avx512"):
        if bucket in available_paths():
            monkeypatch.setenv(PATH_ENV, bucket)
            assert all(
                _core.gemm_cpu_path(m, None, shape) == bucket
                for m in range(1, 12)
                for shape in [(1, 1, 1), (8192, 64, 576)]
            )
    if "avx512" in available_paths():  # the register-table kernels, never the bucket method
        monkeypatch.setenv(PATH_ENV, "avx512")
        assert _core.gemm_cpu_path(7, None, (32768, 64, 576)).startswith("avx512vbmi")
    with pytest.raises(ValueError, match=r"must be >= 0, got \(2, -1, 3\)"):
        _core.gemm_cpu_path(7, None, (2, -1, 3))


def test_path_chosen_per_shape_by_cost():
    """Without AVX-512 (as on AMD before Zen 4 and most Intel client chips) the bucket GEMM
    serves tall GEMMs (conv forward and input gradients: rows = batch x pixels), the generic
    path tiny ones whose 2^M x 2^M float table would cost more than the products."""
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    bucket = "avx2" if "avx2" in available_paths() else ("generic" if x86 else "bucket-portable")
    assert forced_path_name("no-avx512", 7, (8192, 64, 576)) == bucket
    assert forced_path_name("no-avx512", 10, (8192, 64, 576)) == bucket
    assert forced_path_name("no-avx512", 7, (64, 8192, 576)) == bucket  # runs transposed
    assert forced_path_name("no-avx512", 10, (4, 4, 4)) == "generic"
    assert forced_path_name("no-avx512", 10) == bucket  # reported at 1024^3


# --- matmul ---------------------------------------------------------------

SHAPES = [
    (1, 1, 1),
    (1, 7, 1),
    (2, 3, 5),
    (37, 29, 45),
    (4, 16, 64),
    (5, 33, 65),
    (9, 300, 17),
    (3, 1, 130),
    (66, 5, 127),
    (1, 257, 63),
]


@pytest.mark.parametrize("m_bits", [7, 4, 10])
def test_matmul_shapes(cpu_path, m_bits):
    rng = np.random.default_rng(m_bits)
    for table in ("exact", "random", "high"):
        mult = multiplier(m_bits, "truncate" if table == "exact" else "nearest", table)
        for shape in SHAPES:
            m, k, n = shape
            a = ref.random_floats(rng, (m, k))
            b = ref.random_floats(rng, (k, n))
            assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def test_matmul_every_column_count_on_every_path(cpu_path):
    """1..130 columns and 37 rows on each path: every tail of the 64-column strips, the bucket
    kernels' 1- to 4-vector column tiles, their 12/6/4/3-row tiles and the row tails of each
    (both orientations)."""
    rng = np.random.default_rng(2)
    mult = multiplier(7, "nearest", "random")
    a = ref.random_floats(rng, (37, 9))
    b_all = ref.random_floats(rng, (9, 130))
    for n in range(1, 131):
        b = np.ascontiguousarray(b_all[:, :n])
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
        assert_same_bits(core.matmul(b.T.copy(), a.T.copy(), mult), ref_matmul(b.T.copy(), a.T.copy(), mult))


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("m_bits", range(1, 12))
def test_matmul_every_mantissa_width(cpu_path, m_bits, rounding):
    rng = np.random.default_rng(100 + m_bits)
    for table in ("exact", "random", "high"):
        mult = multiplier(m_bits, rounding, table)
        a = ref.random_floats(rng, (13, 40))
        b = ref.random_floats(rng, (40, 70))
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def test_matmul_large():
    rng = np.random.default_rng(2)
    mult = multiplier(7, "nearest", "random")
    a = ref.random_floats(rng, (200, 300), normal_fraction=0.9)
    b = ref.random_floats(rng, (300, 150), normal_fraction=0.9)
    assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def table_ignoring_low_bits(rng, m, a_bits, b_bits):
    """A random table whose entries do not depend on the low `a_bits` of A's fraction nor the low
    `b_bits` of B's, as MBM's conditioned operands (mbm7 reads 6 of each operand's 7 bits)."""
    side = 1 << m
    lut = random_table(rng, m).reshape(side, side)
    keep_a = np.arange(side) & ~((1 << a_bits) - 1)
    keep_b = np.arange(side) & ~((1 << b_bits) - 1)
    return np.ascontiguousarray(lut[np.ix_(keep_a, keep_b)]).reshape(-1)


def bits_read(lut, m, operand):
    """Brute force: M less the most low bits of `operand`'s fraction that no entry depends on."""
    side = 1 << m
    t = lut.reshape(side, side) if operand == "a" else lut.reshape(side, side).T
    ignored = 0
    while ignored < m and (t == t[np.arange(side) & ~((2 << ignored) - 1)]).all():
        ignored += 1
    return m - ignored


IGNORED_BITS = [(7, 1, 1), (7, 2, 0), (5, 0, 3), (10, 1, 1), (3, 3, 1), (1, 1, 0)]


@pytest.mark.parametrize("m_bits, a_bits, b_bits", IGNORED_BITS)
def test_table_selecting_bits_match_brute_force(m_bits, a_bits, b_bits):
    rng = np.random.default_rng(40 + m_bits)
    lut = table_ignoring_low_bits(rng, m_bits, a_bits, b_bits)
    assert [_core.table_selecting_bits(lut, m_bits, op) for op in "ab"] == [m_bits - a_bits, m_bits - b_bits]
    side = 1 << m_bits
    for ia, ib in [(side - 1, side - 1), (1, 0), (0, 1), ((side // 2 + 1) % side, 3 % side)]:
        changed = lut.copy()
        changed[ia * side + ib] ^= np.uint16(0x0100)
        for op in "ab":
            assert _core.table_selecting_bits(changed, m_bits, op) == bits_read(changed, m_bits, op), (ia, ib, op)
    for name in ("mbm7", "mbm5", "mbm1", "mitchell7", "bf16_trunc"):
        mult = multipliers.get(name)
        for op in "ab":
            assert _core.table_selecting_bits(mult.lut, mult.mantissa_bits, op) == bits_read(
                mult.lut, mult.mantissa_bits, op
            )


def test_table_selecting_bits_errors_name_the_bad_value():
    lut = ref.exact_table(7)
    with pytest.raises(ValueError, match="operand must be 'a' or 'b', got 'c'"):
        _core.table_selecting_bits(lut, 7, "c")
    with pytest.raises(ValueError, match="mantissa_bits=7 must have 16384 uint16 entries, got 10"):
        _core.table_selecting_bits(lut[:10], 7, "a")
    with pytest.raises(ValueError, match=r"mantissa_bits must be in \[1, 11\], got 12"):
        _core.table_selecting_bits(lut, 12, "a")
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.table_selecting_bits(lut.astype(np.float32), 7, "a")


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("m_bits, a_bits, b_bits", IGNORED_BITS)
def test_matmul_tables_that_ignore_low_bits(cpu_path, m_bits, a_bits, b_bits, rounding):
    """The bucket method's T rows for only the bits the table reads, in both orientations (a tall C
    selects on A, a wide one on B); and the same table with one entry changed, which every product
    meets (A's column 0 and B's row 0 hold the fraction 1 / 2^M), must read all bits again."""
    rng = np.random.default_rng(50 + m_bits)
    side = 1 << m_bits
    lut = table_ignoring_low_bits(rng, m_bits, a_bits, b_bits)
    changed = lut.copy()
    changed[1 * side + 1] ^= np.uint16(0x0100)
    one_ulp = np.float32(1.0 + 2.0**-m_bits)
    for table in (lut, changed):
        mult = Multiplier("ignores-low-bits", m_bits, rounding, table)
        for m, k, n in [(300, 40, 24), (24, 40, 300)]:
            a = ref.random_floats(rng, (m, k), normal_fraction=0.9)
            b = ref.random_floats(rng, (k, n), normal_fraction=0.9)
            a[:, 0], b[0, :] = one_ulp, -one_ulp
            assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 8, 10, 11]))
def test_matmul_specials(cpu_path, m_bits, table):
    """Rows and columns of zeros, subnormals, inf, NaN, 2^127, FLT_MAX, over/underflowing products."""
    rng = np.random.default_rng(3)
    s = ref.SPECIALS
    for rounding in ROUNDINGS:
        mult = multiplier(m_bits, rounding, table)
        # every special against every special, k = 1 and summed over k
        a = s[:, None]
        assert_same_bits(core.matmul(a, s[None, :], mult), ref_matmul(a, s[None, :], mult))
        k = len(s)
        a = np.tile(s, (9, 1))
        a[1::2] = ref.random_floats(rng, (4, k))
        a[3] = 0.0
        b = np.tile(s[:, None], (1, 70))
        b[:, ::3] = ref.random_floats(rng, (k, 24))
        b[:, 5] = np.inf
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
        # a special left operand in the middle of an otherwise ordinary tile
        a = rng.standard_normal((8, 30)).astype(np.float32)
        b = rng.standard_normal((30, 80)).astype(np.float32)
        a[2, 7], a[5, 0], a[6, 29] = np.inf, np.float32(2.0**127), np.nan
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
def test_matmul_short_a_streams_b(cpu_path, m_bits, table):
    """A with at most two 64-row blocks (and a narrow C, which runs transposed) packs B per
    task and per K block: several K blocks and strips, a B row that rounds to infinity in one
    strip of one K block against zeros of A, specials in later K blocks; 65..129 rows take one
    row block of all rows over groups of strips, or two when there is one group."""
    rng = np.random.default_rng(30 + m_bits)
    mult = multiplier(m_bits, "nearest", table)
    shapes = [(5, 600, 300), (64, 530, 130), (3, 700, 64), (2000, 520, 6), (40, 300, 1)]
    for m, k, n in shapes + [(128, 300, 140), (65, 300, 70), (100, 270, 20), (129, 40, 65)]:
        a = ref.random_floats(rng, (m, k), normal_fraction=0.97)
        b = ref.random_floats(rng, (k, n), normal_fraction=0.97)
        a[:, 400 % k] = 0.0
        a[0, -1] = -0.0
        b[400 % k, n - 1] = np.float32(3.4028235e38)  # rounds to inf (nearest): zeros against it stay zeros
        b[k - 3, 0] = np.inf
        a[m - 1, k - 2] = np.nan
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9, 10]))
def test_matmul_transposed_operands_packed_in_blocks(cpu_path, m_bits, table):
    """A transposed operand (B[k, j] at k + j * K, A[i, k] at i + k * M, as transpose_a/b and
    the narrow convs and filter gradients give them) is packed 16 x 16 at a time: M, K and N
    tails, a B value that rounds to infinity against zeros of A in a K tail and in a full
    block, inf and NaN in both operands, special left operands."""
    rng = np.random.default_rng(50 + m_bits)
    mult = multiplier(m_bits, "nearest", table)
    # (33, 130, 40): the bucket GEMM reads a column-major selecting operand 16 rows at a time,
    # here two groups and a one-row tail over two K blocks of 64 and a tail of 2.
    for m, k, n in [(7, 37, 5), (70, 300, 100), (3, 16, 16), (130, 45, 1), (9, 700, 33), (40, 20, 200), (33, 130, 40)]:
        a = ref.random_floats(rng, (m, k), normal_fraction=0.97)
        b = ref.random_floats(rng, (k, n), normal_fraction=0.97)
        for col in {k - 1, k // 2}:
            a[:, col] = 0.0
            b[col, n // 2] = np.float32(-3.4028235e38)  # rounds to inf (nearest): zeros against it stay zeros
        b[k // 3, n - 1] = np.inf
        b[k - 2, 0] = np.nan
        a[m - 1, k // 4], a[m // 2, 1] = np.inf, np.float32(2.0**127)
        a[1 % m, 3 % k] = -np.inf  # inside a full group of 16 rows and (K >= 64) a whole K block
        expected = ref_matmul(a, b, mult)
        at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
        assert_same_bits(core.matmul(a, bt, mult, transpose_b=True), expected)
        assert_same_bits(core.matmul(at, b, mult, transpose_a=True), expected)
        assert_same_bits(core.matmul(at, bt, mult, transpose_a=True, transpose_b=True), expected)


@pytest.mark.parametrize("m_bits, table", [(5, "exact"), (7, "exact"), (9, "exact"), (10, "exact"), (7, "high")])
def test_matmul_fused_multiply_add_only_where_exact(cpu_path, m_bits, table):
    """The kernels fuse multiply and add only when every product is a normal float. Just past
    either edge of that range a fused kernel would give other bits: a product that overflows
    to inf after a huge sum of the other sign, a product that flushes to zero after a tiny sum."""
    mult = multiplier(m_bits, "truncate", table)
    two = np.float32(2.0)
    cases = [
        # (a0, a1), (b0, b1), expected sum: a0*b0 + a1*b1, the second product out of range
        ((-1.5 * two**126, 1.75 * two**126), (1.5, 3.5), np.inf),  # ea + eb = 381
        ((two**-62, two**-63), (two**-63, two**-64), two**-125),  # ea + eb = 127
    ]
    for (a0, a1), (b0, b1), expected in cases:
        a = np.array([[a0, a1]] * 3, np.float32)
        b = np.tile(np.array([[b0], [b1]], np.float32), (1, 70))
        c = core.matmul(a, b, mult)
        assert_same_bits(c, ref_matmul(a, b, mult))
        if table == "exact":
            assert np.all(c == np.float32(expected))
    # exponent sums on the edges of the fused range (128 and 380), random fractions
    rng = np.random.default_rng(40 + m_bits)
    for ea, eb in [(64, 64), (253, 127), (190, 190), (100, 28)]:
        a = (rng.uniform(1, 2, (9, 300)) * np.exp2(ea - 127.0)).astype(np.float32)
        b = (rng.uniform(1, 2, (300, 80)) * np.exp2(eb - 127.0)).astype(np.float32)
        a[::2] *= -1
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
    # Only the last K block leaves the range (the bucket GEMM decides per block and task):
    # earlier blocks may fuse, the last may not; the same for a column-major A.
    for (a0, a1), (b0, b1), _ in cases:
        a = rng.uniform(1, 2, (70, 300)).astype(np.float32)
        b = rng.uniform(-2, 2, (300, 70)).astype(np.float32)
        a[5::7, -2:], b[-2:, :] = (a0, a1), np.array([[b0], [b1]], np.float32)
        expected = ref_matmul(a, b, mult)
        assert_same_bits(core.matmul(a, b, mult), expected)
        assert_same_bits(core.matmul(np.ascontiguousarray(a.T), b, mult, transpose_a=True), expected)


def test_matmul_overflow_and_underflow_in_sums():
    """Products that overflow to inf, sums that cancel to NaN, partial sums that underflow."""
    mult = multiplier(7, "truncate")
    big, tiny = np.float32(1e30), np.float32(1e-25)
    a = np.array([[big, big, 1.0], [tiny, -tiny, tiny], [1e20, 1e20, -1e20]], np.float32)
    b = np.array([[big, 1.0, -tiny], [-big, -1.0, tiny], [3.0, 2.0**-60, 1e19]], np.float32)
    assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))


def test_matmul_transposes_and_batches(cpu_path):
    rng = np.random.default_rng(4)
    mult = multiplier(6, "nearest", "random")
    a = ref.random_floats(rng, (3, 9, 21))
    b = ref.random_floats(rng, (3, 21, 70))
    expected = np.stack([ref_matmul(a[i], b[i], mult) for i in range(3)])
    assert_same_bits(core.matmul(a, b, mult), expected)
    at, bt = np.swapaxes(a, -1, -2).copy(), np.swapaxes(b, -1, -2).copy()
    assert_same_bits(core.matmul(at, b, mult, transpose_a=True), expected)
    assert_same_bits(core.matmul(a, bt, mult, transpose_b=True), expected)
    assert_same_bits(core.matmul(at, bt, mult, transpose_a=True, transpose_b=True), expected)
    # broadcasting: one B for every batch, and a [2, 1] batch against [3]
    expected_b0 = np.stack([ref_matmul(a[i], b[0], mult) for i in range(3)])
    assert_same_bits(core.matmul(a, b[0], mult), expected_b0)
    a4 = ref.random_floats(rng, (2, 1, 5, 21))
    expected4 = np.stack([np.stack([ref_matmul(a4[i, 0], b[j], mult) for j in range(3)]) for i in range(2)])
    assert_same_bits(core.matmul(a4, b, mult), expected4)


def test_matmul_rank_and_batch_errors_name_the_shapes():
    mult = multiplier(7, "truncate", "random")
    ones = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=re.escape("matmul operands must have rank >= 2, got shapes (3,) and (3, 4)")):
        core.matmul(ones(3), ones(3, 4), mult)
    with pytest.raises(
        ValueError, match=re.escape("matmul: batch dimensions of (2, 3, 4) and (5, 4, 2) do not broadcast")
    ):
        core.matmul(ones(2, 3, 4), ones(5, 4, 2), mult)
    assert core.matmul(ones(2, 1, 3, 4), ones(3, 4, 5), mult).shape == (2, 3, 3, 5)


def _pool_size_in_child(env_update, cpus=None):
    """_core's default pool size in a fresh process with `env_update` and, if given, pinned to `cpus`."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("APPROXTRAIN_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_update)
    code = "import os, sys\n"
    if cpus is not None:
        code += f"os.sched_setaffinity(0, {sorted(cpus)!r})\n"
    code += "from approxtrain import core\nprint(core.num_threads())\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_pool_uses_the_cores_it_is_given():
    """The pool's size: APPROXTRAIN_NUM_THREADS, else OMP_NUM_THREADS, else the cores this process
    may run on (its affinity mask), not the machine's core count."""
    import os

    given = sorted(os.sched_getaffinity(0))
    assert _pool_size_in_child({}) == len(given)
    assert _pool_size_in_child({}, cpus=given[:1]) == 1
    assert _pool_size_in_child({"OMP_NUM_THREADS": "1"}) == 1
    assert _pool_size_in_child({"OMP_NUM_THREADS": "3"}) == 3
    assert _pool_size_in_child({"APPROXTRAIN_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}) == 2
    assert _pool_size_in_child({"OMP_NUM_THREADS": "0"}, cpus=given[:1]) == 1  # not a count: ignored


def test_matmul_same_bits_with_one_or_two_threads():
    rng = np.random.default_rng(5)
    saved = core.num_threads()
    try:
        for m_bits, shape in [(7, (150, 200, 300)), (10, (40, 90, 130)), (7, (3, 500, 700))]:
            mult = multiplier(m_bits, "nearest", "random")
            a = ref.random_floats(rng, shape[:2], normal_fraction=0.95)
            b = ref.random_floats(rng, shape[1:], normal_fraction=0.95)
            core.set_num_threads(1)
            one = core.matmul(a, b, mult)
            core.set_num_threads(2)
            two = core.matmul(a, b, mult)
            assert_same_bits(two, one)
        assert_same_bits(one, ref_matmul(a, b, mult))
        # many small products: threads split the batch
        a = ref.random_floats(rng, (8, 33, 40), normal_fraction=0.95)
        b = ref.random_floats(rng, (8, 40, 50), normal_fraction=0.95)
        core.set_num_threads(1)
        one = core.matmul(a, b, mult)
        core.set_num_threads(2)
        assert_same_bits(core.matmul(a, b, mult), one)
        assert_same_bits(one[5], ref_matmul(a[5], b[5], mult))
    finally:
        core.set_num_threads(saved)


@pytest.mark.parametrize("m_bits", [3, 7, 10])
def test_matmul_follows_a_table_changed_in_place_and_tables_at_one_width(cpu_path, m_bits):
    """The bucket paths keep each table's float copy between GEMMs (content_cache.h): a table
    edited in place, and other tables of the same width in turn, must give their own products."""
    rng = np.random.default_rng(m_bits)
    a = rng.standard_normal((40, 33)).astype(np.float32)
    b = rng.standard_normal((33, 70)).astype(np.float32)
    first, second = multiplier(m_bits, table="random", seed=1), multiplier(m_bits, table="random", seed=2)
    for mult in (first, second, first):
        assert_same_bits(core.matmul(a, b, mult), ref_matmul(a, b, mult))
    lut = random_table(np.random.default_rng(3), m_bits)
    edited = Multiplier("edited", m_bits, "truncate", lut)
    assert_same_bits(core.matmul(a, b, edited), ref_matmul(a, b, edited))
    lut.flags.writeable = True  # Multiplier froze it
    lut[:] = np.roll(lut.copy(), 1)  # the same memory, other contents
    got = core.matmul(a, b, edited)
    assert_same_bits(got, ref_matmul(a, b, edited))
    assert not np.array_equal(got, ref_matmul(a, b, Multiplier("before", m_bits, "truncate", np.roll(lut, -1))))


def test_matmul_zero_sized():
    mult = multiplier(7)
    assert core.matmul(np.ones((0, 3), np.float32), np.ones((3, 4), np.float32), mult).shape == (0, 4)
    out = core.matmul(np.ones((2, 0), np.float32), np.ones((0, 4), np.float32), mult)
    assert_same_bits(out, np.zeros((2, 4), np.float32))


# --- multiply -------------------------------------------------------------


@pytest.mark.parametrize("m_bits", [1, 7, 10, 11])
def test_multiply(cpu_path, m_bits):
    rng = np.random.default_rng(6)
    for rounding in ROUNDINGS:
        mult = multiplier(m_bits, rounding, "random")
        a = ref.random_floats(rng, 5000)
        b = ref.random_floats(rng, 5000)
        expected = ref.multiply(a, b, mult.lut, m_bits, rounding)
        assert_same_bits(core.multiply(a, b, mult), expected)
        s = ref.SPECIALS
        assert_same_bits(
            core.multiply(s[:, None], s[None, :], mult),
            ref.multiply(s[:, None], s[None, :], mult.lut, m_bits, rounding),
        )


# --- conv -----------------------------------------------------------------


def conv_case(rng, n, h, w, c, kh, kw, o, groups, strides, dilations, padding):
    x = ref.random_floats(rng, (n, h, w, c), normal_fraction=0.95)
    wt = ref.random_floats(rng, (kh, kw, c // groups, o), normal_fraction=0.95)
    pads = core.conv_paddings(padding, (h, w), (kh, kw), strides, dilations)
    return x, wt, pads


CONV_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 7, 6, 5, 3, 3, 5, 5, (1, 1), (1, 1), "SAME"),  # depthwise, multiplier 1
    (1, 9, 8, 3, 3, 2, 6, 3, (2, 1), (1, 2), "SAME"),  # depthwise, multiplier 2, strides, dilations
    (2, 6, 7, 4, 2, 3, 12, 4, (1, 2), (1, 1), "VALID"),  # depthwise, multiplier 3
    (1, 5, 5, 17, 3, 3, 17, 17, (2, 2), (1, 1), [[2, 0], [1, 3]]),  # depthwise, explicit padding
    (1, 6, 6, 6, 3, 3, 4, 2, (1, 1), (1, 1), "SAME"),  # grouped
    (2, 5, 4, 3, 2, 2, 4, 1, (1, 1), (2, 1), "VALID"),  # ordinary
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_and_grads(cpu_path, case):
    n, h, w, c, kh, kw, o, groups, strides, dilations, padding = case
    rng = np.random.default_rng(7)
    mult = multiplier(7, "nearest", "random")
    x, wt, pads = conv_case(rng, *case)
    kwargs = dict(strides=strides, padding=padding, dilations=dilations, groups=groups)
    rkw = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
    assert_conv_phases_same_bits(rng, x, wt, mult, kwargs, rkw)


def assert_conv_phases_same_bits(rng, x, wt, mult, kwargs, rkw):
    """Forward, input gradient (for a random dy) and filter gradient of core's conv against the
    reference; kwargs are core's conv arguments, rkw the reference's."""
    args = mult.lut, mult.mantissa_bits, mult.operand_rounding
    y = core.conv2d(x, wt, mult, **kwargs)
    assert_same_bits(y, ref.conv2d(x, wt, *args, **rkw))
    dy = ref.random_floats(rng, y.shape, normal_fraction=0.95)
    assert_same_bits(
        core.conv2d_input_grad(x.shape, wt, dy, mult, **kwargs), ref.conv2d_input_grad(x.shape, wt, dy, *args, **rkw)
    )
    assert_same_bits(
        core.conv2d_filter_grad(x, wt.shape, dy, mult, **kwargs), ref.conv2d_filter_grad(x, wt.shape, dy, *args, **rkw)
    )


# Wide convolutions (C per group >= 64 for the input gradient, O per group >= 64 for the
# forward pass) take the gathered GEMM, which decodes each input pixel once instead of
# building patches; a special value sends it back to the patch path.
WIDE_CONV_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (1, 5, 4, 64, 3, 3, 64, 1, (1, 1), (1, 1), "SAME"),
    (2, 6, 5, 3, 3, 2, 70, 1, (2, 1), (1, 2), [[1, 2], [0, 1]]),
    (1, 7, 6, 130, 2, 3, 132, 2, (1, 2), (2, 1), "VALID"),
    (3, 13, 11, 8, 3, 3, 64, 1, (2, 2), (1, 1), "SAME"),  # patch rows over several images and blocks
]


def check_conv_bits(case, m_bits, table, seed, specials, filter_grad=True):
    """conv2d and its input (and filter) gradient bit for bit against the reference, on
    ordinary operands with zeros, a negative zero and a subnormal (a zero operand), plus
    `specials`: "none", "inf_nan" (inf and NaN in x, -inf in dy) or "w_rounds_to_inf"
    (weights that round to infinity: against zeros, padding included, a zero product)."""
    groups, strides, dilations, padding = case[-4:]
    rng = np.random.default_rng(seed)
    mult = multiplier(m_bits, "nearest", table)
    args = mult.lut, m_bits, "nearest"
    x, wt, pads = conv_case(rng, *case)
    x = ref.random_floats(rng, x.shape, normal_fraction=1.0)
    x.flat[::7] = 0.0
    x.flat[3] = -0.0
    x.flat[5] = 1e-40
    wt = ref.random_floats(rng, wt.shape, normal_fraction=1.0)
    if specials == "inf_nan":
        x.flat[1], x.flat[x.size // 2] = np.inf, np.nan
    if specials == "w_rounds_to_inf":
        wt.flat[2] = wt.flat[-1] = np.float32(3.4028235e38)
    kwargs = dict(strides=strides, padding=padding, dilations=dilations, groups=groups)
    rkw = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
    y = core.conv2d(x, wt, mult, **kwargs)
    assert_same_bits(y, ref.conv2d(x, wt, *args, **rkw))
    dy = ref.random_floats(rng, y.shape, normal_fraction=1.0)
    dy.flat[::5] = 0.0
    if specials == "inf_nan":
        dy.flat[4] = -np.inf
    assert_same_bits(
        core.conv2d_input_grad(x.shape, wt, dy, mult, **kwargs), ref.conv2d_input_grad(x.shape, wt, dy, *args, **rkw)
    )
    if filter_grad:
        assert_same_bits(
            core.conv2d_filter_grad(x, wt.shape, dy, mult, **kwargs),
            ref.conv2d_filter_grad(x, wt.shape, dy, *args, **rkw),
        )


@pytest.mark.parametrize("case", WIDE_CONV_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_wide_conv_gathered_path(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 11 + m_bits, specials, filter_grad=False)


# Convolutions with 33 to 48 output channels (forward) or input channels (input gradient)
# per group: gemm_cpu runs them untransposed (their columns fill 3 of a strip's 4 vectors,
# too many to gain from the transpose), and the kernels compute only those 3 vectors --
# AMConv3D's three depth taps of 16 channels side by side. With a multiple of 16 input
# channels the filter gradient reads x in place, 432 patch columns: a 48-column tail strip.
THREE_VECTOR_CONV_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 6, 7, 48, 3, 3, 48, 1, (1, 1), (1, 1), "SAME"),  # AMConv3D's products, small
    (2, 7, 5, 40, 2, 3, 33, 1, (2, 1), (1, 2), [[1, 0], [2, 1]]),  # 33 and 40 columns: lane tails
    (1, 6, 6, 96, 3, 3, 90, 2, (1, 1), (1, 1), "VALID"),  # groups of 48 and 45 channels
]


@pytest.mark.parametrize("case", THREE_VECTOR_CONV_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_conv_three_vector_strips(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 17 + m_bits, specials)


# Narrow convolutions whose patch rows are short runs (a window row of under 16 floats; an
# input gradient with O per group < 16) build their patch matrices K-major, one line per
# (kh, kw, c) from channel planes, chunk by chunk.
LINE_CONV_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 112, 96, 2, 5, 5, 3, 1, (1, 1), (1, 1), "SAME"),  # forward and filter grad over two chunks
    (2, 30, 30, 5, 7, 7, 15, 1, (1, 1), (1, 1), "SAME"),  # input grad over two chunks
    (1, 11, 13, 2, 3, 3, 4, 1, (2, 2), (2, 1), [[2, 1], [0, 3]]),  # strides that do not divide
    (2, 10, 17, 1, 2, 3, 5, 1, (1, 3), (1, 2), "VALID"),  # column stride 3, dilation 2
    (1, 9, 8, 6, 3, 2, 6, 3, (1, 2), (1, 1), "SAME"),  # groups: planes of the group's channels
]


@pytest.mark.parametrize("case", LINE_CONV_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_narrow_conv_patch_lines(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 23 + m_bits, specials)


# Narrow stride-1 convolutions on the AVX-512 table paths read their patch matrix in place
# (gemm_shifted.h): each source value encoded once into zero-padded channel planes, every
# grid position of the planes computed, the valid outputs kept. These cases cover the
# forward pass (SAME; VALID runs the materialized path: too much of its grid is invalid) and
# the input gradient (SAME, VALID, dilations, groups, asymmetric and oversized padding, which
# falls back, strides up to K = 288), with each table layout (M = 5: index dwords of both bytes; M = 7 random:
# index bytes; M = 7 high-byte).
SHIFTED_CONV_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 28, 28, 1, 5, 5, 6, 1, (1, 1), (1, 1), "SAME"),  # LeNet-5's first layer
    (3, 14, 14, 6, 5, 5, 16, 1, (1, 1), (1, 1), "VALID"),  # its second: input gradient in place
    (2, 8, 8, 32, 3, 3, 32, 1, (1, 1), (1, 1), "SAME"),  # 32 channels, 9 x 32 patch columns
    (1, 9, 11, 4, 3, 3, 8, 1, (1, 1), (2, 1), "SAME"),  # dilation: taps two rows apart
    (1, 8, 8, 6, 3, 3, 6, 2, (1, 1), (1, 1), "SAME"),  # groups: the planes of one group
    (2, 7, 9, 3, 3, 2, 5, 1, (1, 1), (1, 1), [[2, 0], [1, 0]]),  # asymmetric padding
    (1, 6, 7, 2, 3, 3, 4, 1, (1, 1), (1, 1), [[3, 0], [0, 3]]),  # padding past the filter: falls back
    # strided: the input gradient reads dy spread out by the strides (zeros between)
    (2, 12, 11, 4, 3, 3, 8, 1, (2, 2), (1, 1), "SAME"),  # ResNet-20's downsampling, odd width
    (1, 13, 10, 6, 3, 2, 5, 1, (2, 3), (1, 2), "VALID"),  # unequal strides, dilation, leftover rows
    (1, 9, 9, 3, 3, 3, 4, 1, (3, 2), (1, 1), [[1, 2], [2, 0]]),  # explicit padding
    (1, 8, 8, 4, 3, 3, 40, 1, (2, 2), (1, 1), "SAME"),  # K = 360 > 288: the materialized path
]


@pytest.mark.parametrize("case", SHIFTED_CONV_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_narrow_conv_read_in_place(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 31 + m_bits, specials)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
def test_narrow_conv_huge_operands_take_the_materialized_path(cpu_path, where):
    """Finite values of 2^126 and more (which the in-place path declines: their reduced
    exponent may reach the packed operands' limits) in the source, the weights or dy: the
    conv and its input gradient still give the reference's bits."""
    case = (2, 12, 10, 3, 3, 3, 6, 1, (1, 1), (1, 1), "SAME")
    groups, strides, dilations, padding = case[-4:]
    rng = np.random.default_rng(41)
    mult = multiplier(7, "nearest", "high")
    args = mult.lut, 7, "nearest"
    _, _, pads = conv_case(rng, *case)
    x = ref.random_floats(rng, (2, 12, 10, 3), normal_fraction=1.0)
    wt = ref.random_floats(rng, (3, 3, 3, 6), normal_fraction=1.0)
    dy = ref.random_floats(rng, (2, 12, 10, 6), normal_fraction=1.0)
    {"x": x, "w": wt, "dy": dy}[where].flat[3] = np.float32(2.0**126 * 1.5)
    kwargs = dict(strides=strides, padding=padding, dilations=dilations, groups=groups)
    rkw = dict(strides=strides, dilations=dilations, pads=pads, groups=groups)
    y = core.conv2d(x, wt, mult, **kwargs)
    assert_same_bits(y, ref.conv2d(x, wt, *args, **rkw))
    assert_same_bits(
        core.conv2d_input_grad(x.shape, wt, dy, mult, **kwargs), ref.conv2d_input_grad(x.shape, wt, dy, *args, **rkw)
    )


@pytest.mark.parametrize("channels, filters", [(32, 1), (1, 32)])
def test_narrow_conv_read_in_place_over_several_image_chunks(channels, filters):
    """Planes of more than 4 MiB are encoded and multiplied a few images at a time: with 32
    planes of 130 x 130 each image is a chunk of its own, for the forward pass (32 input
    channels) and for the input gradient (32 channels of dy). Bits as the reference's."""
    rng = np.random.default_rng(47)
    mult = multiplier(7, "nearest", "high")
    args = mult.lut, 7, "nearest"
    x = ref.random_floats(rng, (2, 128, 128, channels), normal_fraction=1.0)
    wt = ref.random_floats(rng, (3, 3, channels, filters), normal_fraction=1.0)
    dy = ref.random_floats(rng, (2, 128, 128, filters), normal_fraction=1.0)
    x.flat[::9] = 0.0
    rkw = dict(strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), groups=1)
    if channels > filters:
        assert_same_bits(core.conv2d(x, wt, mult, padding="SAME"), ref.conv2d(x, wt, *args, **rkw))
    else:
        assert_same_bits(
            core.conv2d_input_grad(x.shape, wt, dy, mult, padding="SAME"),
            ref.conv2d_input_grad(x.shape, wt, dy, *args, **rkw),
        )


def test_narrow_conv_read_in_place_same_bits_with_one_or_two_threads():
    """The in-place conv encodes its planes and runs its GEMM in parallel parts: the bits do
    not depend on how many threads share them."""
    rng = np.random.default_rng(43)
    mult = multiplier(7, "nearest", "random")
    x = ref.random_floats(rng, (4, 20, 20, 3), normal_fraction=1.0)
    wt = ref.random_floats(rng, (5, 5, 3, 6), normal_fraction=1.0)
    dy = ref.random_floats(rng, (4, 20, 20, 6), normal_fraction=1.0)
    saved = core.num_threads()
    try:
        results = []
        for threads in (1, 2):
            core.set_num_threads(threads)
            results.append(
                (
                    core.conv2d(x, wt, mult, padding="SAME"),
                    core.conv2d_input_grad(x.shape, wt, dy, mult, padding="SAME"),
                )
            )
    finally:
        core.set_num_threads(saved)
    for one, two in zip(*results):
        assert_same_bits(one, two)


# Filter gradients with fewer than 64 output channels per group and a multiple of 16 input
# channels per group run transposed on the AVX-512 table paths (M <= 7) and read x in place
# (gemm_shifted.h): x encoded once into a zero-padded copy of the group's channels, each
# 16-column vector of the patch matrix one tap's 16 channels at its own offset. Strides,
# dilations, groups, explicit and VALID padding, a strip with a vector past the patch
# columns (48 of 64), several strips with a 16-column tail (144), odd image sizes, K over
# several K blocks.
SHIFTED_DW_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 9, 7, 16, 3, 3, 16, 1, (1, 1), (1, 1), "SAME"),  # ResNet-20's first stage, 144 columns
    (1, 11, 10, 32, 3, 3, 32, 1, (2, 2), (1, 1), "SAME"),  # stride 2, 288 columns
    (2, 8, 9, 32, 1, 3, 6, 2, (1, 1), (1, 2), [[1, 2], [0, 1]]),  # groups of 16, 48 columns, dilation
    (1, 10, 12, 16, 3, 2, 40, 1, (2, 1), (2, 1), "VALID"),  # VALID, dilated rows, 40 channels
    # K above one K block (256): each task takes every strip, K block by K block, and the
    # tasks split the rows (22 = 12 + 10: a 2-row tile); 432 columns end in a 48-column strip
    (2, 12, 11, 48, 3, 3, 22, 1, (1, 1), (1, 1), "SAME"),
]


@pytest.mark.parametrize("case", SHIFTED_DW_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_filter_grad_reads_x_in_place(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 67 + m_bits, specials)


def test_filter_grad_reads_x_in_place_over_several_image_chunks(monkeypatch):
    """Encoded images of more than 4 MiB in all are read a few images at a time (here one
    padded 186 x 186 x 16 image per GEMM, three GEMMs accumulating): the bits of the bucket
    path (forced), itself checked against the reference above."""
    rng = np.random.default_rng(71)
    mult = multiplier(5, "nearest", "random")
    x = ref.random_floats(rng, (3, 184, 184, 16), normal_fraction=1.0)
    dy = ref.random_floats(rng, (3, 184, 184, 8), normal_fraction=1.0)
    dy.flat[::13] = 0.0
    auto = core.conv2d_filter_grad(x, (3, 3, 16, 8), dy, mult, padding="SAME")
    monkeypatch.setenv(PATH_ENV, "bucket-portable")
    assert_same_bits(auto, core.conv2d_filter_grad(x, (3, 3, 16, 8), dy, mult, padding="SAME"))


# Other filter gradients that gemm_cpu runs as they are (C not transposed: 32 or more
# output channels per group, or few patch columns) on the AVX-512 paths pack each input value once
# into channel planes and copy the rows (kh, kw, c) of A from them, an output row's run at a
# time (gemm_packed_left.h): strides, dilations, groups, asymmetric padding, 1 x 1 filters,
# several GEMMs over K (at most 4096 output pixels each) and column tails. Specials, and values of
# 2^126 or more, take the patch path.
PACKED_DW_CASES = [
    # n, h, w, c, kh, kw, o, groups, strides, dilations, padding
    (2, 9, 11, 24, 3, 3, 32, 1, (1, 1), (1, 1), "SAME"),  # 216 patch columns, odd image sizes
    (1, 11, 13, 4, 3, 3, 40, 1, (2, 2), (1, 1), "SAME"),  # stride 2: every other input column
    (2, 10, 9, 6, 3, 2, 64, 2, (1, 2), (2, 1), [[2, 1], [0, 3]]),  # groups, dilation, explicit padding
    (1, 70, 64, 2, 3, 3, 33, 1, (1, 1), (1, 1), "SAME"),  # K = 4480: two GEMMs, 33 columns
    (3, 7, 5, 1, 1, 1, 48, 1, (1, 1), (1, 1), "VALID"),  # one channel, a 1 x 1 filter
]


@pytest.mark.parametrize("case", PACKED_DW_CASES)
@pytest.mark.parametrize("m_bits, table", with_high_table([5, 7, 9]))
@pytest.mark.parametrize("specials", ["none", "inf_nan", "w_rounds_to_inf"])
def test_filter_grad_from_packed_input_planes(cpu_path, case, m_bits, table, specials):
    check_conv_bits(case, m_bits, table, 53 + m_bits, specials)


@pytest.mark.parametrize("where", ["x", "dy"])
@pytest.mark.parametrize("channels, filters", [(5, 32), (16, 8)])
def test_filter_grad_huge_operands_take_the_patch_path(cpu_path, where, channels, filters):
    """A finite value of 2^126 or more in x or dy: the packed input planes (5 channels) and
    the in-place read (16 channels, which checks its operands itself) decline them."""
    case = (2, 9, 8, channels, 3, 3, filters, 1, (1, 1), (1, 1), "SAME")
    rng = np.random.default_rng(59)
    mult = multiplier(7, "nearest", "random")
    _, _, pads = conv_case(rng, *case)
    x = ref.random_floats(rng, (2, 9, 8, channels), normal_fraction=1.0)
    dy = ref.random_floats(rng, (2, 9, 8, filters), normal_fraction=1.0)
    {"x": x, "dy": dy}[where].flat[7] = np.float32(-(2.0**126) * 1.25)
    shape = (3, 3, channels, filters)
    expected = ref.conv2d_filter_grad(x, shape, dy, mult.lut, 7, "nearest", pads=pads)
    assert_same_bits(core.conv2d_filter_grad(x, shape, dy, mult, padding="SAME"), expected)


def test_filter_grad_from_packed_input_planes_over_several_image_chunks(monkeypatch):
    """Input planes of more than 8 MiB are packed a few images at a time (here one image of
    210 x 210 x 24 per chunk, three chunks): the bits of the bucket path (forced), itself
    checked against the reference above."""
    rng = np.random.default_rng(61)
    mult = multiplier(7, "nearest", "high")
    x = ref.random_floats(rng, (3, 210, 210, 24), normal_fraction=1.0)
    dy = ref.random_floats(rng, (3, 105, 105, 32), normal_fraction=1.0)
    x.flat[::11] = 0.0
    kwargs = dict(strides=2, padding="SAME")
    auto = core.conv2d_filter_grad(x, (3, 3, 24, 32), dy, mult, **kwargs)
    monkeypatch.setenv(PATH_ENV, "bucket-portable")
    assert_same_bits(auto, core.conv2d_filter_grad(x, (3, 3, 24, 32), dy, mult, **kwargs))


def test_depthwise_specials(cpu_path):
    """Padding zeros against infinite weights give NaN (against weights that only round to
    infinity, zeros); specials in x, w and dy."""
    rng = np.random.default_rng(8)
    mult = multiplier(7, "nearest", "random")
    args = mult.lut, 7, "nearest"
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 8)).astype(np.float32)
    x[0, 1, 2, 1], x[0, 3, 3, 2], x[0, 0, 0, 3] = np.inf, np.nan, np.float32(2.0**127)
    w[0, 0, 0, 5], w[1, 2, 0, 0] = np.inf, 0.0
    w[2, 2, 0, 2] = np.float32(3.4028235e38)  # rounds to inf: against padding zeros still a zero product
    kw = dict(strides=1, padding="SAME", groups=4)
    rkw = dict(pads=core.conv_paddings("SAME", (5, 5), (3, 3), (1, 1), (1, 1)), groups=4)
    y = core.conv2d(x, w, mult, **kw)
    assert_same_bits(y, ref.conv2d(x, w, *args, **rkw))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[0, 2, 2, 3] = -np.inf
    dy[0, 4, 4, 6] = np.float32(-3.4028235e38)
    assert_same_bits(
        core.conv2d_input_grad(x.shape, w, dy, mult, **kw), ref.conv2d_input_grad(x.shape, w, dy, *args, **rkw)
    )
    assert_same_bits(
        core.conv2d_filter_grad(x, w.shape, dy, mult, **kw), ref.conv2d_filter_grad(x, w.shape, dy, *args, **rkw)
    )


def test_depthwise_same_bits_with_one_or_two_threads():
    rng = np.random.default_rng(9)
    mult = multiplier(7, "nearest", "random")
    x = ref.random_floats(rng, (2, 20, 20, 32), normal_fraction=0.95)
    w = ref.random_floats(rng, (3, 3, 1, 64), normal_fraction=0.95)
    dy = ref.random_floats(rng, (2, 10, 10, 64), normal_fraction=0.95)
    kw = dict(strides=2, padding="SAME", groups=32)
    saved = core.num_threads()
    try:
        results = []
        for threads in (1, 2):
            core.set_num_threads(threads)
            results.append(
                (
                    core.conv2d(x, w, mult, **kw),
                    core.conv2d_input_grad(x.shape, w, dy, mult, **kw),
                    core.conv2d_filter_grad(x, w.shape, dy, mult, **kw),
                )
            )
        for one, two in zip(*results):
            assert_same_bits(two, one)
    finally:
        core.set_num_threads(saved)
    pads = core.conv_paddings("SAME", (20, 20), (3, 3), (2, 2), (1, 1))
    assert_same_bits(
        results[0][2],
        ref.conv2d_filter_grad(x, w.shape, dy, mult.lut, 7, "nearest", strides=(2, 2), pads=pads, groups=32),
    )


# --- benchmark section ----------------------------------------------------


def test_bench_section_rows(monkeypatch, capsys):
    import argparse

    from approxtrain.bench import core_cpu

    assert all(np.array_equal(core_cpu._exact_table(m), ref.exact_table(m)) for m in range(1, 12))
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    core_cpu.add_arguments(parser)
    args = parser.parse_args(["--quick", "--sizes", "32,65", "--repeats", "1"])
    monkeypatch.setattr(core_cpu, "SETTLE_SECONDS", 0.0)
    rows = core_cpu.run(args)
    assert [r["m"] for r in rows] == [32, 65]
    m7 = core_cpu._multiplier("mbm7", 7, "truncate")
    assert all(
        r["path"] == _core.gemm_cpu_path(7, m7.lut, (r["m"], r["n"], r["k"]))
        and r["mantissa_bits"] == 7
        and r["ratio"] > 0
        for r in rows
    )
    # forced paths side by side, on a shape that is not square
    args = parser.parse_args(["--quick", "--shapes", "40x3x70", "--cpu-paths", "generic,avx2", "--repeats", "1"])
    rows = core_cpu.run(args)
    assert [(r["m"], r["n"], r["k"], r["cpu_path"]) for r in rows] == [(40, 3, 70, "generic"), (40, 3, 70, "avx2")]
    assert rows[0]["path"] == "generic"
    assert rows[1]["path"] == ("avx2" if "avx2" in available_paths() else "generic")
    with pytest.raises(SystemExit):
        parser.parse_args(["--shapes", "8192x64"])
    assert "argument --shapes: '8192x64' is not MxNxK with positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--cpu-paths", "auto,avx3"])
    assert "argument --cpu-paths: unknown path 'avx3'; choose from auto, generic, avx2" in capsys.readouterr().err
