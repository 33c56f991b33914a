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
    p.add_argument("--out", help="output directory (default runs/<model>_<dataset>_<multiplier>)")
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
    p.add_argument(
        "--verbose",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help="Keras progress output: 1 bar, 2 one line per epoch (auto: bar on a terminal)",
    )


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


def config_from_args(args, multiplier, out):
    from approxtrain.train.config import TrainConfig

    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        out=out,
        data_dir=args.data_dir,
        multiplier=multiplier,
        grad_input_multiplier=args.grad_input_multiplier,
        grad_weight_multiplier=args.grad_weight_multiplier,
        model_options=parse_model_options(args.model_option),
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

    out = args.out or f"runs/{args.model}_{args.dataset}_{args.multiplier}"
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
    print(zoo_summary(results, args.model, parse_model_options(args.model_option)))
    return 0
