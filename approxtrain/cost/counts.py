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


class ConvGeometry(NamedTuple):
    """Static shape of one 2-D convolution: input [n, h, w, c], kernel [kh, kw, cg, o], groups,
    strides, dilations, pads ((top, bottom), (left, right)) and output [n, oh, ow, o]."""

    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    cg: int
    o: int
    groups: int
    strides: tuple
    dilations: tuple
    pads: tuple
    oh: int
    ow: int


def conv_geometry(x_shape, w_shape, strides=(1, 1), dilations=(1, 1), padding="valid", groups=1):
    """The ConvGeometry of x_shape [N, H, W, C] convolved with w_shape [KH, KW, C/G, O]; padding as
    in conv2d(). Raises for shapes that do not fit."""
    n, h, wd, c = (int(d) for d in x_shape)
    kh, kw, cg, o = (int(d) for d in w_shape)
    if c != cg * groups or o % groups:
        raise ValueError(f"input channels {c} and filters {tuple(w_shape)} do not fit groups={groups}")
    (sh, sw), (dh, dw) = tuple(strides), tuple(dilations)
    if isinstance(padding, str):
        pads = (
            conv_padding(h, kh, sh, dh, "valid" if padding == "causal" else padding),
            conv_padding(wd, kw, sw, dw, padding),
        )
    else:
        pads = tuple(tuple(int(v) for v in p) for p in padding)
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"input {tuple(x_shape)} is smaller than the dilated kernel {tuple(w_shape[:2])}")
    return ConvGeometry(n, h, wd, c, kh, kw, cg, o, groups, (sh, sw), (dh, dw), pads, oh, ow)


def real_taps(g):
    """[OH, OW, KH, KW] 0/1: whether the tap of each output reads a real input (not padding)."""
    real = np.pad(np.ones((g.h, g.w)), g.pads)
    return _patches(real[None, :, :, None], g.kh, g.kw, g.strides, g.dilations, (g.oh, g.ow))[0, ..., 0]


def conv2d(x, w, dy=None, strides=(1, 1), dilations=(1, 1), padding="valid", groups=1):
    """Counts of a 2-D convolution: x [N, H, W, C], w [KH, KW, C/G, O], dy [N, OH, OW, O] (None:
    counted as all non-zero). padding: "valid", "same", "causal" (width only, as conv1d) or
    ((top, bottom), (left, right))."""
    x, w = np.asarray(x), np.asarray(w)
    g = conv_geometry(x.shape, w.shape, strides, dilations, padding, groups)
    n, h, wd, c, kh, kw, cg, o, groups, (sh, sw), (dh, dw), pads, oh, ow = g
    og = o // groups
    ix = nonzero(x)
    iw = nonzero(w).reshape(kh, kw, cg, groups, og)
    idy = np.ones((n, oh, ow, o)) if dy is None else nonzero(dy)
    if idy.shape != (n, oh, ow, o):
        raise ValueError(f"output gradient has shape {idy.shape}, the convolution's output is {(n, oh, ow, o)}")
    idy = idy.reshape(n, oh, ow, groups, og)

    xp = np.pad(ix, ((0, 0), pads[0], pads[1], (0, 0)))
    patches = _patches(xp, kh, kw, (sh, sw), (dh, dw), (oh, ow)).reshape(n, oh, ow, kh, kw, groups, cg)
    taps = real_taps(g)

    macs = n * oh * ow * o * kh * kw * cg
    # Forward: x under each tap times the weights of that tap.
    fwd_nz = np.einsum("nabhwgc,hwcgo->", patches, iw, optimize=True)
    # Weight gradient: each (x under a tap, dy at that output) pair of the same group.
    gw_nz = np.einsum("nabg,nabg->", patches.sum(axis=(3, 4, 6)), idy.sum(axis=4), optimize=True)
    # Input gradient: dy times each weight tap whose input position is real (not padding).
    gi_macs = n * taps.sum() * cg * o
    gi_nz = np.einsum("nabgo,hwcgo,abhw->", idy, iw, taps, optimize=True)

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


