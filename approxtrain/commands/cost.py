"""`approxtrain cost`: what a training step multiplies, what could be skipped, what it would cost.

Runs --batches real training steps and counts, per layer and phase (forward, input gradient,
weight gradient), the dense products, those with a zero operand, and the outer-product
dataflow's redundant products; with energy per multiplier (docs/cost.md).
"""

import sys


def add_parser(sub):
    p = sub.add_parser(
        "cost",
        help="count a training step's products, zero operands, RCPs and energy",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", help="zoo model (approxtrain.models.names()); with --run: the run's")
    p.add_argument("--dataset", help="dataset name; with --run: the run's")
    p.add_argument(
        "--multiplier",
        default=None,
        help="comma-separated multipliers to price, e.g. fp32,bf16,mbm7 (default: the run's, or fp32)",
    )
    p.add_argument("--run", metavar="DIR", help="an `approxtrain train` run folder: its last checkpoint's weights")
    p.add_argument("--data-dir", help="dataset folder (see approxtrain train)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's, or 128")
    p.add_argument("--batches", type=int, default=1, help="training steps counted and averaged (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="F", help="write the report as JSON")
    p.add_argument("--md", metavar="F", help="write the Markdown table")
    p.add_argument("--png", metavar="F", help="write the bar chart")
    p.set_defaults(func=run)


def _zoo_model(args):
    import keras

    from approxtrain import data as datasets
    from approxtrain import models

    if not args.model or not args.dataset:
        raise ValueError("--model and --dataset are needed without --run")
    keras.utils.set_random_seed(args.seed)
    data = datasets.load(
        args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size or 128,
        seed=args.seed,
        subset=(args.batch_size or 128) * args.batches,
    )
    model = models.build(args.model, data.info.input_shape, data.info.num_classes)
    return model, data, None


def run(args):
    from approxtrain import cost
    from approxtrain.cost import output, runs

    if args.run:
        model, data, config, epoch = runs.load(args.run, args.batch_size)
        for what, mine, theirs in (("--model", args.model, config.model), ("--dataset", args.dataset, config.dataset)):
            if mine is not None and mine != theirs:
                raise ValueError(f"{what} {mine} differs from the run's {theirs} ({args.run})")
        multipliers = args.multiplier or config.multiplier
        optimizer, name = model.optimizer, f"{config.model} ({args.run}, epoch {epoch})"
    else:
        model, data, optimizer = _zoo_model(args)
        multipliers, name = args.multiplier or "fp32", args.model
    report = cost.profile(model, data.train, multipliers, batches=args.batches, optimizer=optimizer, name=name)
    if args.json:
        output.write_json(report, args.json)
    if args.md:
        output.write_markdown(report, args.md)
    if args.png:
        output.write_png(report, args.png)
    sys.stdout.write(output.markdown(report))
    if not (args.json or args.md or args.png):
        return 0
    return 0
