"""`approxtrain compare`: the same model, data and seed once per multiplier; plot and table.

Each run lives in OUT/<multiplier>/ and is made by the same code as `approxtrain train`;
finished runs with the same settings are skipped and interrupted ones resumed, so
re-running the command continues where it stopped.

With --sparsity-variants dense,prune0.9,chase0.9 every multiplier is trained once per variant
(runs in OUT/<variant>/<multiplier>/): the table has a row per multiplier and a column per
variant, and accuracy_vs_sparsity.png plots test accuracy against achieved weight sparsity.
"""

import os

from approxtrain.commands.train import add_run_arguments, config_from_args

PLOT, TABLE, SUMMARY = "convergence.png", "comparison.md", "summary.json"
SPARSITY_PLOT = "accuracy_vs_sparsity.png"


def add_parser(sub):
    p = sub.add_parser(
        "compare", help="train once per multiplier and compare convergence", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(p)
    p.add_argument(
        "--multipliers",
        default="fp32,bf16,mbm7,mitchell7",
        help="comma-separated multipliers, one run each (default fp32,bf16,mbm7,mitchell7)",
    )
    p.add_argument(
        "--sparsity-variants",
        metavar="LIST",
        help="comma-separated columns, each trained with every multiplier: dense, prune<S> (magnitude "
        "pruning to S with the --prune-* settings), chase<S> or chase<S>c<C> (Chase at sparsity S, channel "
        "sparsity C, default --channel-sparsity); e.g. dense,prune0.9,chase0.9c0.3",
    )
    p.add_argument("--out", help="output directory (default runs/compare_<model>_<dataset>)")
    p.set_defaults(func=run)


def parse_multipliers(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--multipliers needs at least one name, got {text!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"--multipliers lists {', '.join(duplicates)} more than once")
    return names


def run(args):
    out = args.out or f"runs/compare_{args.model}_{args.dataset}"
    names = parse_multipliers(args.multipliers)
    if args.sparsity_variants is not None:
        return run_variants(args, out, names)
    configs = {name: config_from_args(args, name, os.path.join(out, name)) for name in names}
    for config in configs.values():  # settings clashes fail before hours of training
        from approxtrain.train import run_state

        run_state(config)
    results = compare(configs)
    paths = write_outputs(out, configs, results)
    print(f"\nconvergence plot: {paths['plot']}\ncomparison table: {paths['table']}\nsummary: {paths['summary']}")
    with open(paths["table"]) as f:
        print("\n" + f.read())
    return 0


def compare(configs):
    """Trains (or skips, or resumes) every run; returns multiplier -> results dict."""
    import keras

    from approxtrain.train import run_state, train

    results = {}
    for index, (name, config) in enumerate(configs.items(), 1):
        state, epoch = run_state(config)
        print(
            f"\n=== [{index}/{len(configs)}] {name}: "
            + {"finished": "already finished, skipped", "partial": f"resuming after epoch {epoch}", "new": "training"}[
                state
            ]
            + f" ({config.out})",
            flush=True,
        )
        keras.backend.clear_session()
        results[name] = train(config, resume=True)
    return results


def write_outputs(out, configs, results):
    from approxtrain import report
    from approxtrain.train.files import HISTORY, read_history, write_json

    rows = report.summarise(results)
    first = next(iter(configs.values()))
    dataset = next(iter(results.values()))["dataset"]
    title = (
        f"{first.model} on {first.dataset}: {first.epochs} epoch(s), {dataset['num_train']} training / "
        f"{dataset['num_test']} test examples, seed {first.seed}"
    )
    paths = {"plot": os.path.join(out, PLOT), "table": os.path.join(out, TABLE), "summary": os.path.join(out, SUMMARY)}
    histories = {name: read_history(os.path.join(c.out, HISTORY)) for name, c in configs.items()}
    report.plot_convergence(histories, paths["plot"], title=title)
    with open(paths["table"], "w") as f:
        f.write(report.markdown_table(rows, title=title))
    settings = {k: v for k, v in first.to_dict().items() if k not in ("multiplier", "out")}
    write_json(
        paths["summary"],
        {
            "title": title,
            "settings": settings,
            "runs": rows,
            "run_dirs": {n: c.out for n, c in configs.items()},
            **paths,
        },
    )
    return paths


# Sparsity variants --------------------------------------------------------------------------------


def variant_settings(args, kind, values):
    """TrainConfig.sparsity of one --sparsity-variants column."""
    from approxtrain.sparsity import settings

    if kind == "dense":
        return None
    if kind == "prune":
        return settings.prune_settings(
            values[0], args.prune_schedule, args.prune_start, args.prune_end, args.prune_every, args.prune_scope,
            args.epochs,
        )  # fmt: skip
    sparsity, channels = values
    return settings.chase_settings(
        sparsity, args.channel_sparsity or 0.0 if channels is None else channels, args.dst_end,
        args.dst_update_every, args.drop_fraction, args.sparse_init, args.epochs, exploration=args.dst_exploration,
    )  # fmt: skip


def run_variants(args, out, names):
    from approxtrain.sparsity.settings import parse_variants
    from approxtrain.train import run_state

    if args.prune is not None or args.dst is not None or args.sparsity is not None:
        raise ValueError("--sparsity-variants sets each column's sparsity: drop --prune, --dst and --sparsity")
    variants = parse_variants(args.sparsity_variants)
    configs = {
        f"{label}/{name}": config_from_args(
            args, name, os.path.join(out, label, name), sparsity=variant_settings(args, kind, values)
        )
        for label, kind, values in variants
        for name in names
    }
    for config in configs.values():
        run_state(config)
    results = compare(configs)
    paths = write_variant_outputs(out, [label for label, _, _ in variants], names, configs, results)
    print(
        f"\naccuracy vs sparsity: {paths['sparsity_plot']}\nconvergence plot: {paths['plot']}\n"
        f"comparison table: {paths['table']}\nsummary: {paths['summary']}"
    )
    with open(paths["table"]) as f:
        print("\n" + f.read())
    return 0


def variant_table(variants, names, results, title=None):
    """Markdown: rows = multipliers, columns = variants, cells = final test accuracy (%) with the
    achieved weight sparsity; then the channel sparsity and multiplies skipped of each column."""
    from approxtrain.report import fmt

    def pct(value):
        return fmt(None if value is None else 100 * value, ".2f")

    lines = [f"## {title}", ""] if title else []
    lines += ["| multiplier | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
    for name in names:
        cells = [pct(results[f"{v}/{name}"]["final"]["test_accuracy"]) for v in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| achieved (first multiplier's run) | " + " | ".join(variants) + " |",
              "|---|" + "---:|" * len(variants)]  # fmt: skip
    for key, what in (("weight_sparsity", "weight sparsity (%)"), ("channel_sparsity", "channel sparsity (%)"),
                      ("multiplies_skipped", "multiplies skipped (%)")):  # fmt: skip
        cells = [pct((results[f"{v}/{names[0]}"].get("sparsity") or {}).get(key)) for v in variants]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: final test accuracy (%). Sparsity over the kernels of the multiply-heavy layers."]
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_sparsity(variants, names, results, path, title=None):
    """Test accuracy against achieved weight sparsity, one line per multiplier, points labelled."""
    from approxtrain import report

    plt = report._pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for index, name in enumerate(names):
        points = sorted(
            (results[f"{v}/{name}"]["sparsity"]["weight_sparsity"], results[f"{v}/{name}"]["final"]["test_accuracy"], v)
            for v in variants
        )
        ax.plot([100 * p[0] for p in points], [100 * p[1] for p in points], marker="o", label=name)
        if index == 0:  # one label per variant is enough
            for x, y, label in points:
                ax.annotate(label, (100 * x, 100 * y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set(xlabel="weight sparsity (%)", ylabel="test accuracy (%)", title="Test accuracy vs weight sparsity")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    report._save(plt, fig, path, dpi=120)


def write_variant_outputs(out, variants, names, configs, results):
    from approxtrain import report
    from approxtrain.train.files import HISTORY, read_history, write_json

    first = next(iter(configs.values()))
    dataset = next(iter(results.values()))["dataset"]
    title = (
        f"{first.model} on {first.dataset}: {first.epochs} epoch(s), {dataset['num_train']} training / "
        f"{dataset['num_test']} test examples, seed {first.seed}"
    )
    paths = {
        "plot": os.path.join(out, PLOT),
        "sparsity_plot": os.path.join(out, SPARSITY_PLOT),
        "table": os.path.join(out, TABLE),
        "summary": os.path.join(out, SUMMARY),
    }
    histories = {label: read_history(os.path.join(c.out, HISTORY)) for label, c in configs.items()}
    report.plot_convergence(histories, paths["plot"], title=title)
    plot_accuracy_vs_sparsity(variants, names, results, paths["sparsity_plot"], title=title)
    table = variant_table(variants, names, results, title=title)
    tmp = paths["table"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(table)
    os.replace(tmp, paths["table"])
    settings = {k: v for k, v in first.to_dict().items() if k not in ("multiplier", "out", "sparsity")}
    cells = {
        label: {
            "test_accuracy": r["final"]["test_accuracy"],
            **{
                k: (r.get("sparsity") or {}).get(k)
                for k in ("weight_sparsity", "channel_sparsity", "multiplies_skipped")
            },
            "sparsity_settings": configs[label].sparsity,
        }
        for label, r in results.items()
    }
    write_json(
        paths["summary"],
        {
            "title": title,
            "settings": settings,
            "variants": variants,
            "multipliers": names,
            "cells": cells,
            "runs": report.summarise(results),
            "run_dirs": {label: c.out for label, c in configs.items()},
            **paths,
        },
    )
    return paths
