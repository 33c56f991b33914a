"""Chase: channel-aware dynamic sparse training (Yin et al. 2023, arXiv 2305.19454)."""

import json
import math

import numpy as np
import tensorflow as tf

from approxtrain.sparsity.masks import MaskedTraining
from approxtrain.sparsity.schedule import cosine_fraction, cubic_sparsity, erk_densities
from approxtrain.sparsity.settings import check_fraction, check_steps

DISTRIBUTIONS = ("uniform", "erk")
CHANNEL_SCORES = ("umm", "active_mean")
CHANNEL_SCOPES = ("global", "layer")
EXPLORATIONS = ("layer", "global")
# Chase's channel and exploration rules as defaults; a run's settings record them (settings.py),
# so a later change of a default never changes a resumed run.
RULE_DEFAULTS = {"channel_score": "umm", "channel_scope": "global", "min_channels": 0.5, "exploration": "layer"}


def channel_scores(magnitude, mask, criterion="umm"):
    """Each output channel's (the kernel's last axis) score for removal, lowest first.

    "umm", the paper's unmasked mean magnitude: mean |w| over ALL the channel's weights, pruned
    ones counting as 0, so a channel left sparse by prune-and-grow scores low (Chase's official
    code, --mag_wise). "active_mean": mean |w| over the channel's active weights only (0 when none
    is; approxtrain before 2026-12, the code's --mask_wise)."""
    channels = magnitude.shape[-1]
    active = np.asarray(mask, np.float64).reshape(-1, channels)
    total = (np.abs(np.asarray(magnitude, np.float64)).reshape(-1, channels) * active).sum(axis=0)
    if criterion == "umm":
        return total / active.shape[0]
    if criterion == "active_mean":
        count = active.sum(axis=0)
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)
    raise ValueError(f"channel_score must be one of {', '.join(CHANNEL_SCORES)}, got {criterion!r}")


def channel_floors(sizes, channel_sparsity, min_channels):
    """The fewest live channels each layer keeps under global channel removal:
    max(1, floor(min_channels * (1 - channel_sparsity) * channels)) (the paper's beta)."""
    return [max(1, int(math.floor(min_channels * (1.0 - channel_sparsity) * n + 1e-9))) for n in sizes]


def remove_channels(scores, live, want, floors=None):
    """New live-channel masks (1 = live) removing the live channels of lowest score until `want`
    are removed in all (channels already removed count; none comes back).

    `scores` and `live` are per-layer arrays. floors=None ranks each layer on its own, `want` then
    being a list (one count per layer); with `floors` (one int per layer) `want` is one total over
    all layers, ranked together, and a layer stops losing channels at its floor. Ties go to the
    earlier layer, then the lower channel index."""
    live = [np.array(v, np.float32) for v in live]
    if floors is None:
        for v, s, w in zip(live, scores, want):
            extra = int(w) - int((v == 0).sum())
            if extra > 0:
                v[np.argsort(np.where(v > 0, s, np.inf), kind="stable")[:extra]] = 0.0
        return live
    extra = int(want) - sum(int((v == 0).sum()) for v in live)
    if extra <= 0:
        return live
    layer = np.concatenate([np.full(v.size, i) for i, v in enumerate(live)])
    index = np.concatenate([np.arange(v.size) for v in live])
    flat = np.concatenate([np.where(v > 0, s, np.inf) for v, s in zip(live, scores)])
    left = [int(v.sum()) for v in live]
    for k in np.argsort(flat, kind="stable"):
        if extra == 0 or not np.isfinite(flat[k]):
            break
        i = int(layer[k])
        if left[i] > floors[i]:
            live[i][index[k]] = 0.0
            left[i] -= 1
            extra -= 1
    return live


def prune_and_grow(magnitude, gradient, mask, allowed, fraction, count):
    """RigL's update of one flat mask: drops round(fraction * active) active weights of smallest
    magnitude, then regrows where |gradient| is largest among the inactive `allowed` positions
    until min(count, allowed) are active. Returns (new mask, regrown 0/1). Ties: lower index."""
    mask = np.array(mask, np.float32)
    dropped = int(round(fraction * mask.sum()))
    order = np.argsort(np.where(mask > 0, magnitude, np.inf), kind="stable")
    mask[order[:dropped]] = 0.0
    need = min(int(count), int(allowed.sum())) - int(mask.sum())
    score = np.where((mask == 0) & allowed, gradient, -1.0)
    grow = np.argsort(-score, kind="stable")[: max(need, 0)]
    mask[grow] = 1.0
    grown = np.zeros_like(mask)
    grown[grow] = 1.0
    return mask, grown


