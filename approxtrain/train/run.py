"""One training run: data, model, fit with per-epoch test evaluation, checkpoints, results."""
import json
import math
import os
import sys
import time
from datetime import datetime, timezone

from approxtrain.train import checkpoint, environment
from approxtrain.train.config import TrainConfig, differences
from approxtrain.train.files import (HISTORY, RESULTS, SETTINGS, read_history, read_json,
                                     write_history, write_json)


def run_state(config):
    """("new" | "partial" | "finished", last finished epoch) of config.out for these settings.

    Raises ValueError when the directory holds a run with other settings."""
    settings_path = os.path.join(config.out, SETTINGS)
    if not os.path.exists(settings_path):
        return "new", 0
    saved = read_json(settings_path)
    diff = differences(saved.get("identity", {}), _normalised(config.identity()))
    if diff:
        raise ValueError(f"{config.out} holds a run with other settings ({'; '.join(diff)}); "
                         f"choose another output directory or delete it")
    epoch = checkpoint.last_epoch(config.out)
    if epoch > config.epochs:
        raise ValueError(f"{config.out} already holds {epoch} epochs, more than the {config.epochs} requested")
    results = os.path.join(config.out, RESULTS)
    if epoch == config.epochs and os.path.exists(results):
        return "finished", epoch
    return ("partial" if epoch else "new"), epoch


def train(config: TrainConfig, resume=False):
    """Trains as configured, writing into config.out; returns the results dict.

    resume: continue from the last checkpoint in config.out (same settings; --epochs may
    grow). Without it, an output directory that already holds a run is an error.
    """
    import keras

    from approxtrain import data as datasets
    from approxtrain import models
    from approxtrain.train.optim import make_optimizer
    from approxtrain.train.recorder import EpochRecorder
    from approxtrain.train.strategy import is_chief, make_strategy

    _check_multipliers(config)
    state, initial_epoch = run_state(config)
    if state != "new" and not resume:
        raise ValueError(f"{config.out} already holds {initial_epoch} trained epoch(s) of this run; "
                         f"pass --resume to continue it, or choose another --out")
    if state == "finished":
        print(f"{config.out}: all {config.epochs} epochs already done")
        return read_json(os.path.join(config.out, RESULTS))
    started = time.time()
    # A resumed run reseeds per start epoch: data order differs from epoch 1's but stays reproducible.
    keras.utils.set_random_seed(config.seed + initial_epoch)
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    data = datasets.load(config.dataset, data_dir=config.data_dir, batch_size=config.batch_size,
                         seed=config.seed, validation=config.validation, subset=config.subset,
                         test_subset=config.test_subset, augment=config.augment, image_size=config.image_size)
    steps_per_epoch = math.ceil(data.info.num_train / config.batch_size)
    with strategy.scope():
        model = models.build(config.model, data.info.input_shape, data.info.num_classes,
                             multiplier=config.multiplier,
                             grad_input_multiplier=config.grad_input_multiplier,
                             grad_weight_multiplier=config.grad_weight_multiplier, **config.model_options)
        model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        if initial_epoch:
            checkpoint.restore(config.out, model)
    history_path = os.path.join(config.out, HISTORY)
    rows = [r for r in read_history(history_path) if r["epoch"] <= initial_epoch]
    if chief:
        os.makedirs(config.out, exist_ok=True)
        if state == "new":
            write_json(os.path.join(config.out, SETTINGS),
                       {"identity": _normalised(config.identity()), "config": config.to_dict()})
    if initial_epoch:
        print(f"{config.out}: resuming after epoch {initial_epoch} of {config.epochs}")
    recorder = EpochRecorder(config.out, data, rows, chief)
    model.fit(data.train, epochs=config.epochs, initial_epoch=initial_epoch, callbacks=[recorder], shuffle=False,
              verbose=_verbosity(config.verbose))
    results = _results(config, model, data.info, rows, strategy, started)
    if chief:
        write_json(os.path.join(config.out, RESULTS), results)
    return results


def _results(config, model, info, rows, strategy, started):
    last = rows[-1]
    times = [r["train_time_s"] for r in rows]
    accuracies = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
    return {
        "status": "finished",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": config.to_dict(),
        "epochs_completed": last["epoch"],
        "final": {k: last.get(k) for k in ("test_accuracy", "test_loss", "loss", "accuracy",
                                           "val_accuracy", "val_loss")},
        "best_test_accuracy": max(accuracies) if accuracies else None,
        "timing": {
            "epoch_time_s": times,
            "mean_epoch_time_s": sum(times) / len(times),
            # The first epoch also traces the graph; later ones show the steady speed.
            "steady_epoch_time_s": sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0],
            "total_train_time_s": sum(times),
            "total_eval_time_s": sum(r.get("eval_time_s") or 0 for r in rows),
            "this_invocation_wall_s": time.time() - started,
        },
        "model": {"name": config.model, "keras_name": model.name, "params": model.count_params(),
                  "options": config.model_options},
        "dataset": info.to_dict(),
        "multipliers": environment.multiplier_descriptions(
            [config.multiplier, config.grad_input_multiplier, config.grad_weight_multiplier]),
        "versions": environment.versions(),
        "machine": environment.machine(strategy),
        "build_info": environment.build_info(),
        "command": sys.argv,
    }


def _check_multipliers(config):
    """Unknown multiplier names fail before the (slow) data loading."""
    from approxtrain import multipliers

    known = getattr(multipliers, "names", None)
    if known is None:
        return
    available = set(known()) | {"fp32"}
    for what in ("multiplier", "grad_input_multiplier", "grad_weight_multiplier"):
        name = getattr(config, what)
        if name is not None and name not in available:
            raise ValueError(f"unknown {what} {name!r}; known: fp32, {', '.join(sorted(known()))}")


def _verbosity(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _normalised(obj):
    return json.loads(json.dumps(obj))
