"""One training run: data, model, training with per-epoch test evaluation, checkpoints, results."""

import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from typing import NamedTuple

from approxtrain.train import checkpoint, environment
from approxtrain.train.config import TrainConfig, differences
from approxtrain.train.files import (
    FORMAT_VERSION,
    HISTORY,
    MODEL,
    RESULTS,
    SETTINGS,
    DamagedRunFiles,
    check_format,
    commit,
    read_history,
    read_json,
    write_history,
    write_json,
)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `epoch` is the last epoch whose checkpoint is on disk (0: none)."""

    def __init__(self, out, epoch):
        self.out, self.epoch = out, epoch
        super().__init__(f"{out}: interrupted after epoch {epoch}")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint stays."""


class WorkerLost(RuntimeError):
    """A worker of a multi-worker run stopped; the others stop too."""


class RunFolder(NamedTuple):
    """What a run folder holds, checked: the state of the run and where to resume from."""

    state: str  # "new" | "partial" | "finished"
    epoch: int  # the epoch to resume after (0: start afresh)
    checkpoint: object  # checkpoint.Checkpoint to resume from, or None
    checkpoints: list  # the intact checkpoints up to that one, oldest first
    skipped: list  # [(path, what is wrong)] of newer, damaged checkpoints
    rows: list  # history rows of epochs 1..epoch
    settings: dict | None


def inspect_run(config):
    """Reads and checks config.out for a run with these settings; returns a RunFolder.

    Raises DamagedRunFiles naming every file that cannot be read back, RunFormatError for a
    folder of a newer format, ValueError when the folder holds a run with other settings."""
    out = config.out
    settings_path = os.path.join(out, SETTINGS)
    state_path = os.path.join(checkpoint.directory(out), checkpoint.STATE)
    if not os.path.exists(settings_path):
        if os.path.exists(state_path):
            raise DamagedRunFiles(out, [(settings_path, "missing, though the folder holds checkpoints")])
        return RunFolder("new", 0, None, [], [], [], None)
    problems, settings, chosen, skipped, entries, rows = [], None, None, [], [], []
    try:
        settings = read_json(settings_path, out)
        check_format(out, settings_path, settings.get("format"))
        if not isinstance(settings.get("identity"), dict):
            raise DamagedRunFiles(out, [(settings_path, 'has no "identity" object')])
    except DamagedRunFiles as e:
        problems += e.problems
    try:
        chosen, skipped = checkpoint.choose(out)
        entries = [e for e in checkpoint.listed(out) if e.epoch <= chosen.epoch] if chosen else []
    except DamagedRunFiles as e:
        problems += e.problems
    epoch = chosen.epoch if chosen else 0
    history_path = os.path.join(out, HISTORY)
    try:
        rows = read_history(history_path, out)[:epoch]
        if len(rows) < epoch:
            what = f"holds {len(rows)} epoch row(s)" if os.path.exists(history_path) else "missing"
            problems.append((history_path, f"{what}, though the checkpoint is of epoch {epoch}"))
    except DamagedRunFiles as e:
        problems += e.problems
    results_path = os.path.join(out, RESULTS)
    if os.path.exists(results_path):
        try:
            read_json(results_path, out)
        except DamagedRunFiles as e:
            problems += e.problems
    if problems:
        raise DamagedRunFiles(out, problems)
    diff = differences(settings["identity"], _normalised(config.identity()))
    if diff:
        raise ValueError(
            f"{out} holds a run with other settings ({'; '.join(diff)}); choose another output directory or delete it"
        )
    if epoch > config.epochs:
        raise ValueError(f"{out} already holds {epoch} epochs, more than the {config.epochs} requested")
    if epoch == config.epochs and os.path.exists(results_path):
        state = "finished"
    else:
        state = "partial" if epoch else "new"
    return RunFolder(state, epoch, chosen, entries, skipped, rows, settings)


def run_state(config):
    """("new" | "partial" | "finished", last finished epoch) of config.out for these settings.

    Raises ValueError when the directory holds a run with other settings, or damaged files."""
    folder = inspect_run(config)
    return folder.state, folder.epoch


