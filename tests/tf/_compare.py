"""Comparisons and multipliers shared by the test modules of tests/tf."""
import numpy as np

from approxtrain.multipliers import Multiplier
import amsim_reference as ref

# The bf16 multiplier (docs/multipliers.md): round operands to 7 bits, exact product. On operands that are
# already bf16 values every product is exact, so an AM layer equals its Keras twin up to summation order.
BF16 = Multiplier("bf16", 7, "nearest", ref.exact_table(7))


def bf16_values(rng, shape, scale=1.0):
    """Random float32 values exactly representable in bfloat16 (8 significant bits)."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def assert_close_to_native(am, native, abs_products, what):
    """AM result equals the native one up to summation order: |diff| <= 2e-5 * sum |products|."""
    am, native = np.asarray(am), np.asarray(native)
    assert am.shape == native.shape, f"{what}: shape {am.shape} != native {native.shape}"
    tol = 2e-5 * np.asarray(abs_products, np.float64) + 1e-30
    err = np.abs(am.astype(np.float64) - native.astype(np.float64))
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else None
    assert np.all(err <= tol), f"{what}: max error {err[worst]} > tolerance {tol[worst]} at {worst}"


def assert_bits_equal(actual, expected, what):
    """Bit-identical float32 arrays; any NaN matches any NaN."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    same = (actual.view(np.uint32) == expected.view(np.uint32)) | (nan_a & nan_e)
    if not same.all():
        i = np.argwhere(~same)[0]
        raise AssertionError(f"{what}: {int((~same).sum())} of {same.size} elements differ; first at {tuple(i)}: "
                             f"{actual[tuple(i)]!r} vs expected {expected[tuple(i)]!r}")
