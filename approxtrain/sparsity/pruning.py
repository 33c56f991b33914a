"""Magnitude pruning with retraining (Zhu & Gupta 2017; Pietron & Zurek, arXiv 2112.15445)."""

from approxtrain.sparsity.masks import MaskedTraining, magnitude_masks
from approxtrain.sparsity.schedule import cubic_sparsity
from approxtrain.sparsity.settings import check_fraction, check_steps

SCHEDULES = ("gradual", "oneshot")
SCOPES = ("layer", "global")


class MagnitudePruning(MaskedTraining):
    """Prunes the smallest-magnitude kernel weights of the multiply-heavy layers to `target`.

    A Keras callback for `model.fit(..., callbacks=[MagnitudePruning(0.9, end=2000)])` and for
    `approxtrain.train.loop.fit`. `start`, `end` and `every` count OPTIMIZER STEPS (batches),
    not epochs (the CLI's --prune-start/--prune-end are epochs, converted to steps).

    schedule "gradual": after every `every`-th step from `start` on, and after step `end`, the
    masks are recomputed for the sparsity of Zhu & Gupta's cubic schedule
    `cubic_sparsity(step, target, start, end)`; after step `end` it is exactly `target`.
    schedule "oneshot": after step `start` (0: before the first step) the kernels are pruned to
    `target` at once; `end` and `every` are not used.
    scope "layer": each kernel loses round(target * its size) weights; "global": one threshold
    over all kernels together. Pruned weights stay exactly 0 afterwards (see masks.py); masks
    only grow sparser.
    """

    def __init__(self, target, schedule="gradual", start=0, end=None, every=100, scope="layer", initial=0.0):
        super().__init__()
        self.target = check_fraction("target", target, upper_inclusive=False)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.schedule, self.scope = schedule, scope
        self.start = check_steps("start", start, minimum=0)
        if schedule == "gradual":
            if end is None:
                raise ValueError("gradual pruning needs end (the optimizer step at which the target is reached)")
            self.end = check_steps("end", end, minimum=self.start)
        else:
            self.end = self.start
        self.every = check_steps("every", every, minimum=1)
        self.initial = check_fraction("initial", initial, upper_inclusive=False)

    def sparsity_at(self, step):
        """The scheduled sparsity after `step` optimizer steps."""
        if self.schedule == "oneshot":
            return self.target if step >= self.start else 0.0
        return cubic_sparsity(step, self.target, self.start, self.end, self.initial) if step >= self.start else 0.0

    def is_update_step(self, step):
        if self.schedule == "oneshot":
            return step == self.start
        return self.start <= step <= self.end and ((step - self.start) % self.every == 0 or step == self.end)

    def _initialise(self):
        if self.is_update_step(0):
            self._prune(0)

    def _after_step(self, step):
        if self.is_update_step(step):
            self._prune(step)

    def _prune(self, step):
        sparsity = self.sparsity_at(step)
        if sparsity <= 0:
            return
        self._set_masks(magnitude_masks(self.kernel_values(), self.mask_values(), sparsity, self.scope))
