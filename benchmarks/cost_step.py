"""Time of a counted training step against a plain compiled one (issue 21: at most 3 steps).

For LeNet-5 (28x28x1) and ResNet-20 (32x32x3) at one batch size, it times, interleaved round by
round on the same batch:
- plain: `model.train_on_batch(x, y)` (Keras's compiled step: forward, backward, SGD update);
- counted: one step of approxtrain.cost.profile's counting step (forward, backward, the count
  reductions in the same tf.function, the NumPy finish of the counts; no update, as
  `approxtrain cost` without --run);
- counted + update: the same with an SGD update in the graph (as `approxtrain cost --run`).
It prints the median of each, the ratios to plain, and the first call of each (tracing included).

    python benchmarks/cost_step.py [--batch-size 128] [--rounds 10]

The batch is synthetic (uniform [0, 1), a quarter of it zero): the time does not depend on the
values. On a shared machine run it when it is otherwise idle, or say that the numbers were taken
under load.
"""

import argparse
import os
import statistics
import time

from importlib import import_module

import keras
import numpy as np

from approxtrain import models

cost_profile = import_module("approxtrain.cost.profile")  # the module (the package exports the function)

MODELS = (("lenet5", (28, 28, 1)), ("resnet20", (32, 32, 3)))


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, shape, batch_size, rounds):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *shape), "float32") * (rng.random((batch_size, *shape)) > 0.25)
    y = rng.integers(0, 10, batch_size).astype("int32")
    plain = models.build(name, shape, 10)
    plain.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy())
    counted = models.build(name, shape, 10)
    step = cost_profile.counting_step(counted)
    updating = cost_profile.counting_step(models.build(name, shape, 10), keras.optimizers.SGD(0.01))
    first_plain = timed(lambda: plain.train_on_batch(x, y))
    first_counted = timed(lambda: step(x, y))
    timed(lambda: updating(x, y))
    t_plain, t_counted, t_updating = [], [], []
    for _ in range(rounds):
        t_plain.append(timed(lambda: plain.train_on_batch(x, y)))
        t_counted.append(timed(lambda: step(x, y)))
        t_updating.append(timed(lambda: updating(x, y)))
    p, c, u = (statistics.median(t) for t in (t_plain, t_counted, t_updating))
    times = f"{p * 1e3:.1f} | {c * 1e3:.1f} | {c / p:.2f} | {u * 1e3:.1f} | {u / p:.2f}"
    return f"| {name} | {batch_size} | {times} | {first_plain:.2f} | {first_counted:.2f} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at the start\n")
    print(
        "| model | batch | plain step ms | counted step ms | ratio | counted + update ms | ratio "
        "| first plain s | first counted s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape in MODELS:
        print(measure(name, shape, args.batch_size, args.rounds), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
