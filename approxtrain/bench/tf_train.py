"""Bench section `tf_train`: one LeNet-5 training step, AM layers vs the native Keras model.

The AM model is `approxtrain.substitute(native, mbm7)`, so both run the same graph
apart from the products. Time per step is the median over repeats after warm-up
(the first calls trace the tf.function and fill caches); the two models take turns,
step by step, so changes in machine load hit both alike.
"""

import numpy as np

from approxtrain.bench import bench_multiplier, interleaved_medians

BATCH = 128


def add_arguments(parser):
    """No options of its own; `approxtrain bench --quick` shortens it."""


def lenet5():
    import keras

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu"),
            keras.layers.Dense(84, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="lenet5",
    )


def train_step(model, x, y):
    """One SGD step of `model` on (x, y) as a callable (a tf.function, traced on first call)."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return lambda: step(x, y).numpy()


def run(args):
    import approxtrain

    quick = getattr(args, "quick", False)
    warmup, repeats = (1, 2) if quick else (3, 20)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)

    native = lenet5()
    multiplier = bench_multiplier()
    label = multiplier.name
    am = approxtrain.substitute(native, multiplier)
    native_s, am_s = interleaved_medians([train_step(native, x, y), train_step(am, x, y)], repeats, warmup)
    row = {
        "section": "tf_train",
        "case": f"lenet5 train step, batch {BATCH}, 28x28x1",
        "multiplier": label,
        "native_ms": round(native_s * 1e3, 3),
        "am_ms": round(am_s * 1e3, 3),
        "am_over_native": round(am_s / native_s, 2),
    }
    print(
        f"[tf_train] {row['case']}: native {row['native_ms']} ms, AM ({label}) {row['am_ms']} ms, "
        f"ratio {row['am_over_native']}x"
    )
    return [row]
