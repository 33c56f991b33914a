"""Approximate random dropout: time saved by the skipped multiplies (docs/approx-dropout.md).

Two sections, both interleaved (base, dropout, base, dropout, ...) and reporting the best round
of process CPU time (robust to other processes on a shared machine) and of wall time:

- layer: one training step (forward, backward, SGD update) of AMDense against ApproxDropoutDense
  (row, tile 32x64, row with group_size 32) at rate 0.5, for a few shapes;
- epoch: one epoch of LeNet-300-100 with mbm7 on the full Fashion-MNIST (the offline IDX files),
  SGD lr 0.01 momentum 0.9, at batch sizes 128 and 512, four variants: ``base`` (no dropout),
  ``row`` (``approx_dropout="row", dropout_rate=0.5``), ``row-tf`` (the same with the
  TensorFlow-op path the layers take on a GPU machine -- gathers around AMMatMul, the CPU path
  before the native AMMatMulKept op; the same bits) and ``elem`` (``dropout_rate=0.5`` alone:
  Keras's per-element Dropout(0.5) after each hidden layer, what row dropout replaces).

    python benchmarks/approx_dropout.py [--section layer|epoch|all] [--rounds 2] [--threads N]

--threads 1 runs TensorFlow on one thread (inter- and intra-op): slower, but its CPU times count
the work of a step without the thread pools' waiting, so they hold on a machine others load.
"""

import argparse
import gzip
import os
import time

FASHION = "/usr/share/datasets/fashion-mnist"


def best_of(step, rounds, repeat=1):
    """(best CPU s, best wall s) of `rounds` calls of `repeat` steps."""
    cpu = wall = float("inf")
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(repeat):
            step()
        cpu = min(cpu, (time.process_time() - c0) / repeat)
        wall = min(wall, (time.perf_counter() - w0) / repeat)
    return cpu, wall


def layer_section(rounds):
    import keras
    import numpy as np
    import tensorflow as tf

    from approxtrain import layers as am

    def stepper(layer, x):
        layer.build(x.shape)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x, training=True))
            grads = tape.gradient(loss, layer.trainable_weights)
            optimizer.apply_gradients(zip(grads, layer.trainable_weights))

        step()  # trace
        return step

    dropouts = {
        "row": lambda: am.ApproxRandomDropout(0.5),
        "tile32x64": lambda: am.ApproxRandomDropout(0.5, "tile"),
        "row g=32": lambda: am.ApproxRandomDropout(0.5, group_size=32),
    }
    for rows, n_in, units in ((128, 784, 300), (512, 784, 300), (256, 1024, 1024)):
        x = tf.constant(np.random.default_rng(0).random((rows, n_in)).astype(np.float32))
        steps = {"AMDense": stepper(am.AMDense(units, activation="relu", multiplier="mbm7"), x)}
        for name, make in dropouts.items():
            layer = am.ApproxDropoutDense(units, activation="relu", multiplier="mbm7", dropout=make())
            steps[name] = stepper(layer, x)
        cpu = {name: float("inf") for name in steps}
        for _ in range(rounds * 3):
            for name, step in steps.items():
                cpu[name] = min(cpu[name], best_of(step, 1, repeat=10)[0])
        base = cpu["AMDense"]
        cells = ", ".join(f"{name} {t * 1e3:.2f} ms ({t / base:.2f}x)" for name, t in cpu.items())
        print(f"layer [{rows}x{n_in}] -> {units}, CPU per step: {cells}", flush=True)


def epoch_section(rounds):
    import keras
    import numpy as np
    import tensorflow as tf

    from approxtrain import models
    from approxtrain.ops import _matmul_kept

    def idx(name, offset):
        with gzip.open(os.path.join(FASHION, name)) as f:
            return np.frombuffer(f.read(), np.uint8)[offset:]

    x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1).astype(np.float32) / 255
    y = idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64)

    def model(options):
        keras.utils.set_random_seed(1)
        m = models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7", **options)
        m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
        return m

    for batch in (128, 512):
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(2)
        runs = {
            "base": model({}),
            "row": model(dict(approx_dropout="row", dropout_rate=0.5)),
            "row-tf": model(dict(approx_dropout="row", dropout_rate=0.5)),
            "elem": model(dict(dropout_rate=0.5)),
        }

        def fit(name, data):
            # row-tf: traced (also the retrace for the epoch's last, smaller batch) on the TF-op path
            native = _matmul_kept.runs_natively
            if name == "row-tf":
                _matmul_kept.runs_natively = lambda: False
            try:
                runs[name].fit(data, epochs=1, verbose=0)
            finally:
                _matmul_kept.runs_natively = native

        for name in runs:
            fit(name, data.take(3))  # trace
        best = {name: (float("inf"), float("inf")) for name in runs}
        for _ in range(rounds):
            for name in runs:
                cpu, wall = best_of(lambda name=name: fit(name, data), 1)
                best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
        for kind, i in (("CPU", 0), ("wall", 1)):
            base, row, row_tf, elem = (best[name][i] for name in ("base", "row", "row-tf", "elem"))
            print(
                f"epoch, batch {batch}, {kind} s/epoch: base {base:.2f}, row {row:.2f} ({row / base:.2f}x base), "
                f"row-tf {row_tf:.2f} ({row_tf / base:.2f}x base), elem {elem:.2f} ({elem / base:.2f}x base); "
                f"row/elem {row / elem:.2f}x",
                flush=True,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=("layer", "epoch", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best one reported)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow inter- and intra-op threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.section in ("layer", "all"):
        layer_section(args.rounds)
    if args.section in ("epoch", "all"):
        epoch_section(args.rounds)


if __name__ == "__main__":
    main()
