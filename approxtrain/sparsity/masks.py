"""Which weights are prunable, their masks, and how masks are kept on the weights during training.

A mask is a float32 tf.Variable of 1s (kept) and 0s (pruned) the shape of a kernel. Three things
keep a pruned weight exactly 0 through every optimizer step:

1. the kernel's Keras `constraint` multiplies it by its mask after every `apply_gradients`
   (Keras applies variable constraints there, in `model.fit` and in approxtrain's own loop), so
   momentum, Adam moments and decoupled weight decay cannot revive it;
2. in approxtrain's loop (`approxtrain.train.loop.fit`), the step hook `before_apply` also masks
   the gradients, so the optimizer's moments of pruned weights stay 0;
3. whenever a mask changes, the optimizer's slots (momentum, Adam m and v) of every weight
   pruned or regrown are reset to 0.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

STATE_FORMAT = 1


class Target(NamedTuple):
    """One prunable kernel: its layer, the kernel and bias variables, and whether its output
    channels (the kernel's last axis, which the bias matches) can be removed as a whole."""

    layer: object
    kernel: object  # keras.Variable
    bias: object  # keras.Variable or None
    channels: bool  # Dense and Conv1D/2D/3D: output channel = kernel[..., c] and bias[c]

    @property
    def name(self):
        return self.kernel.path


def _kernel_attributes(layer):
    """(attribute names of the layer's prunable kernels, whether output channels are removable)."""
    kl = keras.layers
    if isinstance(layer, (kl.Dense, kl.Conv1D, kl.Conv2D, kl.Conv3D)):
        return ("kernel",), getattr(layer, "groups", 1) == 1
    if isinstance(layer, (kl.EinsumDense, kl.Conv1DTranspose, kl.Conv2DTranspose, kl.Conv3DTranspose)):
        return ("kernel",), False
    if isinstance(layer, kl.DepthwiseConv2D):
        return ("kernel",), False
    if isinstance(layer, (kl.SeparableConv1D, kl.SeparableConv2D)):
        return ("depthwise_kernel", "pointwise_kernel"), False
    return (), False


def prunable(model, required=True):
    """The kernels of the model's multiply-heavy layers (Dense, EinsumDense, Conv*, their AM
    twins, inside nested models and MultiHeadAttention too), in layer order. Biases,
    BatchNormalization and embeddings are never pruned."""
    targets, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        names, channels = _kernel_attributes(layer)
        for attribute in names:
            kernel = getattr(layer, attribute, None)
            if kernel is None or id(kernel) in seen or not kernel.trainable:
                continue
            seen.add(id(kernel))
            bias = getattr(layer, "bias", None) if channels else None
            targets.append(Target(layer, kernel, bias, channels and attribute == "kernel"))
    if not targets and required:
        raise ValueError(f"model {model.name!r} has no prunable layer (Dense, EinsumDense, Conv and their AM twins)")
    return targets


def magnitude_masks(weights, masks, sparsity, scope):
    """New 0/1 masks pruning the smallest |w|: `round(sparsity * n)` weights of each kernel
    (scope "layer") or of all kernels together (scope "global"). Weights already pruned by `masks`
    go first, so masks only ever lose ones; ties go to the lower flat index (a stable sort)."""
    scores = [np.where(m > 0, np.abs(w), -1.0).ravel() for w, m in zip(weights, masks)]
    if scope == "layer":
        return [_prune_lowest(s, round(sparsity * s.size)).reshape(w.shape) for s, w in zip(scores, weights)]
    if scope == "global":
        flat = np.concatenate(scores)
        kept = _prune_lowest(flat, round(sparsity * flat.size))
        bounds = np.cumsum([0] + [s.size for s in scores])
        return [kept[a:b].reshape(w.shape) for a, b, w in zip(bounds[:-1], bounds[1:], weights)]
    raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")


def _prune_lowest(scores, count):
    mask = np.ones(scores.size, np.float32)
    mask[np.argsort(scores, kind="stable")[:count]] = 0.0
    return mask


class MaskedTraining(keras.callbacks.Callback):
    """Base of the sparse-training callbacks: masks on the prunable kernels, kept on the weights.

    Subclasses decide when and how the masks change (`_initialise`, `_after_step`). `step` counts
    the optimizer steps done under this callback (it is checkpointed with the masks)."""

    channel_masks_used = False  # Chase also removes output channels (kernel slice and bias)

    def __init__(self):
        super().__init__()
        self.targets, self.masks, self.channel_masks = [], [], []
        self.step, self.initialised, self._attached_to = 0, False, None

    # Attaching -------------------------------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        self.attach(model)

    def attach(self, model):
        """Creates the masks (all ones) for `model` and installs them as kernel constraints; a
        second call for the same model does nothing. Call it before the first training step."""
        if self._attached_to is model:
            return
        if self._attached_to is not None:
            raise ValueError(f"this {type(self).__name__} is already attached to model {self._attached_to.name!r}")
        self._attached_to = model
        self.targets = prunable(model)
        with model.distribute_strategy.scope():
            self.masks = [tf.Variable(tf.ones(t.kernel.shape), trainable=False, name="mask") for t in self.targets]
            self.channel_masks = [
                tf.Variable(tf.ones([t.kernel.shape[-1]]), trainable=False, name="channel_mask")
                if self.channel_masks_used and t.channels and i < len(self.targets) - 1  # not the outputs
                else None
                for i, t in enumerate(self.targets)
            ]
        self._masked_gradient = {}
        for target, mask, channel_mask in zip(self.targets, self.masks, self.channel_masks):
            target.kernel.constraint = _masking(target.kernel.constraint, mask)
            self._masked_gradient[id(target.kernel)] = mask
            if channel_mask is not None and target.bias is not None:
                target.bias.constraint = _masking(target.bias.constraint, channel_mask)
                self._masked_gradient[id(target.bias)] = channel_mask
        model._approxtrain_sparsity = self  # checkpoints save and restore this state with the weights

    # Step hooks of approxtrain.train.loop --------------------------------------------------

    def before_apply(self, variables, gradients):
        """The gradients the optimizer applies: those of pruned weights (and removed channels'
        biases) set to 0. Called inside the compiled train step."""
        out = []
        for variable, gradient in zip(variables, gradients):
            mask = self._masked_gradient.get(id(variable))
            out.append(gradient if mask is None or gradient is None else gradient * mask)
        return out

    # Keras callback hooks --------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if not self.initialised:
            self._initialise()
            self.initialised = True

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self._after_step(self.step)

    def _initialise(self):
        """Masks before the first step (a restored checkpoint skips this)."""

    def _after_step(self, step):
        """Updates the masks after optimizer step `step` (1-based) when one is due."""

    # Changing masks --------------------------------------------------------------------------

    def mask_values(self):
        return [m.numpy() for m in self.masks]

    def kernel_values(self):
        return [np.asarray(keras.ops.convert_to_numpy(t.kernel)) for t in self.targets]

    def _set_masks(self, new_masks, regrown=None):
        """Installs new masks: pruned weights (and regrown ones, which restart from 0) become 0,
        and so do their optimizer slots."""
        regrown = regrown or [None] * len(new_masks)
        for target, variable, new, grown in zip(self.targets, self.masks, new_masks, regrown):
            new = np.asarray(new, np.float32)
            keep = new if grown is None else new * (1.0 - grown)
            variable.assign(new)
            target.kernel.assign(keras.ops.convert_to_numpy(target.kernel) * keep)
            self._zero_slots(target.kernel, keep)
        for target, channel_mask in zip(self.targets, self.channel_masks):
            if channel_mask is not None and target.bias is not None:
                keep = channel_mask.numpy()
                target.bias.assign(keras.ops.convert_to_numpy(target.bias) * keep)
                self._zero_slots(target.bias, keep)

    def _zero_slots(self, variable, keep):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not optimizer.built:
            return  # built later, with zero slots
        prefix = variable.path.replace("/", "_") + "_"
        for slot in optimizer.variables:
            if tuple(slot.shape) == tuple(variable.shape) and slot.name.startswith(prefix):
                slot.assign(keras.ops.convert_to_numpy(slot) * keep)

    # Checkpointed state ---------------------------------------------------------------------

    def state(self):
        """Everything needed to continue bit for bit: {name: numpy array}."""
        arrays = {
            "format": np.array(STATE_FORMAT),
            "kind": np.array(type(self).__name__),
            "step": np.array(self.step, np.int64),
            "initialised": np.array(self.initialised),
            "targets": np.array([t.name for t in self.targets]),
        }
        for i, mask in enumerate(self.masks):
            arrays[f"mask/{i}"] = mask.numpy()
        for i, channel_mask in enumerate(self.channel_masks):
            if channel_mask is not None:
                arrays[f"channel_mask/{i}"] = channel_mask.numpy()
        return arrays

    def load_state(self, arrays):
        """Restores `state()`; ValueError when it belongs to another method or model."""
        kind, names = str(arrays["kind"]), [str(n) for n in arrays["targets"]]
        if kind != type(self).__name__:
            raise ValueError(f"the sparsity state is of {kind}, not {type(self).__name__}")
        if names != [t.name for t in self.targets]:
            raise ValueError(
                f"the sparsity state masks {names}, this model's kernels are {[t.name for t in self.targets]}"
            )
        self.step, self.initialised = int(arrays["step"]), bool(arrays["initialised"])
        for i, mask in enumerate(self.masks):
            mask.assign(arrays[f"mask/{i}"])
        for i, channel_mask in enumerate(self.channel_masks):
            if channel_mask is not None:
                channel_mask.assign(arrays[f"channel_mask/{i}"])


def _masking(previous, mask):
    """A kernel constraint: the previous one (if any), then the mask."""

    def constrain(w):
        return (previous(w) if previous is not None else w) * keras.ops.cast(mask, w.dtype)

    return constrain
