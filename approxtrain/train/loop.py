"""A training loop on TensorFlow's own distribution engine that calls Keras callbacks like `fit`.

    history = approxtrain.train.loop.fit(model, dataset, epochs=3, callbacks=[...])

Keras 3's `model.fit` cannot train under `tf.distribute.MultiWorkerMirroredStrategy`
(its first batch fails with "PerReplica ... unsupported type", fp32 too), so training
runs here instead: `strategy.experimental_distribute_dataset` feeds `strategy.run`,
each replica computes its share of the global batch's mean loss, and the Keras
optimizer sums the replicas' gradients. The same code runs without a strategy, under
`MirroredStrategy` and under `MultiWorkerMirroredStrategy`, and it calls the standard
callback hooks (on_train_begin, on_epoch_begin, on_train_batch_begin/end, on_epoch_end,
on_train_end) with the logs `fit` would give: "loss" and "accuracy", means so far.

Step hooks: a callback with a method `before_apply(variables, gradients) -> gradients` (the
sparse-training callbacks of approxtrain.sparsity) is called inside the compiled train step
between the gradient and `apply_gradients`, e.g. to mask the gradients of pruned weights.

A step whose loss is not finite stops training with NonFiniteLoss naming the epoch,
the step and the first layer whose output was not finite on that batch.
"""

import keras
import numpy as np
import tensorflow as tf

from approxtrain.train import testing_hooks


class NonFiniteLoss(RuntimeError):
    """The loss of a training step was NaN or infinite."""

    def __init__(self, epoch, step, loss, layer, where):
        self.epoch, self.step, self.loss, self.layer = epoch, step, loss, layer  # layer: "'name' (Class)" or None
        super().__init__(f"the loss became {loss} at epoch {epoch}, step {step} ({where})")


def fit(model, dataset, *, epochs, initial_epoch=0, callbacks=(), verbose=0, strategy=None, steps_per_epoch=None):
    """Trains a compiled model like `model.fit(dataset, epochs=..., initial_epoch=...)`.

    dataset: a tf.data.Dataset of (inputs, integer labels) global batches. Epoch e
    (0-based) sees the dataset's (e+1)-th iteration whatever initial_epoch is, so a run
    resumed after epoch k sees the same batches as one that never stopped.
    The model's loss must be a keras.losses.Loss; its optimizer sums replica gradients.
    Returns the keras.callbacks.History.
    """
    strategy = strategy or model.distribute_strategy
    steps = _Steps(model, strategy)
    steps.hooks = [c for c in callbacks if callable(getattr(c, "before_apply", None))]
    distributed = strategy.experimental_distribute_dataset(dataset)
    train_step = steps.function("train", distributed.element_spec)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    for _ in range(initial_epoch):  # advance the shuffle: each iteration draws the next order
        iter(distributed)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        testing_hooks.reached(f"epoch-begin:{epoch + 1}")
        callback_list.on_epoch_begin(epoch)
        totals = np.zeros(3)  # loss sum, correct predictions, examples
        for step, batch in enumerate(distributed):
            callback_list.on_train_batch_begin(step)
            loss_sum, correct, count, nonfinite = train_step(batch)
            if not np.isfinite(loss_sum):
                raise NonFiniteLoss(epoch + 1, step + 1, float(loss_sum), *steps.first_nonfinite(nonfinite))
            totals += (loss_sum, correct, count)
            logs = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history


def evaluate(model, dataset, strategy=None):
    """{"loss", "accuracy"} of a compiled model over a dataset of (inputs, labels) batches."""
    strategy = strategy or model.distribute_strategy
    steps = _Steps.of(model, strategy)
    totals = np.zeros(3)
    distributed = strategy.experimental_distribute_dataset(dataset)
    test_step = steps.function("test", distributed.element_spec)
    for batch in distributed:
        totals += test_step(batch)
    count = max(totals[2], 1)
    return {"loss": float(totals[0] / count), "accuracy": float(totals[1] / count)}


def broadcast_from_first_replica(strategy, variables):
    """Gives every replica the first replica's values (the chief's, under MultiWorkerMirrored):
    only the chief reads a checkpoint, the other workers need no copy of the run folder."""
    variables = list(variables)
    if strategy.num_replicas_in_sync == 1 or not variables:
        return

    def replica_fn():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return [
            context.all_reduce("sum", tf.where(first, v.value(), tf.zeros_like(v.value())))
            for v in _tf_variables(variables)
        ]

    @tf.function
    def broadcast():
        values = strategy.run(replica_fn)
        for variable, value in zip(_tf_variables(variables), values):
            variable.assign(strategy.experimental_local_results(value)[0])

    with strategy.scope():
        broadcast()


def broadcast_int(strategy, value):
    """The first replica's integer `value` on every worker."""
    if strategy.num_replicas_in_sync == 1:
        return int(value)

    def replica_fn():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce("sum", tf.where(first, tf.constant(value, tf.int64), tf.constant(0, tf.int64)))

    result = strategy.run(tf.function(replica_fn))
    return int(strategy.experimental_local_results(result)[0])


def _tf_variables(variables):
    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