class Chase(MaskedTraining):
    """Dynamic sparse training at a fixed density that also removes whole output channels.

    - Start: a random sparse mask at density 1 - `sparsity` ("erk", the default as in Chase and
      RigL: Erdos-Renyi-Kernel densities, small kernels denser, the same total; "uniform": every
      kernel at that density), drawn from numpy's default_rng(`seed`).
    - After every `update_every`-th optimizer step up to step `end` (and after step `end`):
      1. channels (Chase's "gradual amenable channel pruning"): output channels of the Dense/Conv
         kernels but the last (the outputs) are removed until round(c_t * channels) are, c_t
         following the cubic schedule from 0 at step 0 to `channel_sparsity` at step `end`; the
         lowest `channel_score` goes first: "umm" (default, the paper's unmasked mean magnitude:
         mean |w| over all the channel's weights, pruned ones as 0) or "active_mean" (mean |w| over
         its active weights). channel_scope="global" (default, the paper's): all kernels' channels
         ranked together, `channels` counting them all, each layer keeping at least
         max(1, floor(min_channels * (1 - channel_sparsity) * its channels)) (the paper's beta);
         "layer": each kernel loses round(c_t * its channels). A removed channel's kernel slice
         and bias stay 0 for good, so its output is activation(0) (0 for ReLU); the next layer's
         input slice for it stays (it multiplies zeros) until `export_slim` removes it.
      2. prune and grow (RigL, Evci et al. 2020): the share f_t = drop_fraction / 2 *
         (1 + cos(pi t / end)) of each kernel's active weights with the smallest |w| is
         dropped, and as many weights (plus those lost with removed channels) are regrown where
         the dense gradient of that step is largest in magnitude, outside removed channels. Each
         kernel thus keeps its number of active weights (fewer only when its live channels
         cannot hold them); regrown weights start at 0 with zeroed optimizer slots.
         exploration="global" (Chase's official code: global magnitude death, global gradient
         growth) ranks all kernels' weights together instead: the total is kept, and weights
         move between kernels.
    `update_every` and `end` count OPTIMIZER STEPS; end=None: 3/4 of the steps Keras' callback
    params announce. Regrowth needs the dense gradient, which `approxtrain.train.loop.fit`'s step
    hook records: Chase refuses plain `model.fit` at its first update, and one replica only.
    """

    channel_masks_used = True

    def __init__(self, sparsity, channel_sparsity=0.0, update_every=100, end=None, drop_fraction=0.3,
                 distribution="erk", seed=0, channel_score=RULE_DEFAULTS["channel_score"],
                 channel_scope=RULE_DEFAULTS["channel_scope"], min_channels=RULE_DEFAULTS["min_channels"],
                 exploration=RULE_DEFAULTS["exploration"]):  # fmt: skip
        super().__init__()
        if exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {', '.join(EXPLORATIONS)}, got {exploration!r}")
        self.exploration = exploration
        if channel_score not in CHANNEL_SCORES:
            raise ValueError(f"channel_score must be one of {', '.join(CHANNEL_SCORES)}, got {channel_score!r}")
        if channel_scope not in CHANNEL_SCOPES:
            raise ValueError(f"channel_scope must be one of {', '.join(CHANNEL_SCOPES)}, got {channel_scope!r}")
        self.channel_score, self.channel_scope = channel_score, channel_scope
        self.min_channels = check_fraction("min_channels", min_channels, upper_inclusive=True)
        self.sparsity = check_fraction("sparsity", sparsity, lower_inclusive=False)
        self.channel_sparsity = check_fraction("channel_sparsity", channel_sparsity)
        self.update_every = check_steps("update_every", update_every, minimum=1)
        self.end = None if end is None else check_steps("end", end, minimum=1)
        self.drop_fraction = check_fraction("drop_fraction", drop_fraction, upper_inclusive=True)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.distribution = distribution
        self.rng = np.random.default_rng(seed)
        self._gradients, self._recorded = {}, False

    def attach(self, model):
        if self._attached_to is model:
            return
        if model.distribute_strategy.num_replicas_in_sync > 1:
            raise ValueError("Chase trains on one replica only (its prune-and-grow reads one replica's gradients)")
        super().attach(model)
        self._gradients = {
            id(t.kernel): tf.Variable(tf.zeros(t.kernel.shape), trainable=False, name="dense_gradient")
            for t in self.targets
        }
        shapes = [tuple(int(d) for d in t.kernel.shape) for t in self.targets]
        if self.distribution == "uniform":
            densities = [1.0 - self.sparsity] * len(shapes)
        else:
            densities = erk_densities(shapes, 1.0 - self.sparsity)
        self.counts = [max(1, int(round(d * int(np.prod(s))))) for d, s in zip(densities, shapes)]

    def before_apply(self, variables, gradients):
        self._recorded = True  # set while tracing: the loop calls this hook
        for variable, gradient in zip(variables, gradients):
            store = self._gradients.get(id(variable))
            if store is not None and gradient is not None:
                store.assign(tf.convert_to_tensor(gradient))
        return super().before_apply(variables, gradients)

    def on_train_begin(self, logs=None):
        if self.end is None:
            params = self.params or {}
            if not params.get("steps") or not params.get("epochs"):
                raise ValueError("Chase(end=None) needs the number of steps: pass end (optimizer steps)")
            self.end = max(1, int(0.75 * params["steps"] * params["epochs"]))
        super().on_train_begin(logs)

    def channel_sparsity_at(self, step):
        return cubic_sparsity(step, self.channel_sparsity, 0, self.end)

    def is_update_step(self, step):
        return 0 < step <= self.end and (step % self.update_every == 0 or step == self.end)

    def _initialise(self):
        masks = []
        for count, mask in zip(self.counts, self.masks):
            flat = np.zeros(int(np.prod(mask.shape)), np.float32)
            flat[self.rng.permutation(flat.size)[:count]] = 1.0
            masks.append(flat.reshape(mask.shape))
        self._set_masks(masks)

    def _after_step(self, step):
        if self.is_update_step(step):
            if not self._recorded:
                raise RuntimeError(
                    "Chase regrows weights by their gradients, which only approxtrain.train.loop.fit records: "
                    "train with loop.fit (or `approxtrain train --dst chase`) instead of model.fit"
                )
            self.update(step)

    def update(self, step):
        """One channel-removal and prune-and-grow update, as after optimizer step `step`."""
        fraction = cosine_fraction(step, self.end, self.drop_fraction)
        weights, masks = self.kernel_values(), self.mask_values()
        self._update_channels(weights, masks, self.channel_sparsity_at(step))
        magnitudes, gradients, flat_masks, alloweds = [], [], [], []
        for i, (target, weight, mask) in enumerate(zip(self.targets, weights, masks)):
            allowed = np.ones(mask.shape, bool)
            channel_mask = self.channel_masks[i]
            if channel_mask is not None:
                allowed = np.broadcast_to(channel_mask.numpy() > 0, mask.shape)
            magnitudes.append(np.abs(weight).ravel())
            gradients.append(np.abs(self._gradients[id(target.kernel)].numpy()).ravel())
            flat_masks.append((mask * allowed).ravel())
            alloweds.append(allowed.ravel())
        if self.exploration == "layer":
            moved = [
                prune_and_grow(*arrays, fraction, count)
                for *arrays, count in zip(magnitudes, gradients, flat_masks, alloweds, self.counts)
            ]
        else:  # one ranking over all kernels: the total count is kept, per-kernel counts move
            joined = [np.concatenate(a) for a in (magnitudes, gradients, flat_masks, alloweds)]
            mask, grown = prune_and_grow(*joined, fraction, sum(self.counts))
            bounds = np.cumsum([0] + [m.size for m in flat_masks])
            moved = [(mask[a:b], grown[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        self._set_masks(
            [mask.reshape(w.shape) for (mask, _), w in zip(moved, weights)],
            [grown.reshape(w.shape) for (_, grown), w in zip(moved, weights)],
        )

    def _update_channels(self, weights, masks, channel_target):
        """Removes output channels until round(channel_target * channels) are: of all removable
        kernels together above each layer's floor ("global"), or of each kernel ("layer")."""
        which = [i for i, channel_mask in enumerate(self.channel_masks) if channel_mask is not None]
        if not which:
            return
        scores = [channel_scores(weights[i], masks[i], self.channel_score) for i in which]
        live = [self.channel_masks[i].numpy() for i in which]
        if self.channel_scope == "layer":
            new = remove_channels(scores, live, [int(round(channel_target * v.size)) for v in live])
        else:
            sizes = [v.size for v in live]
            floors = channel_floors(sizes, self.channel_sparsity, self.min_channels)
            new = remove_channels(scores, live, int(round(channel_target * sum(sizes))), floors)
        for i, old, v in zip(which, live, new):
            if np.any(old != v):
                self.channel_masks[i].assign(v)

    def state(self):
        arrays = super().state()
        arrays["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        arrays["end"] = np.array(self.end if self.end is not None else -1, np.int64)
        return arrays

    def load_state(self, arrays):
        super().load_state(arrays)
        self.rng.bit_generator.state = json.loads(str(arrays["rng"]))
        end = int(arrays["end"])
        self.end = None if end < 0 else end
