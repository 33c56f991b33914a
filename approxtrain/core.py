"""The native core on numpy arrays: no TensorFlow needed.

Every function takes float32 arrays (C-contiguous or not; other float dtypes
are rejected rather than silently rounded) and a multiplier (a name from
:mod:`approxtrain.multipliers` or a :class:`Multiplier`), and returns float32
arrays bit-identical to the contract of docs/design.md ("Number semantics") on every device.
"""

import numpy as np

from approxtrain import multipliers
from approxtrain._conv_padding import conv_paddings
from approxtrain._native import LazyCore

_core = LazyCore()  # imported on first use: `import approxtrain` works without the compiled core

DEVICES = ("cpu", "cuda")

__all__ = [
    "DEVICES",
    "cuda_available",
    "multiply",
    "matmul",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_filter_grad",
    "conv_paddings",
    "int_matmul",
    "num_threads",
    "set_num_threads",
]


def cuda_available():
    """True when _core was built with CUDA and a GPU is usable now."""
    return bool(_core.cuda_available())


def _multiplier(multiplier):
    m = multipliers.resolve(multiplier)
    if m is None:
        raise ValueError(f"{multiplier!r} is not a table: it means the native op; the core computes AM products only")
    return m


def _float32(x, what):
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        raise TypeError(f"{what} must be float32, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _backend(device, name):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return getattr(_core, name)
    if not cuda_available():
        raise RuntimeError("device='cuda' requested but approxtrain._core has no usable CUDA (see build_info())")
    return getattr(_core, name + "_cuda")


def multiply(a, b, multiplier, device="cpu"):
    """Elementwise AM product ``a (x) b`` with numpy broadcasting; ``a`` is the table row."""
    m = _multiplier(multiplier)
    a, b = _float32(a, "a"), _float32(b, "b")
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError as e:
        raise ValueError(f"multiply: shapes {a.shape} and {b.shape} do not broadcast") from e
    out = _backend(device, "multiply")(np.ascontiguousarray(a), np.ascontiguousarray(b), *m.core_args)
    return out.reshape(a.shape)


def matmul(a, b, multiplier, device="cpu", transpose_a=False, transpose_b=False):
    """AM matrix product with numpy ``matmul`` semantics (batch dims broadcast).

    Rank >= 2 operands; ``transpose_a``/``transpose_b`` transpose the last two
    dimensions.  Each output element sums its products for k ascending,
    starting from +0, one float32 add per product, flush-to-zero.
    """
    m = _multiplier(multiplier)
    a, b = _float32(a, "a"), _float32(b, "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul operands must have rank >= 2, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-2] if transpose_a else a.shape[-1]
    kb = b.shape[-1] if transpose_b else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: inner dimensions differ: {a.shape} x {b.shape} (k = {ka} vs {kb})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as e:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from e
    # The core plans the batch broadcast itself (amsim/batch_plan.h): broadcast operands are read in place.
    return _backend(device, "matmul")(a, b, *m.core_args, transpose_a, transpose_b)


def _pair(v, what):
    if isinstance(v, (int, np.integer)):
        return [int(v), int(v)]
    v = [int(t) for t in v]
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or 2 ints, got {v}")
    return v


def _conv_args(input_shape, filter_shape, strides, padding, dilations):
    strides, dilations = _pair(strides, "strides"), _pair(dilations, "dilations")
    if len(input_shape) != 4 or len(filter_shape) != 4:
        raise ValueError(
            f"conv2d needs a 4-D NHWC input and a 4-D HWIO filter, got {tuple(input_shape)} and {tuple(filter_shape)}"
        )
    pads = conv_paddings(padding, input_shape[1:3], filter_shape[0:2], strides, dilations)
    return strides, dilations, pads


def conv2d(x, w, multiplier, strides=1, padding="VALID", dilations=1, groups=1, device="cpu"):
    """AM 2-D convolution: x [N, H, W, C] (left operand), w [KH, KW, C/groups, O]."""
    m = _multiplier(multiplier)
    x, w = _float32(x, "x"), _float32(w, "w")
    s, d, p = _conv_args(x.shape, w.shape, strides, padding, dilations)
    return _backend(device, "conv2d")(x, w, *m.core_args, s, d, p, int(groups))


def conv2d_input_grad(input_shape, w, dy, multiplier, strides=1, padding="VALID", dilations=1, groups=1, device="cpu"):
    """Gradient of :func:`conv2d` with respect to x; dy is the left operand."""
    m = _multiplier(multiplier)
    w, dy = _float32(w, "w"), _float32(dy, "dy")
    input_shape = [int(t) for t in input_shape]
    s, d, p = _conv_args(input_shape, w.shape, strides, padding, dilations)
    return _backend(device, "conv2d_input_grad")(input_shape, w, dy, *m.core_args, s, d, p, int(groups))


def conv2d_filter_grad(
    x, filter_shape, dy, multiplier, strides=1, padding="VALID", dilations=1, groups=1, device="cpu"
):
    """Gradient of :func:`conv2d` with respect to w; x is the left operand."""
    m = _multiplier(multiplier)
    x, dy = _float32(x, "x"), _float32(dy, "dy")
    filter_shape = [int(t) for t in filter_shape]
    s, d, p = _conv_args(x.shape, filter_shape, strides, padding, dilations)
    return _backend(device, "conv2d_filter_grad")(x, filter_shape, dy, *m.core_args, s, d, p, int(groups))


def _integer_multiplier(multiplier):
    m = multipliers.resolve(multiplier)
    if m is None or getattr(m, "kind", "float") != "integer":
        raise ValueError(
            f"int_matmul needs an integer multiplier (an IntegerMultiplier or its name), got {multiplier!r}"
        )
    return m


def _patterns(x, m, what):
    """The 8-bit patterns (uint8) of integer operand values, each checked against m.code_range."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"int_matmul: {what} must hold integers (e.g. int8 or uint8), got {arr.dtype}")
    low, high = m.code_range
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < low or hi > high:
            bad = lo if lo < low else hi
            kind = "signed" if m.signed else "unsigned"
            raise ValueError(
                f"int_matmul: {what} holds {int(bad)}, outside the {kind} 8-bit code range "
                f"[{low}, {high}] of {m.name!r}"
            )
    if arr.dtype in (np.int8, np.uint8):
        return np.ascontiguousarray(arr).view(np.uint8)
    return np.ascontiguousarray(arr.astype(np.int64).astype(np.uint8))


def int_matmul(a, b, multiplier, device="cpu", transpose_a=False, transpose_b=False):
    """Exact integer matrix product through an integer multiplier's table, numpy ``matmul`` semantics.

    ``a``, ``b``: integer VALUES in the multiplier's ``code_range`` (any integer dtype; a value
    out of range is a ValueError naming it), rank >= 2, batch dimensions broadcast.  Returns
    int64 ``C[..., i, j] = sum_k products[pattern(a[..., i, k]), pattern(b[..., k, j])]`` with the
    table row from ``a``; the sums are exact (int32 inside blocks that cannot overflow, int64
    across).
    """
    m = _integer_multiplier(multiplier)
    pa, pb = _patterns(a, m, "a"), _patterns(b, m, "b")
    return _backend(device, "int_matmul")(pa, pb, m.products, bool(transpose_a), bool(transpose_b))


def num_threads():
    """Threads the CPU kernels of _core use (APPROXTRAIN_NUM_THREADS, default: all cores)."""
    return _core.num_threads()


def set_num_threads(n):
    """Resizes _core's CPU thread pool."""
    if int(n) < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    _core.set_num_threads(int(n))
