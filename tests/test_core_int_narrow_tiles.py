"""The integer bucket GEMM's narrow column blocks (src/amsim/cpu/int_gemm_kernels.h: a C of at
most 8 or 16 columns, a conv with few output channels, takes a block of 8 or 16 columns): bit-exact
int64 sums against the NumPy reference at every width edge (7, 8, 9, 16, 17 columns), with row
tiles and their remainders, several row parts, K blocks and int32 chunks of K (the 'wide' table),
on every bucket path this machine has. No TensorFlow."""

import numpy as np
import pytest

from approxtrain import _core
from int_gemm_reference import patterns, reference, table
from test_core_int_kernels import FORCED, set_path

BUCKET_PATHS = [(path, name) for path, name in FORCED if name.startswith("bucket-")]

# (m, n, k): each width edge; rows past a register tile (up to 12 rows) with a remainder; past
# one row part of the 8-wide block (8192 rows) and of the 16-wide one (4096); K past one K block
# of the 8-wide block (32 k) and of the 16-wide one (16).
SHAPES = [
    (1, 8, 1),
    (13, 7, 5),
    (25, 8, 33),
    (37, 9, 17),
    (50, 16, 70),
    (90, 17, 9),
    (8200, 6, 25),
    (4100, 16, 20),
]


@pytest.mark.parametrize("path, name", BUCKET_PATHS)
@pytest.mark.parametrize("kind", ["unsigned", "wide"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_narrow_blocks_bit_exact(monkeypatch, path, name, kind, shape):
    set_path(monkeypatch, path)
    m, n, k = shape
    assert _core.int_gemm_cpu_path(m, n, k) == name  # the bucket method, not transposed: C's n columns
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    pa, pb, products = patterns(rng, (m, k)), patterns(rng, (k, n)), table(kind, seed=n)
    got = _core.int_matmul(pa, pb, products)
    assert got.dtype == np.int64 and got.shape == (m, n)
    np.testing.assert_array_equal(got, reference(pa, pb, products))


@pytest.mark.parametrize("path, name", BUCKET_PATHS)
def test_narrow_blocks_with_strided_operands(monkeypatch, path, name):
    """Transposed views of both operands (packed by the driver) and a batch of GEMMs."""
    set_path(monkeypatch, path)
    rng = np.random.default_rng(5)
    pa = patterns(rng, (3, 21, 600))  # op(a) = [3, 600, 21]
    pb = patterns(rng, (12, 21))  # op(b) = [21, 12]
    products = table("signed", seed=9)
    got = _core.int_matmul(pa, pb, products, True, True)
    np.testing.assert_array_equal(got, reference(pa, pb, products, True, True))
