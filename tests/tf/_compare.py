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
        raise AssertionError(
            f"{what}: {int((~same).sum())} of {same.size} elements differ; first at {tuple(i)}: "
            f"{actual[tuple(i)]!r} vs expected {expected[tuple(i)]!r}"
        )


# --- float64 NumPy convolution: a reference independent of TF's conv kernels ------------------
# TF's own CPU gradients of dilated or grouped convs exist only with oneDNN, which TF turns off
# on CPUs without AVX-512; these references make the comparisons the same on every CPU.


def conv2d_exact(x, w, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """y[n, i, j, o] = sum over (kh, kw, c in o's group) of xpad * w, in float64 (NHWC, w [KH, KW, C/g, O])."""
    kh, kw, cg, o = w.shape
    p = ref.conv2d_patches(x, kh, kw, strides, dilations, pads).astype(np.float64)  # [N, OH, OW, KH, KW, C]
    og = o // groups
    return np.concatenate(
        [
            np.einsum(
                "nijabc,abco->nijo", p[..., g * cg : (g + 1) * cg], w[..., g * og : (g + 1) * og].astype(np.float64)
            )
            for g in range(groups)
        ],
        axis=-1,
    )


def conv2d_input_grad_exact(input_shape, w, dy, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """dx = the adjoint of conv2d_exact applied to dy (float64): each patch position scatters back."""
    n, h, wd, c = input_shape
    kh, kw, cg, o = w.shape
    og = o // groups
    dp = np.concatenate(
        [
            np.einsum(
                "nijo,abco->nijabc",
                dy[..., g * og : (g + 1) * og].astype(np.float64),
                w[..., g * og : (g + 1) * og].astype(np.float64),
            )
            for g in range(groups)
        ],
        axis=-1,
    )  # d patches [N, OH, OW, KH, KW, C]
    (sh, sw), (dh, dw_), (pt, pb, pl, pr) = strides, dilations, pads
    oh, ow = dy.shape[1:3]
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, c), np.float64)
    for a in range(kh):
        for b in range(kw):
            rows, cols = slice(a * dh, a * dh + (oh - 1) * sh + 1, sh), slice(b * dw_, b * dw_ + (ow - 1) * sw + 1, sw)
            dxp[:, rows, cols] += dp[:, :, :, a, b]
    return dxp[:, pt : pt + h, pl : pl + wd]


def conv2d_filter_grad_exact(x, filter_shape, dy, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1):
    """dw[kh, kw, c, o] = sum over (n, i, j) of xpad * dy (float64)."""
    kh, kw, cg, o = filter_shape
    og = o // groups
    p = ref.conv2d_patches(x, kh, kw, strides, dilations, pads).astype(np.float64)
    return np.concatenate(
        [
            np.einsum(
                "nijabc,nijo->abco", p[..., g * cg : (g + 1) * cg], dy[..., g * og : (g + 1) * og].astype(np.float64)
            )
            for g in range(groups)
        ],
        axis=-1,
    )


def conv2d_exact_with_bounds(x, w, dy, **conv):
    """(y, dx, dw) in float64 and, for each, the sums of |products| (the same sums over |operands|)."""

    def three(x, w, dy):
        return (
            conv2d_exact(x, w, **conv),
            conv2d_input_grad_exact(x.shape, w, dy, **conv),
            conv2d_filter_grad_exact(x, w.shape, dy, **conv),
        )

    return three(x, w, dy), three(np.abs(x), np.abs(w), np.abs(dy))


def random_table(seed, rounding="truncate"):
    """An arbitrary M = 7 table of random entries (any entry is valid, and it is far from
    symmetric): a wrong table, phase or operand order shows at once."""
    lut = np.random.default_rng(seed).integers(0, 1 << 16, 1 << 14, dtype=np.uint16)
    return Multiplier(f"random7_{seed}", 7, rounding, lut)


def swapped(m):
    """The table with its operands exchanged: the reference of a layer that swaps A and B."""
    n = 1 << m.mantissa_bits
    lut = np.ascontiguousarray(m.lut.reshape(n, n).T).reshape(-1)
    return Multiplier(m.name + "_swapped", m.mantissa_bits, m.operand_rounding, lut)
