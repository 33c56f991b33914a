"""The shipped multipliers: tables vs their C models and vs docs/multipliers.md written in NumPy.

Three independent routes must agree for every shipped multiplier:
the registry's table, the C model compiled and called here one pair at a
time through ctypes, and a NumPy transcription of the docs/multipliers.md
definition.  The C models must also agree with approxtrain.core.multiply on
arbitrary float32 inputs (the full float path, operand reduction included).
"""

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

import amsim_reference as ref
from approxtrain import core, multipliers

MODELS = Path(__file__).resolve().parents[1] / "multipliers"


@pytest.fixture(autouse=True, scope="module")
def private_home(tmp_path_factory):
    """Tables built on first use (no package build) go to a temporary home, not ~/.approxtrain."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPROXTRAIN_HOME", str(tmp_path_factory.mktemp("home")))
        yield


# name: (C file, M, operand rounding), as docs/multipliers.md defines them.
SHIPPED = {
    "bf16": ("bf16.c", 7, "nearest"),
    "bf16_trunc": ("bf16.c", 7, "truncate"),
    "mitchell1": ("mitchell.c", 1, "truncate"),
    "mitchell3": ("mitchell.c", 3, "truncate"),
    "mitchell5": ("mitchell.c", 5, "truncate"),
    "mitchell7": ("mitchell.c", 7, "truncate"),
    "mbm1": ("mbm.c", 1, "truncate"),
    "mbm3": ("mbm.c", 3, "truncate"),
    "mbm5": ("mbm.c", 5, "truncate"),
    "mbm7": ("mbm.c", 7, "truncate"),
    "drum4": ("drum.c", 3, "truncate"),
    "drum5": ("drum.c", 4, "truncate"),
    "drum6": ("drum.c", 5, "truncate"),
    "fp16m": ("fp16m.c", 10, "nearest"),
}


# --- NumPy transcription of docs/multipliers.md (significand products as exact float64 dyadics) ---


def _fractions(m):
    x = np.arange(1 << m, dtype=np.float64) / 2**m
    return np.meshgrid(x, x, indexing="ij")  # [ia, ib]


def _trunc(f, m):
    return np.floor(f * 2**m) / 2**m


def _exact(m):
    x, y = _fractions(m)
    return (1 + x) * (1 + y)


def _bf16_trunc(m):
    p = _exact(m)
    carry = p >= 2
    return np.where(carry, 2 * (1 + _trunc(p / 2 - 1, m)), 1 + _trunc(p - 1, m))


def _mitchell(m):
    x, y = _fractions(m)
    s = x + y
    return np.where(s < 1, 1 + s, 2 * s)


# MBM corrections of docs/multipliers.md: (Corr if c = 0, Corr if c = 1).
_MBM_CORRECTION = {7: (2**-4 + 2**-6, (2**-4 + 2**-6) / 2), 5: (2**-4, 2**-5), 3: (0.0, 0.0), 1: (0.0, 0.0)}


def _mbm(m):
    ulp = 2.0**-m
    x, y = _fractions(m)
    x, y = x - x % (2 * ulp) + ulp, y - y % (2 * ulp) + ulp  # lowest kept bit forced to 1
    s = x + y
    corr0, corr1 = _MBM_CORRECTION[m]
    t = s + corr0  # c = 0
    no_carry = np.where(t >= 1, 2 * (1 + _trunc((t - 1) / 2, m)), 1 + _trunc(t, m))
    # c = 1: the correction is Corr(c = 1) = C/2 (the spot value mbm7(1.5, 1.5) = 2.109375 fixes this reading)
    f = (s - 1) + corr1
    f = np.where(f >= 1, s - 1, f)
    carry = 2 * (1 + _trunc(f, m))
    return np.where(s >= 1, carry, no_carry)


def _drum(m):
    ulp = 2.0**-m
    x, y = _fractions(m)
    x, y = x - x % (2 * ulp) + ulp, y - y % (2 * ulp) + ulp  # k-2 bits kept, bit k-1 set
    return (1 + x) * (1 + y)


DEFINITIONS = {
    "bf16": _exact,
    "bf16_trunc": _bf16_trunc,
    "fp16m": _exact,
    **{f"mitchell{m}": _mitchell for m in (1, 3, 5, 7)},
    **{f"mbm{m}": _mbm for m in (1, 3, 5, 7)},
    **{f"drum{k}": _drum for k in (4, 5, 6)},
}


def entries_of(products):
    """Table entries of significand products in [1, 4): carry << 15 | top 15 fraction bits."""
    p = np.asarray(products, np.float64)
    assert np.all((p >= 1) & (p < 4))
    carry = (p >= 2).astype(np.int64)
    frac15 = np.floor((p / (1 + carry) - 1) * 2**15).astype(np.int64)
    return ((carry << 15) | frac15).astype(np.uint16).ravel()


# --- the C model, compiled and called here one pair at a time ---


@pytest.fixture(scope="module")
def c_model(tmp_path_factory):
    libs = {}

    def function(name):
        c_file = SHIPPED[name][0]
        if c_file not in libs:
            so = tmp_path_factory.mktemp("models") / (c_file[:-2] + ".so")
            subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(MODELS / c_file)], check=True)
            libs[c_file] = ctypes.CDLL(str(so))
        fn = getattr(libs[c_file], name)
        fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
        return fn

    return function


def table_operand(i, m):
    return float(np.uint32((127 << 23) | (int(i) << (23 - m))).view(np.float32))


def test_shipped_names_and_records():
    assert set(SHIPPED) <= set(multipliers.names())
    for name, (_, m, rounding) in SHIPPED.items():
        mult = multipliers.get(name)
        assert (mult.name, mult.mantissa_bits, mult.operand_rounding) == (name, m, rounding)
        assert mult.lut.size == 1 << (2 * m)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_table_matches_numpy_definition(name):
    m = SHIPPED[name][1]
    np.testing.assert_array_equal(multipliers.get(name).lut, entries_of(DEFINITIONS[name](m)))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_table_matches_direct_c_evaluation(name, c_model):
    m = SHIPPED[name][1]
    fn = c_model(name)
    n = 1 << m
    if m <= 7:
        ia, ib = np.divmod(np.arange(n * n), n)
    else:  # fp16m: a sample, corners included
        rng = np.random.default_rng(1)
        ia = np.concatenate([[0, 0, n - 1, n - 1], rng.integers(0, n, 3000)])
        ib = np.concatenate([[0, n - 1, 0, n - 1], rng.integers(0, n, 3000)])
    direct = [fn(table_operand(i, m), table_operand(j, m)) for i, j in zip(ia, ib)]
    np.testing.assert_array_equal(multipliers.get(name).lut[ia * n + ib], entries_of(direct))


def test_bf16_tables_are_the_reference_exact_tables():
    np.testing.assert_array_equal(multipliers.get("bf16").lut, ref.exact_table(7))
    np.testing.assert_array_equal(multipliers.get("bf16_trunc").lut, ref.exact_table(7, truncate_product=True))
    np.testing.assert_array_equal(multipliers.get("fp16m").lut, ref.exact_table(10))


def test_mbm1_ignores_the_mantissas():
    assert np.all(multipliers.get("mbm1").lut == 1 << 15)  # every product is exactly 2


@pytest.mark.parametrize(
    "name, a, b, expected",
    [
        ("mbm7", 1.0, 1.0, 1.09375),
        ("mbm7", 1.5, 1.5, 2.109375),
        ("mitchell7", 1.5, 1.5, 2.0),
        ("bf16_trunc", 1.5, 1.5, 2.25),
        # the same through other exponents and signs
        ("mbm7", -3.0, 0.75, -2.109375),
        ("mbm7", 2.0**-10, 2.0**20, 1.09375 * 2.0**10),
        ("mitchell7", -6.0, -0.375, 2.0),
        ("bf16_trunc", 0.75, -3.0, -2.25),
    ],
)
def test_spot_values_through_core(name, a, b, expected):
    got = core.multiply(np.array([a], np.float32), np.array([b], np.float32), name)
    assert got.dtype == np.float32 and got[0] == expected


def _random_normal_floats(rng, size):
    fraction = rng.integers(0, 1 << 23, size, dtype=np.uint32)
    exponent = rng.integers(127 - 30, 127 + 31, size).astype(np.uint32)
    sign = rng.integers(0, 2, size).astype(np.uint32)
    return ((sign << np.uint32(31)) | (exponent << np.uint32(23)) | fraction).view(np.float32)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_c_model_equals_core_on_float32_inputs(name, c_model):
    """The full float path: core (reduce, look up, compose) == the C model on unreduced inputs."""
    rng = np.random.default_rng(2)
    a, b = _random_normal_floats(rng, 1500), _random_normal_floats(rng, 1500)
    # operands just below a power of two: nearest rounding carries into the exponent
    a[:8] = np.float32(1.9999999) * np.float32(2.0) ** np.arange(-3, 5, dtype=np.float32)
    fn = c_model(name)
    direct = np.array([fn(float(x), float(y)) for x, y in zip(a, b)], np.float32)
    np.testing.assert_array_equal(core.multiply(a, b, name).view(np.uint32), direct.view(np.uint32))
