"""The integer table GEMM of the native core (approxtrain.core.int_matmul, _core.int_matmul):
bit-exact int64 sums against the NumPy reference (tests/int_gemm_reference.py) on every CPU
path this machine has (forced with APPROXTRAIN_CPU_PATH), for signed, unsigned and wide random
tables, every shape edge, transposes and batch broadcasting; sums past int32; clear errors.
No TensorFlow."""

import numpy as np
import pytest

from approxtrain import _core, core
from approxtrain.multipliers import IntegerMultiplier, Multiplier
from cpu_flags import FLAGS
from int_gemm_reference import INT32_MAX, INT32_MIN, patterns, reference, table


# (APPROXTRAIN_CPU_PATH, the path int_gemm_cpu_path must then report, before any "/transposed").
# A forced path the CPU lacks falls back to the automatic choice (never enabled): not listed.
FORCED = [("generic", "direct"), ("bucket-portable", "bucket-portable")]
if "avx2" in FLAGS:
    FORCED.append(("avx2", "bucket-avx2"))
if {"avx512f", "avx512bw"} <= FLAGS:
    FORCED.append(("avx512", "bucket-avx512"))
PATHS = [p for p, _ in FORCED] + ["auto"]

# (m, n, k): ones, primes, a column block (32) and more, the K block (8) and more, row parts
# (> 2048 rows), short-and-wide (the transposed bucket orientation) and tall-and-narrow.
SHAPES = [
    (1, 1, 1),
    (1, 7, 1),
    (7, 1, 13),
    (3, 5, 7),
    (13, 37, 11),
    (97, 33, 17),
    (31, 64, 8),
    (300, 65, 19),
    (5, 300, 9),
    (2100, 40, 9),
    (40, 2100, 3),
    (64, 3, 200),
]


def set_path(monkeypatch, path):
    if path == "auto":
        monkeypatch.delenv("APPROXTRAIN_CPU_PATH", raising=False)
    else:
        monkeypatch.setenv("APPROXTRAIN_CPU_PATH", path)


@pytest.mark.parametrize("path,expected", FORCED)
def test_forced_path_is_taken(monkeypatch, path, expected):
    set_path(monkeypatch, path)
    for shape in [(64, 64, 64), (1, 1, 1), (4000, 4000, 4), (3, 4000, 64)]:
        assert _core.int_gemm_cpu_path(*shape).split("/")[0] == expected


def test_automatic_choice_by_shape(monkeypatch):
    set_path(monkeypatch, "auto")
    assert _core.int_gemm_cpu_path(2, 3, 4) == "direct"
    assert _core.int_gemm_cpu_path(64, 64, 64) == "direct"  # the expansion's fixed cost dominates
    assert _core.int_gemm_cpu_path(16, 16, 1024) == "direct"  # 256 table rows per k for 16 rows
    assert _core.int_gemm_cpu_path(8192, 64, 576).startswith("bucket-")
    assert not _core.int_gemm_cpu_path(8192, 64, 576).endswith("/transposed")
    assert _core.int_gemm_cpu_path(16, 8192, 576).endswith("/transposed")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["signed", "unsigned", "wide"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bit_exact(monkeypatch, path, kind, shape):
    set_path(monkeypatch, path)
    m, n, k = shape
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    pa, pb, products = patterns(rng, (m, k)), patterns(rng, (k, n)), table(kind)
    got = _core.int_matmul(pa, pb, products)
    assert got.dtype == np.int64 and got.shape == (m, n)
    np.testing.assert_array_equal(got, reference(pa, pb, products))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposes_and_batch_broadcast(monkeypatch, path, transpose_a, transpose_b):
    set_path(monkeypatch, path)
    rng = np.random.default_rng(7)
    m, n, k = 37, 45, 23
    pa = patterns(rng, (2, 1, k, m) if transpose_a else (2, 1, m, k))
    pb = patterns(rng, (3, n, k) if transpose_b else (3, k, n))
    products = table("signed", seed=3)
    got = _core.int_matmul(pa, pb, products, transpose_a, transpose_b)
    assert got.shape == (2, 3, m, n)
    np.testing.assert_array_equal(got, reference(pa, pb, products, transpose_a, transpose_b))


@pytest.mark.parametrize("path", PATHS)
def test_non_contiguous_values_and_broadcast_row(monkeypatch, path):
    set_path(monkeypatch, path)
    rng = np.random.default_rng(8)
    pa = patterns(rng, (1, 300, 21))
    pb = patterns(rng, (4, 21, 70))
    products = table("unsigned", seed=4)
    np.testing.assert_array_equal(_core.int_matmul(pa, pb, products), reference(pa, pb, products))


@pytest.mark.parametrize("path", PATHS)
def test_sums_past_int32_are_exact(monkeypatch, path):
    """70000 products of -32768 sum to -2293760000 < INT32_MIN: int32 blocks widened to int64."""
    set_path(monkeypatch, path)
    k = 70000
    rng = np.random.default_rng(9)
    pa, pb = patterns(rng, (2, k)), patterns(rng, (k, 3))
    extreme = np.full((256, 256), -32768, np.int32)
    got = _core.int_matmul(pa, pb, extreme)
    np.testing.assert_array_equal(got, np.full((2, 3), -32768 * k, np.int64))
    assert got.min() < INT32_MIN
    mixed = table("unsigned", seed=5)
    np.testing.assert_array_equal(_core.int_matmul(pa, pb, mixed), reference(pa, pb, mixed))
    assert reference(pa, pb, mixed).max() > INT32_MAX


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_zero_size_dims(monkeypatch, path, shape):
    set_path(monkeypatch, path)
    m, n, k = shape
    got = _core.int_matmul(np.zeros((m, k), np.uint8), np.zeros((k, n), np.uint8), table("signed"))
    assert got.shape == (m, n) and got.dtype == np.int64
    assert not got.any()  # an empty sum is 0


def test_threads_do_not_change_sums():
    rng = np.random.default_rng(10)
    pa, pb, products = patterns(rng, (1500, 77)), patterns(rng, (77, 90)), table("wide", seed=6)
    before = core.num_threads()
    try:
        core.set_num_threads(1)
        one = _core.int_matmul(pa, pb, products)
        core.set_num_threads(2)
        two = _core.int_matmul(pa, pb, products)
    finally:
        core.set_num_threads(before)
    np.testing.assert_array_equal(one, reference(pa, pb, products))
    np.testing.assert_array_equal(two, one)


# --- approxtrain.core.int_matmul: integer values through an IntegerMultiplier -------------------


def signed_multiplier():
    return IntegerMultiplier("t8s_random", True, table("signed", seed=11))


def unsigned_multiplier():
    return IntegerMultiplier("t8u_random", False, table("unsigned", seed=12))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64])
