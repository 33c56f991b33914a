"""Exact product counts of one layer's three phases, from 0/1 indicators of the real tensors.

Every function returns {phase: Counts} for "forward", "grad_input", "grad_weight". A product is
one multiply the phase's op performs (docs/cost.md, "Definitions"):

- macs: the dense count.
- zero_operand: products with at least one zero operand (a padded position is a zero).
- cartesian / valid / redundant: the phase mapped onto an outer-product dataflow (docs/cost.md,
  "Outer-product tiling"): cartesian = products of the non-zero operands of each tile pair,
  valid = those landing on an output (always macs - zero_operand), redundant = the rest (RCPs).

The sums are vectorised (NumPy, float64 partial sums of 0/1 values, which are exact below 2^53)
and never enumerate products one by one.
"""

from typing import NamedTuple

import numpy as np

PHASES = ("forward", "grad_input", "grad_weight")


class Counts(NamedTuple):
    macs: int
    zero_operand: int
    cartesian: int
    valid: int
    redundant: int

    def to_dict(self):
        return self._asdict()


def _counts(macs, nonzero, cartesian):
    macs, nonzero, cartesian = (int(round(float(v))) for v in (macs, nonzero, cartesian))
    return Counts(macs, macs - nonzero, cartesian, nonzero, cartesian - nonzero)


def nonzero(t):
    """0/1 float64 indicator of the non-zero entries (NaN and inf count as non-zero)."""
    return (np.asarray(t) != 0).astype(np.float64)


def conv_padding(size, kernel, stride, dilation, padding):
    """(before, after) zero padding of one spatial axis: "valid", "same", "causal" or a pair."""
    extent = (kernel - 1) * dilation + 1
    if isinstance(padding, (tuple, list)):
        return int(padding[0]), int(padding[1])
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return extent - 1, 0
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + extent - size, 0)
        return total // 2, total - total // 2
    raise ValueError(f"padding must be 'valid', 'same', 'causal' or a (before, after) pair, got {padding!r}")


def _patches(xp, kh, kw, strides, dilations, out_hw):
    """[N, OH, OW, KH, KW, C] view of the padded input under each tap (strided indexing, no copy loop)."""
    n, _, _, c = xp.shape
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_hw
    rows = (np.arange(oh) * sh)[:, None] + (np.arange(kh) * dh)[None, :]  # [OH, KH]
    cols = (np.arange(ow) * sw)[:, None] + (np.arange(kw) * dw)[None, :]  # [OW, KW]
    return xp[:, rows[:, None, :, None], cols[None, :, None, :], :]  # [N, OH, OW, KH, KW, C]