def train(config: TrainConfig, resume=False):
    """Trains as configured, writing into config.out; returns the results dict.

    resume: continue from the last checkpoint in config.out (same settings; --epochs may
    grow). Without it, an output directory that already holds a run is an error.
    Under MultiWorkerMirroredStrategy every worker calls this; only the chief reads and
    writes config.out, and the others receive the chief's checkpoint through the cluster.
    Ctrl-C raises Interrupted, a NaN/infinite loss TrainingDiverged, a stopped worker WorkerLost.
    """
    _check_multipliers(config)
    from approxtrain.train.strategy import is_chief, is_multiworker, make_strategy

    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)
    chief, multiworker = is_chief(strategy), is_multiworker(strategy)
    folder = inspect_run(config) if chief else None
    if chief and folder.state != "new" and not resume:
        raise ValueError(
            f"{config.out} already holds {folder.epoch} trained epoch(s) of this run; "
            f"pass --resume to continue it, or choose another --out"
        )
    initial_epoch, finished = (folder.epoch, folder.state == "finished") if chief else (0, False)
    if multiworker:  # every worker starts where the chief's run folder says
        import tensorflow as tf

        from approxtrain.train.loop import broadcast_int
        from approxtrain.train.strategy import lost_worker

        try:
            initial_epoch, finished = broadcast_int(strategy, initial_epoch), bool(broadcast_int(strategy, finished))
        except tf.errors.OpError as e:  # typically the chief refused the run folder and stopped
            why = lost_worker(e)
            if why is None:
                raise
            raise WorkerLost(f"{config.out}: training could not start: {why}; see the chief's output") from None
    if finished:
        print(f"{config.out}: all {config.epochs} epochs already done")
        if chief:
            return read_json(os.path.join(config.out, RESULTS))
        return {"status": "finished", "epochs_completed": initial_epoch, "final": {}, "chief": False}
    try:
        return _train(config, strategy, chief, multiworker, folder, initial_epoch)
    except KeyboardInterrupt as e:
        raise Interrupted(config.out, getattr(e, "epoch", initial_epoch)) from None


def _train(config, strategy, chief, multiworker, folder, initial_epoch):
    import keras
    import tensorflow as tf

    from approxtrain import data as datasets
    from approxtrain.sparsity.settings import make_callback as make_sparsity_callback
    from approxtrain.train import loop
    from approxtrain.train.optim import make_optimizer
    from approxtrain.train.recorder import EpochRecorder
    from approxtrain.train.strategy import lost_worker

    started = time.time()
    if chief and folder.skipped:
        for path, problem in folder.skipped:
            checkpoint.warn(f"{path}: {problem}")
        checkpoint.warn(f"resuming from the epoch {initial_epoch} checkpoint instead")
    # The same seed whatever the start epoch: the data order of epoch e does not depend on
    # where the run was resumed (loop.fit skips the earlier epochs' shuffles).
    keras.utils.set_random_seed(config.seed)
    data = datasets.load(
        config.dataset,
        data_dir=config.data_dir,
        batch_size=config.batch_size,
        seed=config.seed,
        validation=config.validation,
        subset=config.subset,
        test_subset=config.test_subset,
        augment=config.augment,
        image_size=config.image_size,
    )
    steps_per_epoch = math.ceil(data.info.num_train / config.batch_size)
    with strategy.scope():
        model = config.build_model(data.info.input_shape, data.info.num_classes)
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        if initial_epoch:
            model.optimizer.build(model.trainable_variables)
    sparse = make_sparsity_callback(config.sparsity, steps_per_epoch, seed=config.seed)
    if sparse is not None:
        sparse.attach(model)  # its masks exist before a checkpoint restores them
    if initial_epoch:
        # Outside the scope: Keras' weight loading makes a throwaway optimizer, whose variables
        # would otherwise be created (a collective op) on the chief alone.
        if chief:
            checkpoint.restore(config.out, model, folder.checkpoint)
            if sparse is not None:
                checkpoint.restore_sparsity(config.out, sparse, folder.checkpoint)
        if multiworker:
            loop.broadcast_from_first_replica(strategy, model.variables + model.optimizer.variables)
            if sparse is not None:
                loop.broadcast_from_first_replica(strategy, sparse.masks)
                sparse.step, sparse.initialised = loop.broadcast_int(strategy, sparse.step), True
    rows = list(folder.rows) if chief else []
    if chief:
        _prepare_folder(config, folder)
    if initial_epoch:
        print(f"{config.out}: resuming after epoch {initial_epoch} of {config.epochs}")
    recorder = EpochRecorder(config.out, data, rows, chief, strategy, last_saved=initial_epoch)
    try:
        loop.fit(
            model,
            data.train,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=([sparse] if sparse is not None else []) + [recorder],
            verbose=_verbosity(config.verbose),
            strategy=strategy,
            steps_per_epoch=steps_per_epoch,
        )
    except KeyboardInterrupt:
        raise Interrupted(config.out, recorder.last_saved) from None
    except loop.NonFiniteLoss as e:
        kept = (
            f"the last good checkpoint (epoch {recorder.last_saved}) is kept: --resume continues from it"
            if recorder.last_saved
            else "no epoch had finished, so there is no checkpoint to resume"
        )
        raise TrainingDiverged(f"{config.out}: training stopped: {e}; {kept}") from None
    except tf.errors.OpError as e:
        why = lost_worker(e) if multiworker else None
        if why is None:
            raise
        raise WorkerLost(
            f"{config.out}: training stopped: {why}. The run folder keeps the last finished epoch "
            f"({recorder.last_saved}); start every worker again with --resume to continue"
        ) from None
    if not rows:  # a worker that is not the chief and trained no epoch in this invocation
        return {"status": "finished", "epochs_completed": config.epochs, "final": {}, "chief": False}
    results = _results(config, model, data.info, rows, strategy, started)
    if not chief:  # its rows cover only the epochs it trained in this invocation
        return {**results, "chief": False}
    save_model(config.out, model)
    write_json(os.path.join(config.out, RESULTS), results)
    return results