class _Steps:
    """The compiled train and test steps of one model under one strategy."""

    def __init__(self, model, strategy):
        self.model, self.strategy = model, strategy
        self.loss_fn = model.loss
        if not isinstance(self.loss_fn, keras.losses.Loss):
            raise ValueError(
                f"approxtrain.train.loop needs a model compiled with a keras.losses.Loss, got loss={self.loss_fn!r}"
            )
        if not model.optimizer.built:  # its variables cannot be created inside the replicated step
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
        self.layers, probe_outputs = _probed_layers(model)
        self.probe = keras.Model(model.inputs, [model.outputs[0], *probe_outputs]) if self.layers else None
        # XLA only where Keras' fit would use it (fp32 models on a GPU, no strategy).
        self.jit = bool(getattr(model, "jit_compile", False)) and strategy.num_replicas_in_sync == 1
        self.functions = {}
        self.hooks = []  # step hooks: before_apply(variables, gradients) -> gradients
        model._approxtrain_steps = (strategy, self)

    @classmethod
    def of(cls, model, strategy):
        cached = getattr(model, "_approxtrain_steps", None)
        return cached[1] if cached and cached[0] is strategy else cls(model, strategy)

    def function(self, kind, spec):
        """The compiled "train" or "test" step for batches of `spec` (a distributed dataset's
        element_spec: one trace serves every batch size, the last partial batch included)."""
        key = (kind, repr(spec))
        if key not in self.functions:
            step = self._train_step if kind == "train" else self._test_step
            compiled = tf.function(step, input_signature=[spec], jit_compile=self.jit and kind == "train")
            self.functions[key] = lambda batch: [t.numpy() for t in compiled(batch)]
        return self.functions[key]

    def first_nonfinite(self, nonfinite):
        """(layer or None, where): the first layer flagged in a step's `nonfinite` output."""
        if not self.layers:
            return None, "the layer is unknown: only functional models show their layers' outputs"
        flagged = np.flatnonzero(nonfinite)
        if not flagged.size:
            return None, "every layer's output was finite on this worker; the loss itself was not"
        layer = self.layers[flagged[0]]
        name = f"{layer.name!r} ({type(layer).__name__})"
        return name, f"first non-finite output: layer {name}"

    def _forward(self, x, training):
        if self.probe is None:
            return self.model(x, training=training), []
        outputs = self.probe(x, training=training)
        return outputs[0], outputs[1:]

    def _sums(self, y, predictions, per_example):
        labels = tf.cast(tf.reshape(y, [-1]), tf.int64)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(predictions, axis=-1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def _train_step(self, batch):
        model, num_replicas = self.model, self.strategy.num_replicas_in_sync

        def replica_step(x, y):
            context = tf.distribute.get_replica_context()
            with tf.GradientTape() as tape:
                predictions, probes = self._forward(x, training=True)
                per_example = self.loss_fn.call(y, predictions)
                loss_sum, correct, count = self._sums(y, predictions, per_example)
                # The global batch's mean loss: this replica's share over the global count.
                global_count = context.all_reduce("sum", count)
                loss = loss_sum / tf.maximum(global_count, 1.0)
                if model.losses:
                    loss += tf.add_n(model.losses) / num_replicas
            gradients = tape.gradient(loss, model.trainable_variables)
            for hook in self.hooks:
                gradients = hook.before_apply(model.trainable_variables, gradients)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            # Which layer outputs were not finite, worked out only on a replica whose loss was not.
            nonfinite = tf.cond(
                tf.math.is_finite(loss_sum),
                lambda: tf.zeros([len(probes)], tf.float32),
                lambda: _nonfinite_flags(probes),
            )
            return loss_sum, correct, count, nonfinite

        results = self.strategy.run(replica_step, args=batch)
        return [self.strategy.reduce("sum", r, axis=None) for r in results]

    def _test_step(self, batch):
        def replica_step(x, y):
            predictions, _ = self._forward(x, training=False)
            return self._sums(y, predictions, self.loss_fn.call(y, predictions))

        results = self.strategy.run(replica_step, args=batch)
        return [self.strategy.reduce("sum", r, axis=None) for r in results]


def _nonfinite_flags(tensors):
    if not tensors:
        return tf.zeros([0], tf.float32)
    return tf.stack([1.0 - tf.cast(tf.reduce_all(tf.math.is_finite(t)), tf.float32) for t in tensors])


def _probed_layers(model):
    """The model's layers in order and each one's first float output (functional models only).

    A row-dropout layer that hands its kept units to the next Dense is left out: its full-width
    output would otherwise be computed every step only to be probed (the next layer, which
    multiplies its kept units, shows a non-finite value of it anyway)."""
    from approxtrain.layers import ApproxDropoutDense, _kept_units

    layers, outputs = [], []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, ApproxDropoutDense) and _kept_units.hands_on(layer):
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):  # a layer called more than once, or a subclassed model
            return [], []
        floats = [t for t in keras.tree.flatten(output) if "float" in str(t.dtype)]
        if floats:
            layers.append(layer)
            outputs.append(floats[0])
    return layers, outputs
