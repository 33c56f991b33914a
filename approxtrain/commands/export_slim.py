"""`approxtrain export-slim RUN_DIR`: the run's model.keras without its removed channels."""

import os


def add_parser(sub):
    p = sub.add_parser(
        "export-slim",
        help="write a physically smaller copy of a channel-sparse run's model",
        description="Loads RUN_DIR/model.keras, drops the output channels whose kernel slice and bias are all "
        "zero (what --dst chase --channel-sparsity leaves) and the next layer's matching input slices, and "
        "writes the smaller model, whose outputs equal the original's (docs/sparsity.md).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `approxtrain train` run folder")
    p.add_argument("--out", help="output .keras file (default RUN_DIR/model_slim.keras)")
    p.set_defaults(func=run)


def run(args):
    import keras
    import numpy as np

    import approxtrain.layers  # noqa: F401 - registers the AM layers for loading
    from approxtrain.sparsity import export_slim
    from approxtrain.train.files import MODEL, commit

    source = os.path.join(args.run_dir, MODEL)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist: export-slim needs a finished `approxtrain train` run")
    out = args.out or os.path.join(args.run_dir, "model_slim.keras")
    if not out.endswith(".keras"):
        raise ValueError(f"--out must end in .keras, got {out!r}")
    model = keras.saving.load_model(source, compile=False)
    slim = export_slim(model)
    shape = (8, *model.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, size=shape).astype(np.float32)
    difference = float(np.max(np.abs(np.asarray(model(x)) - np.asarray(slim(x)))))
    tmp = out[: -len(".keras")] + ".tmp.keras"
    try:
        slim.save(tmp)
        commit(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(
        f"{out}: {slim.count_params():,} parameters (was {model.count_params():,}); "
        f"largest output difference on 8 random inputs: {difference:.3g}"
    )
    return 0
