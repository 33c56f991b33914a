"""Counts of a 3-D convolution, built from the 2-D ones one depth tap at a time (docs/cost.md).

Tap kd of a conv3d pairs output depth od with input depth od * sd + kd * dd - pad_front: over all
(n, od) that is a 2-D convolution of the depth slices (batch N * OD) by w[kd]. The products of
the forward and the weight gradient are those of every (n, od), depth padding included as
zeros; the input gradient's only those that land on a real input depth (as the 2-D input
gradient leaves out products onto padding). The outer-product tiles are the 2-D ones with the
plane grown to the volume: one (sample, channel) volume of the unpadded operand against every
non-zero weight (or dy value) the other side pairs with it.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from approxtrain.cost import counts, graph


class Conv3DGeometry(NamedTuple):
    """x [n, d, h, w, c], w [kd, kh, kw, cg, o], groups; depth stride, dilation and (front, back)
    pads; the ConvGeometry of one depth tap (batch n * od); output depth od."""

    n: int
    d: int
    kd: int
    groups: int
    stride: int
    dilation: int
    pads: tuple
    od: int
    plane: counts.ConvGeometry

    def depths(self, kd):
        """Input depth (padded coordinates) of every output depth under tap kd."""
        return [od * self.stride + kd * self.dilation for od in range(self.od)]

    def real(self, kd):
        """Output depths whose input depth under tap kd is real, not padding."""
        front = self.pads[0]
        return [od for od, z in enumerate(self.depths(kd)) if front <= z < front + self.d]


def geometry(x_shape, w_shape, strides, dilations, pads, groups=1):
    """Conv3DGeometry of x_shape [N, D, H, W, C] by w_shape [KD, KH, KW, C/G, O]; pads are three
    (before, after) pairs (counts.conv_padding gives them for "valid"/"same")."""
    n, d, h, w, c = (int(v) for v in x_shape)
    kd = int(w_shape[0])
    (pf, pb), stride, dilation = pads[0], int(strides[0]), int(dilations[0])
    od = (d + pf + pb - (kd - 1) * dilation - 1) // stride + 1
    if od < 1:
        raise ValueError(f"input depth {d} is smaller than the dilated kernel depth {kd}")
    plane = counts.conv_geometry((n * od, h, w, c), w_shape[1:], strides[1:], dilations[1:], tuple(pads[1:]), groups)
    return Conv3DGeometry(n, d, kd, groups, stride, dilation, (pf, pb), od, plane)


def graph_sums(x, w, dy, g):
    """The reductions of every depth tap (graph.conv2d_sums of its slices), the real-depth dy sums
    of the input gradient, and the volume non-zeros of the tiles."""
    p = g.plane
    xp = tf.pad(x, [[0, 0], list(g.pads), [0, 0], [0, 0], [0, 0]])
    dy_planes = tf.reshape(dy, (p.n, p.oh, p.ow, p.o))
    taps = []
    for kd in range(g.kd):
        slices = tf.reshape(tf.gather(xp, g.depths(kd), axis=1), (p.n, p.h, p.w, p.c))
        sums = graph.conv2d_sums(slices, w[kd], dy_planes, p)
        real = g.real(kd)
        dy_real = graph.nonzero(tf.gather(dy, real, axis=1)) if real else tf.zeros((1, 1, p.oh, p.ow, p.o), tf.int32)
        sums["dy_nnz_at"] = tf.reduce_sum(dy_real, axis=(0, 1))  # the input gradient's dy: real depths only
        taps.append(sums)
    return {
        "taps": taps,
        "x_volume": tf.reduce_sum(graph.nonzero(x), axis=(1, 2, 3)),
        "dy_volume": tf.reduce_sum(graph.nonzero(dy), axis=(1, 2, 3)),
        "iw": graph.nonzero(w),
    }


def from_sums(g, taps, x_volume, dy_volume, iw):
    """{phase: Counts} of the conv3d from graph_sums' values."""
    p = g.plane
    og = p.o // p.groups
    taps_real = counts.real_taps(p)  # [OH, OW, KH, KW]: taps that read a real (h, w) position
    iw_taps = np.asarray(iw, np.float64).reshape(g.kd, p.kh, p.kw, p.cg, p.groups, og)
    macs = dict.fromkeys(counts.PHASES, 0)
    nonzero = dict.fromkeys(counts.PHASES, 0.0)
    for kd, sums in enumerate(taps):
        tap = counts.conv2d_from_sums(p, **sums)
        for phase in ("forward", "grad_weight"):
            macs[phase] += tap[phase].macs
            nonzero[phase] += tap[phase].valid
        # The input gradient: only the output depths whose input depth is real.
        macs["grad_input"] += g.n * len(g.real(kd)) * int(taps_real.sum()) * p.cg * p.o
        dy_at = np.asarray(sums["dy_nnz_at"], np.float64).reshape(p.oh, p.ow, p.groups, og)
        nonzero["grad_input"] += np.einsum("abgo,hwcgo,abhw->", dy_at, iw_taps[kd], taps_real, optimize=True)
    iw = iw_taps
    x_volume = np.asarray(x_volume, np.float64).reshape(g.n, p.groups, p.cg)
    dy_volume = np.asarray(dy_volume, np.float64).reshape(g.n, p.groups, og)
    cartesian = {
        "forward": np.einsum("ngc,cg->", x_volume, iw.sum(axis=(0, 1, 2, 5))),
        "grad_input": np.einsum("ngo,go->", dy_volume, iw.sum(axis=(0, 1, 2, 3))),
        "grad_weight": np.einsum("ngc,ngo->", x_volume, dy_volume),
    }
    return {phase: counts._counts(macs[phase], nonzero[phase], cartesian[phase]) for phase in counts.PHASES}
