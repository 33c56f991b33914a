"""`approxtrain train`: train one zoo model on one dataset with one multiplier."""

import json

from approxtrain.train.config import LR_SCHEDULES, OPTIMIZERS, STRATEGIES


def add_parser(sub):
    p = sub.add_parser(
        "train",
        help="train a zoo model with a (simulated approximate) multiplier",
        description="Trains --model on --dataset; writes history.csv, results.json and "
        "per-epoch checkpoints into --out.",
    )
    add_run_arguments(p)
    p.add_argument("--multiplier", default="fp32", help="multiplier of forward products (default fp32 = native)")
    p.add_argument("--out", help="output directory (default runs/<model>_<dataset>_<multiplier>[_prune<S>|_chase<S>])")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.set_defaults(func=run)


def add_run_arguments(p):
    """Arguments shared by train and compare."""
    p.add_argument("--model", required=True, help="zoo model: lenet300100, lenet5, resnet20, ... (see models.names())")
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model option, e.g. width=8, stem=cifar, alpha=0.5 (repeatable; values parsed as JSON)",
    )
    p.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100, imagenet, image_folder")
    p.add_argument("--data-dir", help="local copy of the dataset (IDX files, keras npz/pickles, class folders)")
    p.add_argument("--grad-input-multiplier", help="multiplier of dX = dY.W^T products (default: --multiplier)")
    p.add_argument("--grad-weight-multiplier", help="multiplier of dW = X^T.dY products (default: --multiplier)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.05 for sgd, 1e-3 otherwise)")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd/rmsprop momentum")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, help="train on the first N training examples only")
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test examples only (smoke runs)")
    p.add_argument("--validation", type=float, default=0.0, help="fraction of training examples held out")
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="disable the dataset's standard augmentation",
    )
    p.add_argument("--image-size", type=int, help="image side for class-folder datasets (default 224)")
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy: mirrored (this machine's GPUs), multiworker (one process per "
        "worker, cluster from TF_CONFIG; see the README, 'On several machines')",
    )
    add_sparsity_arguments(p)
    p.add_argument(
        "--verbose",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help="Keras progress output: 1 bar, 2 one line per epoch (auto: bar on a terminal)",
    )


def add_sparsity_arguments(p):
    """Sparse training (approxtrain.sparsity, docs/sparsity.md) and approximate random dropout."""
    g = p.add_argument_group("sparse training (docs/sparsity.md)")
    g.add_argument("--prune", type=float, metavar="S", help="magnitude pruning to weight sparsity S, e.g. 0.9")
    g.add_argument(
        "--prune-schedule",
        choices=("gradual", "oneshot"),
        default="gradual",
        help="gradual: Zhu & Gupta's cubic ramp from --prune-start to --prune-end; oneshot: all at --prune-start",
    )
    g.add_argument(
        "--prune-start",
        type=float,
        metavar="E",
        help="epoch (may be fractional) pruning starts (default 0; oneshot: half of --epochs)",
    )
    g.add_argument(
        "--prune-end",
        type=float,
        metavar="E",
        help="epoch the target sparsity is reached (default: half of --epochs); later epochs fine-tune",
    )
    g.add_argument(
        "--prune-every",
        type=int,
        metavar="N",
        help="optimizer steps between gradual pruning updates (default: 1/10 epoch)",
    )
    g.add_argument(
        "--prune-scope",
        choices=("layer", "global"),
        default="layer",
        help="one magnitude threshold per layer, or one over all layers",
    )
    g.add_argument("--dst", choices=("chase",), help="dynamic sparse training method: chase (Yin et al. 2023)")
    g.add_argument("--sparsity", type=float, metavar="S", help="--dst weight sparsity, e.g. 0.9")
    g.add_argument(
        "--channel-sparsity",
        type=float,
        default=None,
        metavar="C",
        help="--dst chase: share of output channels removed by --dst-end (default 0)",
    )
    g.add_argument(
        "--dst-update-every",
        type=int,
        metavar="N",
        help="optimizer steps between prune-and-grow updates (default: 1/4 epoch)",
    )
    g.add_argument(
        "--dst-end",
        type=float,
        metavar="E",
        help="epoch the updates stop and the channel sparsity is reached (default: 3/4 of --epochs)",
    )
    g.add_argument(
        "--drop-fraction",
        type=float,
        default=0.3,
        help="share of active weights moved at the first update, cosine-decayed (default 0.3)",
    )
    g.add_argument(
        "--sparse-init",
        choices=("uniform", "erk"),
        default="erk",
        help="per-layer density of the sparse start: Erdos-Renyi-Kernel (default, as Chase and RigL) or uniform",
    )
    g.add_argument(
        "--dst-exploration",
        choices=("layer", "global"),
        default="layer",
        help="Chase's prune-and-grow: per layer at its density (default, RigL) or one global ranking "
        "(Chase's official code)",
    )
    g.add_argument(
        "--approx-dropout",
        choices=("row", "tile"),
        help="approximate random dropout on the hidden Dense layers (lenet300100, lenet5)",
    )
    g.add_argument(
        "--dropout-rate",
        type=float,
        metavar="R",
        help="dropout rate (default 0.5 with --approx-dropout; alone: plain Dropout)",
    )