def save_model(out, model):
    """The trained model as OUT/model.keras (written beside, then renamed into place); it loads
    with keras.saving.load_model after `import approxtrain` (which registers the AM layers)."""
    tmp = os.path.join(out, MODEL + ".tmp.keras")  # Keras wants the .keras ending
    try:
        model.save(tmp)
        commit(tmp, os.path.join(out, MODEL))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _prepare_folder(config, folder):
    """Makes the run folder hold one consistent version before training continues: settings in
    the current format, history and checkpoints of the resumed epochs only (rows of an epoch
    whose checkpoint never committed, and unlisted or damaged checkpoint files, go)."""
    os.makedirs(config.out, exist_ok=True)
    settings = {"format": FORMAT_VERSION, "identity": _normalised(config.identity()), "config": config.to_dict()}
    if folder.state != "new":
        settings = {**folder.settings, "format": FORMAT_VERSION}
    if folder.settings != settings:
        write_json(os.path.join(config.out, SETTINGS), settings)
    history = os.path.join(config.out, HISTORY)
    if folder.epoch:
        if read_history(history, config.out) != folder.rows:
            write_history(history, folder.rows)
        checkpoint.write_state(config.out, folder.checkpoints)
    else:
        if os.path.exists(history):
            os.remove(history)
        checkpoint.remove_unlisted(config.out, [])


def _results(config, model, info, rows, strategy, started):
    last = rows[-1]
    times = [r["train_time_s"] for r in rows]
    accuracies = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
    return {
        "status": "finished",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": config.to_dict(),
        "epochs_completed": last["epoch"],
        "final": {
            k: last.get(k) for k in ("test_accuracy", "test_loss", "loss", "accuracy", "val_accuracy", "val_loss")
        },
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
        "sparsity": _sparsity_results(config, model),
        "approx_dropout": _dropout_results(config, model),
        "model": {
            "name": config.model,
            "keras_name": model.name,
            "params": model.count_params(),
            "options": config.model_options,
        },
        "dataset": info.to_dict(),
        "multipliers": environment.multiplier_descriptions(
            [config.multiplier, config.grad_input_multiplier, config.grad_weight_multiplier]
        ),
        "versions": environment.versions(),
        "machine": environment.machine(strategy),
        "build_info": environment.build_info(),
        "command": sys.argv,
    }


def _sparsity_results(config, model):
    """The settings and what the final weights achieve (dense runs too: their zeros, if any)."""
    from approxtrain.sparsity import sparsity_report

    report = sparsity_report(model)
    return {"settings": config.sparsity, **{k: report[k] for k in ("weight_sparsity", "channel_sparsity",
            "multiplies_skipped")}, "layers": report["layers"]}  # fmt: skip


def _dropout_results(config, model):
    """The approximate random dropout asked for and the share of Dense multiplies it skips."""
    from approxtrain.sparsity import dropout_report

    pattern, rate = config.model_options.get("approx_dropout"), config.model_options.get("dropout_rate")
    results = {"pattern": pattern, "rate": rate}
    if pattern is not None:
        results["multiplies_skipped"] = dropout_report(model)["multiplies_skipped"]
    return results


def _check_multipliers(config):
    """Unknown multiplier names fail before the (slow) data loading."""
    from approxtrain import multipliers

    for what in ("multiplier", "grad_input_multiplier", "grad_weight_multiplier"):
        name = getattr(config, what)
        if name is None:
            continue
        if name != multipliers.NATIVE and name not in multipliers.names():
            raise ValueError(f"unknown {what} {name!r}; known: {multipliers.NATIVE}, {', '.join(multipliers.names())}")
        multipliers.resolve(name)  # loads the table now, so a damaged one also fails before the data


def _verbosity(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _normalised(obj):
    return json.loads(json.dumps(obj))
