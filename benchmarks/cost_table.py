"""The README's "Cost model" table: one training step of LeNet-5 and ResNet-20, dense and pruned
to 90 % weight sparsity, through the two commands a user runs.

For each model, two fp32 runs of `approxtrain train` on the same Fashion-MNIST subset and seed: a
dense one, and one with magnitude pruning (`--prune 0.9 --prune-scope global`, the cubic ramp over
the first half of the epochs, then fine-tuning with the masks fixed). Then `approxtrain cost
--run DIR` counts one training step of each run's last checkpoint on a real batch and prices it
with every multiplier in --multipliers.

    python benchmarks/cost_table.py [--epochs 2] [--subset 4096] [--batch-size 64]
        [--multipliers fp32,bf16,mbm7,mitchell7] [--keep DIR]

Fashion-MNIST (28x28x1) for both models: it is the dataset installed on the machine.
"""

import argparse
import json
import os
import tempfile

from approxtrain.cli import main as cli

MODELS = (("lenet5", "LeNet-5"), ("resnet20", "ResNet-20"))


def train(folder, model, args, prune):
    argv = ["train", "--model", model, "--dataset", "fashion_mnist", "--multiplier", "fp32"]
    argv += ["--epochs", str(args.epochs), "--subset", str(args.subset), "--batch-size", str(args.batch_size)]
    argv += ["--seed", "0", "--verbose", "0", "--out", folder]
    if prune:
        argv += ["--prune", "0.9", "--prune-scope", "global"]
    if cli(argv) != 0:
        raise SystemExit(f"approxtrain {' '.join(argv)} failed")
    with open(os.path.join(folder, "results.json")) as f:
        return json.load(f)


def count(folder, args):
    report = os.path.join(folder, "cost.json")
    argv = ["cost", "--run", folder, "--multiplier", args.multipliers, "--batches", "1", "--json", report]
    if cli(argv) != 0:
        raise SystemExit(f"approxtrain {' '.join(argv)} failed")
    with open(report) as f:
        return json.load(f)


def row(label, weights, results, report, multipliers):
    t = report["total"]
    energy = t["energy_pj"]

    def uj(m):
        e = energy[m]
        return "n/a" if e is None else f"{e['dense'] / 1e6:,.1f} / {e['zero_skipping'] / 1e6:,.1f}"

    sparsity = results.get("sparsity", {}).get("weight_sparsity")
    return (
        f"| {label} | {weights} | {100 * (sparsity or 0):.1f} | {100 * results['final']['test_accuracy']:.2f} | "
        f"{t['macs'] / 1e6:,.1f} | {100 * t['skippable_share']:.1f} | {100 * t['grad_weight']['rcp_share']:.1f} | "
        + " | ".join(uj(m) for m in multipliers)
        + " |"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--multipliers", default="fp32,bf16,mbm7,mitchell7")
    p.add_argument("--keep", help="keep the run folders here (default: a temporary folder)")
    args = p.parse_args()
    multipliers = args.multipliers.split(",")
    root = args.keep or tempfile.mkdtemp(prefix="cost_table_")
    lines = [
        "| model | weights | weight sparsity % | test acc % | MMACs / step | zero-operand % | RCP % of dW cartesian | "
        + " | ".join(f"{m} uJ dense / skip" for m in multipliers)
        + " |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(multipliers),
    ]
    for model, label in MODELS:
        for weights, prune in (("dense", False), ("90 % pruned", True)):
            folder = os.path.join(root, f"{model}_{'pruned' if prune else 'dense'}")
            results = train(folder, model, args, prune)
            lines.append(row(label, weights, results, count(folder, args), multipliers))
    print(
        f"fp32 training, {args.epochs} epoch(s) on {args.subset} examples, batch {args.batch_size}; one step "
        f"counted on a real batch; energy in microjoules per step (multiply + fp32 accumulate)\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
