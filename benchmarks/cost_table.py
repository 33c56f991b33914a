"""The README's "Cost model" table: one training step of LeNet-5 and ResNet-20, dense and at 90 %
pruning.

approxtrain has no pruning feature yet, so "90 % pruned" here is a one-shot global magnitude mask:
each model is trained briefly (fp32), then the 90 % smallest-magnitude weights of all its conv and
dense kernels together are set to zero, and one training step's products are counted with
approxtrain.cost.profile (forward and backward only, no update, so the mask stays in place).

    python benchmarks/cost_table.py [--batch-size 64] [--train-examples 2048] [--epochs 1]

Fashion-MNIST (28x28x1) for both models: it is the dataset installed on the machine.
"""

import argparse

import keras
import numpy as np

from approxtrain import cost, data, models

MULTIPLIERS = "fp32,bf16,mbm7"


def prune_globally(model, fraction):
    """Zeroes the `fraction` smallest |w| of all conv and dense kernels together (one threshold)."""
    kernels = [
        layer.kernel
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D))
    ]
    magnitudes = np.concatenate([np.abs(k.numpy()).ravel() for k in kernels])
    threshold = np.quantile(magnitudes, fraction)
    for k in kernels:
        w = k.numpy()
        k.assign(np.where(np.abs(w) > threshold, w, 0).astype(w.dtype))


def row(label, weights, report):
    t = report["total"]
    e = t["energy_pj"]

    def uj(m):
        return "n/a" if e[m] is None else f"{e[m]['dense'] / 1e6:.1f} / {e[m]['zero_skipping'] / 1e6:.1f}"

    return (
        f"| {label} | {weights} | {t['macs'] / 1e6:,.1f} | {100 * t['skippable_share']:.1f} | "
        f"{100 * t['grad_weight']['rcp_share']:.1f} | " + " | ".join(uj(m) for m in MULTIPLIERS.split(",")) + " |"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-examples", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    keras.utils.set_random_seed(0)
    d = data.load("fashion_mnist", batch_size=args.batch_size, subset=args.train_examples)
    lines = [
        "| model | weights | MMACs / step | zero-operand % | RCP % of dW cartesian | "
        "fp32 uJ dense / skip | bf16 uJ dense / skip | mbm7 uJ dense / skip |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("lenet5", "LeNet-5"), ("resnet20", "ResNet-20")):
        model = models.build(name, d.info.input_shape, d.info.num_classes)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy()
        )
        model.fit(d.train, epochs=args.epochs, verbose=0)
        lines.append(row(label, "dense", cost.profile(model, d.train.take(1), MULTIPLIERS)))
        prune_globally(model, 0.9)
        lines.append(row(label, "90 % pruned", cost.profile(model, d.train.take(1), MULTIPLIERS)))
    print(
        f"batch {args.batch_size}, after {args.epochs} epoch(s) on {args.train_examples} examples; "
        f"energy in microjoules per step (multiply + fp32 accumulate)\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