def sparsity_from_args(args, epochs=None):
    """TrainConfig.sparsity from the --prune / --dst flags (None: a dense run)."""
    from approxtrain.sparsity import settings

    epochs = args.epochs if epochs is None else epochs
    if args.prune is not None and args.dst is not None:
        raise ValueError("choose one of --prune and --dst")
    if args.dst is None:
        for flag, value in (
            ("--sparsity", args.sparsity),
            ("--channel-sparsity", args.channel_sparsity),
            ("--dst-update-every", args.dst_update_every),
            ("--dst-end", args.dst_end),
        ):
            if value is not None:
                raise ValueError(f"{flag} {value} needs --dst chase")
    if args.prune is None:
        for flag, value in (
            ("--prune-start", args.prune_start),
            ("--prune-end", args.prune_end),
            ("--prune-every", args.prune_every),
        ):
            if value is not None:
                raise ValueError(f"{flag} {value} needs --prune S")
    if args.prune is not None:
        settings.check_fraction("--prune", args.prune, lower_inclusive=False)
        return settings.prune_settings(
            args.prune,
            args.prune_schedule,
            args.prune_start,
            args.prune_end,
            args.prune_every,
            args.prune_scope,
            epochs,
        )
    if args.dst is not None:
        if args.sparsity is None:
            raise ValueError("--dst chase needs --sparsity S (e.g. 0.9)")
        settings.check_fraction("--sparsity", args.sparsity, lower_inclusive=False)
        return settings.chase_settings(
            args.sparsity,
            args.channel_sparsity or 0.0,
            args.dst_end,
            args.dst_update_every,
            args.drop_fraction,
            args.sparse_init,
            epochs,
            exploration=args.dst_exploration,
        )
    return None


def model_options_from_args(args):
    """--model-option KEY=VALUE items plus --approx-dropout / --dropout-rate."""
    from approxtrain.sparsity.settings import check_fraction

    options = parse_model_options(args.model_option)
    for key, value in (("approx_dropout", args.approx_dropout), ("dropout_rate", args.dropout_rate)):
        if value is None:
            continue
        if key == "dropout_rate":
            check_fraction("--dropout-rate", value)
        if key in options and options[key] != value:
            raise ValueError(f"--model-option {key}={options[key]!r} contradicts --{key.replace('_', '-')} {value}")
        options[key] = value
    return options


def parse_model_options(items):
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option wants KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # bare strings such as stem=cifar
    return options


def config_from_args(args, multiplier, out, sparsity="flags"):
    """The TrainConfig of the parsed flags; sparsity: "flags" (from --prune/--dst) or the settings."""
    from approxtrain.train.config import TrainConfig

    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        out=out,
        data_dir=args.data_dir,
        multiplier=multiplier,
        grad_input_multiplier=args.grad_input_multiplier,
        grad_weight_multiplier=args.grad_weight_multiplier,
        model_options=model_options_from_args(args),
        sparsity=sparsity_from_args(args) if sparsity == "flags" else sparsity,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        subset=args.subset,
        test_subset=args.test_subset,
        validation=args.validation,
        augment=args.augment,
        image_size=args.image_size,
        strategy=args.strategy,
        verbose=args.verbose,
    )


def run(args):
    from approxtrain.train import train

    tag = f"_prune{args.prune}" if args.prune is not None else f"_{args.dst}{args.sparsity}" if args.dst else ""
    out = args.out or f"runs/{args.model}_{args.dataset}_{args.multiplier}{tag}"
    results = train(config_from_args(args, args.multiplier, out), resume=args.resume)
    from approxtrain._coverage import zoo_summary
    from approxtrain.report import fmt

    if results.get("chief") is False:  # a multi-worker run's other workers: the chief writes --out
        print("this worker's part of the run is done; the chief worker writes the run folder")
        return 0
    final = results["final"]
    print(
        f"{out}: test accuracy {fmt(final['test_accuracy'])}, test loss {fmt(final['test_loss'])} after "
        f"{results['epochs_completed']} epoch(s), {fmt(results['timing']['mean_epoch_time_s'], '.1f')} s/epoch; "
        f"see {out}/history.csv and {out}/results.json"
    )
    print(zoo_summary(results, args.model, model_options_from_args(args)))
    sparse = results.get("sparsity") or {}
    if sparse.get("settings"):
        print(
            f"weight sparsity {fmt(sparse['weight_sparsity'], '.3f')}, channel sparsity "
            f"{fmt(sparse['channel_sparsity'], '.3f')}, multiplies skipped {fmt(sparse['multiplies_skipped'], '.3f')}; "
            f"model: {out}/model.keras"
        )
    skipped = (results.get("approx_dropout") or {}).get("multiplies_skipped")
    if skipped is not None:
        print(f"approximate random dropout skips {fmt(100 * skipped, '.1f')}% of the Dense layers' training multiplies")
    return 0
