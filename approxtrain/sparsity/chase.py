"""Chase: channel-aware dynamic sparse training (Yin et al. 2023, arXiv 2305.19454)."""

import json

import numpy as np
import tensorflow as tf

from approxtrain.sparsity.masks import MaskedTraining
from approxtrain.sparsity.schedule import cosine_fraction, cubic_sparsity, erk_densities
from approxtrain.sparsity.settings import check_fraction, check_steps

DISTRIBUTIONS = ("uniform", "erk")


class Chase(MaskedTraining):
    """Dynamic sparse training at a fixed density that also removes whole output channels.

    - Start: a random sparse mask at density 1 - `sparsity` ("uniform": every kernel at that
      density; "erk": Erdos-Renyi-Kernel densities with the same total), drawn from
      numpy's default_rng(`seed`).
    - After every `update_every`-th optimizer step up to step `end` (and after step `end`):
      1. channels: of each Dense/Conv kernel but the last (the outputs), the output channels
         with the lowest "unmasked mean magnitude" (mean |w| over the channel's active weights;
         0 when none is active) are removed until round(c_t * channels) are, c_t following the
         cubic schedule from 0 at step 0 to `channel_sparsity` at step `end`. A removed
         channel's kernel slice and bias stay 0 for good, so its output is activation(0) (0 for
         ReLU); the next layer's input slice for it stays (it multiplies zeros) until
         `export_slim` removes it.
      2. prune and grow (RigL, Evci et al. 2020): the share f_t = drop_fraction / 2 *
         (1 + cos(pi t / end)) of each kernel's active weights with the smallest |w| is
         dropped, and as many weights (plus those lost with removed channels) are regrown where
         the dense gradient of that step is largest in magnitude, outside removed channels. Each
         kernel thus keeps its number of active weights (fewer only when its live channels
         cannot hold them); regrown weights start at 0 with zeroed optimizer slots.
    `update_every` and `end` count OPTIMIZER STEPS; end=None: 3/4 of the steps Keras' callback
    params announce. Regrowth needs the dense gradient, which `approxtrain.train.loop.fit`'s step
    hook records: Chase refuses plain `model.fit` at its first update, and one replica only.
    """

    channel_masks_used = True

    def __init__(self, sparsity, channel_sparsity=0.0, update_every=100, end=None, drop_fraction=0.3,
                 distribution="uniform", seed=0):  # fmt: skip
        super().__init__()
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
        channel_target = self.channel_sparsity_at(step)
        new_masks, regrown = [], []
        for i, (target, weight, mask) in enumerate(zip(self.targets, self.kernel_values(), self.mask_values())):
            magnitude = np.abs(weight)
            allowed = np.ones(mask.shape, bool)
            channel_mask = self.channel_masks[i]
            if channel_mask is not None:
                live = self._remove_channels(channel_mask, magnitude, mask, channel_target)
                allowed = np.broadcast_to(live > 0, mask.shape)
            mask = (mask * allowed).ravel()
            # Drop the smallest active magnitudes...
            dropped = int(round(fraction * mask.sum()))
            order = np.argsort(np.where(mask > 0, magnitude.ravel(), np.inf), kind="stable")
            mask[order[:dropped]] = 0.0
            # ...and regrow where the gradient is largest, up to the kernel's count.
            need = min(self.counts[i], int(allowed.sum())) - int(mask.sum())
            score = np.where(
                (mask == 0) & allowed.ravel(), np.abs(self._gradients[id(target.kernel)].numpy()).ravel(), -1.0
            )
            grow = np.argsort(-score, kind="stable")[: max(need, 0)]
            mask[grow] = 1.0
            grown = np.zeros_like(mask)
            grown[grow] = 1.0
            new_masks.append(mask.reshape(weight.shape))
            regrown.append(grown.reshape(weight.shape))
        self._set_masks(new_masks, regrown)

    @staticmethod
    def _remove_channels(channel_mask, magnitude, mask, channel_target):
        """Removes the live channels of lowest unmasked mean magnitude until round(target *
        channels) are removed; returns the channel mask (1 = live)."""
        live = channel_mask.numpy()
        want = int(round(channel_target * live.size))
        removed = int((live == 0).sum())
        if want > removed:
            active = mask.reshape(-1, live.size)
            count = active.sum(axis=0)
            total = (magnitude.reshape(-1, live.size) * active).sum(axis=0)
            umm = np.where(count > 0, total / np.maximum(count, 1), 0.0)
            order = np.argsort(np.where(live > 0, umm, np.inf), kind="stable")
            live[order[: want - removed]] = 0.0
            channel_mask.assign(live)
        return live

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