def conv2d(x, w, dy=None, strides=(1, 1), dilations=(1, 1), padding="valid", groups=1):
    """Counts of a 2-D convolution: x [N, H, W, C], w [KH, KW, C/G, O], dy [N, OH, OW, O] (None:
    counted as all non-zero). padding: "valid", "same", "causal" (width only, as conv1d) or
    ((top, bottom), (left, right))."""
    x, w = np.asarray(x), np.asarray(w)
    n, h, wd, c = x.shape
    kh, kw, cg, o = w.shape
    if c != cg * groups or o % groups:
        raise ValueError(f"input channels {c} and filters {w.shape} do not fit groups={groups}")
    (sh, sw), (dh, dw) = strides, dilations
    if isinstance(padding, str):
        pads = (
            conv_padding(h, kh, sh, dh, "valid" if padding == "causal" else padding),
            conv_padding(wd, kw, sw, dw, padding),
        )
    else:
        pads = tuple(tuple(p) for p in padding)
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"input {x.shape} is smaller than the dilated kernel {w.shape[:2]}")
    og = o // groups
    ix = nonzero(x)
    iw = nonzero(w).reshape(kh, kw, cg, groups, og)
    idy = np.ones((n, oh, ow, o)) if dy is None else nonzero(dy)
    if idy.shape != (n, oh, ow, o):
        raise ValueError(f"output gradient has shape {idy.shape}, the convolution's output is {(n, oh, ow, o)}")
    idy = idy.reshape(n, oh, ow, groups, og)

    xp = np.pad(ix, ((0, 0), pads[0], pads[1], (0, 0)))
    patches = _patches(xp, kh, kw, (sh, sw), (dh, dw), (oh, ow)).reshape(n, oh, ow, kh, kw, groups, cg)
    real = np.pad(np.ones((h, wd)), pads)  # 1 at the input's own positions, 0 at padding
    real_taps = _patches(real[None, :, :, None], kh, kw, (sh, sw), (dh, dw), (oh, ow))[0, ..., 0]  # [OH,OW,KH,KW]

    macs = n * oh * ow * o * kh * kw * cg
    # Forward: x under each tap times the weights of that tap.
    fwd_nz = np.einsum("nabhwgc,hwcgo->", patches, iw, optimize=True)
    # Weight gradient: each (x under a tap, dy at that output) pair of the same group.
    gw_nz = np.einsum("nabg,nabg->", patches.sum(axis=(3, 4, 6)), idy.sum(axis=4), optimize=True)
    # Input gradient: dy times each weight tap whose input position is real (not padding).
    gi_macs = n * real_taps.sum() * cg * o
    gi_nz = np.einsum("nabgo,hwcgo,abhw->", idy, iw, real_taps, optimize=True)

    # Outer-product tiles: one (sample, channel) plane of the unpadded operand against all
    # non-zero weights (or dy values) the other side pairs with it.
    x_plane = ix.sum(axis=(1, 2)).reshape(n, groups, cg)  # nnz per (n, g, c)
    w_per_c = iw.sum(axis=(0, 1, 4))  # [cg, G]
    w_per_o = iw.sum(axis=(0, 1, 2))  # [G, og]
    dy_plane = idy.sum(axis=(1, 2))  # [n, G, og]
    fwd_cart = np.einsum("ngc,cg->", x_plane, w_per_c)
    gw_cart = np.einsum("ngc,ngo->", x_plane, dy_plane)
    gi_cart = np.einsum("ngo,go->", dy_plane, w_per_o)
    return {
        "forward": _counts(macs, fwd_nz, fwd_cart),
        "grad_input": _counts(gi_macs, gi_nz, gi_cart),
        "grad_weight": _counts(macs, gw_nz, gw_cart),
    }


def depthwise_conv2d(x, w, dy=None, strides=(1, 1), dilations=(1, 1), padding="valid"):
    """w [KH, KW, C, m]: the grouped convolution with G = C, read as [KH, KW, 1, C*m]."""
    w = np.asarray(w)
    kh, kw, c, m = w.shape
    return conv2d(x, w.reshape(kh, kw, 1, c * m), dy, strides, dilations, padding, groups=c)


def einsum(equation, a, b, dy=None):
    """Counts of `out = einsum(equation, a, b)` (two operands, explicit '->'); a is the left
    operand: "grad_input" is the gradient of a, "grad_weight" that of b. Every product of an
    outer-product mapping over the contracted letters lands on an output, so redundant = 0."""
    inputs, out = equation.replace(" ", "").split("->")
    la, lb = inputs.split(",")
    if "..." in equation:
        raise ValueError(f"einsum equation {equation!r}: write the batch letters out instead of '...'")
    a, b = np.asarray(a), np.asarray(b)
    sizes = {}
    for letters, t in ((la, a), (lb, b)):
        for letter, d in zip(letters, t.shape):
            if sizes.setdefault(letter, d) != d:
                raise ValueError(f"einsum {equation!r}: letter {letter!r} has sizes {sizes[letter]} and {d}")
    if dy is None:
        dy = np.ones([sizes[letter] for letter in out])
    ia, ib, idy = nonzero(a), nonzero(b), nonzero(dy)

    def phase(l1, t1, l2, t2):
        letters = set(l1) | set(l2)
        macs = int(np.prod([sizes[letter] for letter in letters], dtype=np.float64))
        nz = np.einsum(f"{l1},{l2}->", t1, t2, optimize=True)
        return _counts(macs, nz, nz)

    return {
        "forward": phase(la, ia, lb, ib),
        "grad_input": phase(out, idy, lb, ib),
        "grad_weight": phase(la, ia, out, idy),
    }


def dense(x, w, dy=None):
    """x [..., K] (leading axes flattened), w [K, U], dy [..., U]."""
    x, w = np.asarray(x), np.asarray(w)
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = None if dy is None else np.asarray(dy).reshape(-1, w.shape[-1])
    return einsum("mk,ku->mu", x2, w, dy2)


def matmul(a, b, dy=None):
    """Batched matmul a [..., M, K] . b [..., K, N] with equal batch axes."""
    a, b = np.asarray(a), np.asarray(b)
    batch = "".join(chr(ord("p") + i) for i in range(a.ndim - 2))
    return einsum(f"{batch}mk,{batch}kn->{batch}mn", a, b, dy)