def conv2d_from_sums(g, tap_nnz, gw_nonzero, dy_nnz_at, x_plane, dy_plane, iw):
    """conv2d()'s counts from the reductions the counting step computes in TensorFlow
    (approxtrain/cost/graph.py), for ConvGeometry g:

    tap_nnz [KH, KW, C]: non-zeros of the padded x under each tap, summed over samples and outputs;
    gw_nonzero: the weight gradient's non-zero products (a number);
    dy_nnz_at [OH, OW, O]: non-zeros of dy summed over samples;
    x_plane [N, C], dy_plane [N, O]: non-zeros per (sample, channel) plane;
    iw [KH, KW, C/G, O]: 0/1 of the kernel.

    The sums are those of conv2d() with the sample axis summed first (integers in float64: exact)."""
    n, _, _, _, kh, kw, cg, o, groups, _, _, _, oh, ow = g
    og = o // groups
    iw = np.asarray(iw, np.float64).reshape(kh, kw, cg, groups, og)
    taps = real_taps(g)
    macs = n * oh * ow * o * kh * kw * cg
    fwd_nz = np.einsum("hwgc,hwcg->", np.asarray(tap_nnz, np.float64).reshape(kh, kw, groups, cg), iw.sum(axis=4))
    gi_macs = n * taps.sum() * cg * o
    dy_at = np.asarray(dy_nnz_at, np.float64).reshape(oh, ow, groups, og)
    gi_nz = np.einsum("abgo,hwcgo,abhw->", dy_at, iw, taps, optimize=True)
    x_plane = np.asarray(x_plane, np.float64).reshape(n, groups, cg)
    dy_plane = np.asarray(dy_plane, np.float64).reshape(n, groups, og)
    fwd_cart = np.einsum("ngc,cg->", x_plane, iw.sum(axis=(0, 1, 4)))
    gw_cart = np.einsum("ngc,ngo->", x_plane, dy_plane)
    gi_cart = np.einsum("ngo,go->", dy_plane, iw.sum(axis=(0, 1, 2)))
    return {
        "forward": _counts(macs, fwd_nz, fwd_cart),
        "grad_input": _counts(gi_macs, gi_nz, gi_cart),
        "grad_weight": _counts(macs, float(gw_nonzero), gw_cart),
    }


def depthwise_conv2d(x, w, dy=None, strides=(1, 1), dilations=(1, 1), padding="valid"):
    """w [KH, KW, C, m]: the grouped convolution with G = C, read as [KH, KW, 1, C*m]."""
    w = np.asarray(w)
    kh, kw, c, m = w.shape
    return conv2d(x, w.reshape(kh, kw, 1, c * m), dy, strides, dilations, padding, groups=c)


def einsum_phases(equation):
    """(phase, left letters, right letters) of the three phases of `out = einsum(equation, a, b)`:
    forward a.b, grad_input dy.b, grad_weight a.dy."""
    inputs, out = equation.replace(" ", "").split("->")
    la, lb = inputs.split(",")
    if "..." in equation:
        raise ValueError(f"einsum equation {equation!r}: write the batch letters out instead of '...'")
    return (("forward", la, lb), ("grad_input", out, lb), ("grad_weight", la, out))


def einsum_sizes(equation, a_shape, b_shape):
    """{letter: size} of the two operands of `equation`; raises where a letter has two sizes."""
    la, lb = einsum_phases(equation)[0][1:]
    sizes = {}
    for letters, shape in ((la, a_shape), (lb, b_shape)):
        for letter, d in zip(letters, shape):
            if sizes.setdefault(letter, int(d)) != int(d):
                raise ValueError(f"einsum {equation!r}: letter {letter!r} has sizes {sizes[letter]} and {d}")
    return sizes


def shared_letters(l1, l2):
    """The letters of l1 that l2 has too, in l1's order: what a phase's product sums over pairs of."""
    return "".join(letter for letter in l1 if letter in l2)


def einsum(equation, a, b, dy=None):
    """Counts of `out = einsum(equation, a, b)` (two operands, explicit '->'); a is the left
    operand: "grad_input" is the gradient of a, "grad_weight" that of b. Every product of an
    outer-product mapping over the contracted letters lands on an output, so redundant = 0."""
    phases = einsum_phases(equation)
    a, b = np.asarray(a), np.asarray(b)
    sizes = einsum_sizes(equation, a.shape, b.shape)
    out = phases[1][1]
    if dy is None:
        dy = np.ones([sizes[letter] for letter in out])
    ia, ib, idy = nonzero(a), nonzero(b), nonzero(dy)

    def phase(l1, t1, l2, t2):
        letters = set(l1) | set(l2)
        macs = int(np.prod([sizes[letter] for letter in letters], dtype=np.float64))
        nz = np.einsum(f"{l1},{l2}->", t1, t2, optimize=True)
        return _counts(macs, nz, nz)

    la, lb = phases[0][1:]
    return {
        "forward": phase(la, ia, lb, ib),
        "grad_input": phase(out, idy, lb, ib),
        "grad_weight": phase(la, ia, out, idy),
    }


def einsum_from_sums(equation, sizes, reduced):
    """einsum()'s counts from reduced 0/1 sums: reduced[phase] = (r1, r2), each phase operand's
    non-zeros summed over the letters the other operand lacks (r1 in its letters' order, r2 in
    its own), as the counting step computes them in TensorFlow."""
    result = {}
    for phase, l1, l2 in einsum_phases(equation):
        macs = int(np.prod([sizes[letter] for letter in set(l1) | set(l2)], dtype=np.float64))
        r1, r2 = (np.asarray(r, np.float64) for r in reduced[phase])
        nz = np.einsum(f"{shared_letters(l1, l2)},{shared_letters(l2, l1)}->", r1, r2)
        result[phase] = _counts(macs, nz, nz)
    return result


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
