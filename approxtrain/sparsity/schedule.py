"""Sparsity schedules: Zhu & Gupta's cubic ramp, RigL's cosine update fraction, ERK densities."""

import math

import numpy as np


def cubic_sparsity(step, target, start, end, initial=0.0):
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (end - t0))^3 for t0 <= t <= end.

    `initial` (s_i) before and at `start` (t0), exactly `target` (s_f) at and after `end`."""
    if step <= start:
        return initial if end > start else target
    if step >= end:
        return target
    return target + (initial - target) * (1.0 - (step - start) / (end - start)) ** 3


def cosine_fraction(step, end, fraction):
    """RigL's share of active weights moved by the prune-and-grow update at `step`:
    fraction / 2 * (1 + cos(pi * step / end)), decaying from `fraction` to 0 at `end`."""
    return fraction / 2.0 * (1.0 + math.cos(math.pi * min(step, end) / end))


def erk_densities(shapes, density):
    """Erdos-Renyi-Kernel densities (Evci et al. 2020, RigL): layer l's density proportional to
    sum(shape) / prod(shape), scaled so the kept weights total round(density * all weights); a
    layer whose density would exceed 1 is kept dense and the others are rescaled."""
    sizes = np.array([math.prod(s) for s in shapes], np.float64)
    raw = np.array([sum(s) / math.prod(s) for s in shapes], np.float64)
    dense = np.zeros(len(shapes), bool)
    budget = density * sizes.sum()
    while True:
        scale = (budget - sizes[dense].sum()) / max((raw * sizes)[~dense].sum(), 1e-30)
        densities = np.where(dense, 1.0, raw * scale)
        over = (densities > 1.0) & ~dense
        if not over.any():
            return [float(d) for d in np.clip(densities, 0.0, 1.0)]
        dense |= over
