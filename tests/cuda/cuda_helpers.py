"""Shared helpers of the GPU tests: tables, inputs and a bitwise comparison."""

import numpy as np

import amsim_reference as ref
from approxtrain.multipliers import Multiplier

ROUNDINGS = ("truncate", "nearest")


def multiplier(m, rounding, kind, seed=0):
    """kind 'exact': the exact-product table; 'random': random uint16 entries
    (every uint16 is a well-formed entry: carry bit and 15 fraction bits)."""
    if kind == "exact":
        lut = ref.exact_table(m)
    else:
        lut = np.random.default_rng(1000 * m + seed).integers(0, 1 << 16, size=1 << (2 * m), dtype=np.uint16)
    return Multiplier(f"test_{kind}{m}", m, rounding, lut)


def floats(rng, shape, specials=True):
    """random_floats (all bit patterns and ordinary normals), with SPECIALS sprinkled in."""
    x = ref.random_floats(rng, shape)
    if specials:
        flat = x.reshape(-1)
        pick = rng.random(flat.size) < 0.05
        flat[pick] = rng.choice(ref.SPECIALS, size=int(pick.sum()))
    return x


def ordinary(rng, shape):
    """Activation-like values: normals with ~30 % exact zeros (ReLU outputs)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.3] = 0.0
    return x


def assert_same_bits(got, want, what=""):
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    if not same.all():
        bad = np.argwhere(~same)
        first = tuple(bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {same.size} elements differ; first at {first}: "
            f"got {got[first]!r} (0x{got[first].view(np.uint32):08x}), "
            f"want {want[first]!r} (0x{want[first].view(np.uint32):08x})"
        )
