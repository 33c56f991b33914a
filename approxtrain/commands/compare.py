"""`approxtrain compare`: the same model, data and seed once per multiplier; plot and table.

Each run lives in OUT/<multiplier>/ and is made by the same code as `approxtrain train`;
finished runs with the same settings are skipped and interrupted ones resumed, so
re-running the command continues where it stopped.
"""

import os

from approxtrain.commands.train import add_run_arguments, config_from_args

PLOT, TABLE, SUMMARY = "convergence.png", "comparison.md", "summary.json"


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