def test_values_signed(dtype):
    rng = np.random.default_rng(13)
    a = rng.integers(-128, 128, size=(2, 19, 30)).astype(dtype)
    b = rng.integers(-128, 128, size=(30, 41)).astype(dtype)
    mul = signed_multiplier()
    got = core.int_matmul(a, b, mul)
    want = reference(a.astype(np.int64).astype(np.uint8), b.astype(np.int64).astype(np.uint8), mul.products)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_values_unsigned_transposed(dtype):
    rng = np.random.default_rng(14)
    a = rng.integers(0, 256, size=(30, 19)).astype(dtype)
    b = rng.integers(0, 256, size=(41, 30)).astype(dtype)
    mul = unsigned_multiplier()
    got = core.int_matmul(a, b, mul, transpose_a=True, transpose_b=True)
    np.testing.assert_array_equal(got, reference(a.astype(np.uint8), b.astype(np.uint8), mul.products, True, True))


def test_values_exact_multiplier_is_integer_matmul():
    values = np.arange(256, dtype=np.int64)
    values = np.where(values >= 128, values - 256, values)
    exact = IntegerMultiplier("t8s_exact", True, np.multiply.outer(values, values).astype(np.int32))
    rng = np.random.default_rng(15)
    a = rng.integers(-128, 128, size=(33, 700)).astype(np.int8)
    b = rng.integers(-128, 128, size=(700, 9)).astype(np.int8)
    np.testing.assert_array_equal(core.int_matmul(a, b, exact), a.astype(np.int64) @ b.astype(np.int64))


def test_value_out_of_range_is_named():
    mul = signed_multiplier()
    with pytest.raises(
        ValueError, match=r"int_matmul: b holds 128, outside the signed 8-bit code range \[-128, 127\] of 't8s_random'"
    ):
        core.int_matmul(np.zeros((2, 3), np.int16), np.full((3, 4), 128, np.int16), mul)
    with pytest.raises(
        ValueError, match=r"int_matmul: a holds -1, outside the unsigned 8-bit code range \[0, 255\] of 't8u_random'"
    ):
        core.int_matmul(np.full((2, 3), -1), np.zeros((3, 4), np.uint8), unsigned_multiplier())


def test_non_integer_values_rejected():
    with pytest.raises(TypeError, match="int_matmul: a must hold integers \\(e.g. int8 or uint8\\), got float32"):
        core.int_matmul(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.int8), signed_multiplier())


def test_float_multiplier_rejected():
    lut = np.zeros(1 << 4, np.uint16)
    with pytest.raises(ValueError, match="int_matmul needs an integer multiplier"):
        core.int_matmul(np.zeros((2, 3), np.int8), np.zeros((3, 4), np.int8), Multiplier("f2", 2, "truncate", lut))


def test_core_rejects_bad_arguments():
    ok = np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.uint8)
    with pytest.raises(
        ValueError, match=r"products must be an int32 array of shape \(256, 256\), got shape \(256, 128\)"
    ):
        _core.int_matmul(*ok, np.zeros((256, 128), np.int32))
    with pytest.raises(TypeError):  # noconvert: int8 patterns are not silently reinterpreted
        _core.int_matmul(np.zeros((2, 3), np.int8), ok[1], table("signed"))
    with pytest.raises(TypeError):
        _core.int_matmul(*ok, table("signed").astype(np.int64))
    with pytest.raises(ValueError, match="int_matmul: inner dimensions differ: 3 vs 5"):
        _core.int_matmul(ok[0], np.zeros((5, 4), np.uint8), table("signed"))
    with pytest.raises(ValueError, match="int_matmul operands must have rank >= 2"):
        _core.int_matmul(np.zeros(3, np.uint8), ok[1], table("signed"))
    with pytest.raises(ValueError, match="do not broadcast"):
        _core.int_matmul(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 3, 4), np.uint8), table("signed"))
