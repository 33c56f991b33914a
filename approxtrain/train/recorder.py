"""Keras callback that evaluates, records and checkpoints after every epoch."""

import os
import time

import keras

from approxtrain.train import checkpoint
from approxtrain.train.files import HISTORY, interrupts_deferred, write_history
from approxtrain.train.optim import current_lr


class EpochRecorder(keras.callbacks.Callback):
    """After each epoch: evaluate test (and validation), append to history.csv, checkpoint.

    The metrics are added to the epoch's logs, so Keras' progress bar shows them. Every
    worker evaluates (the evaluation is a collective step); only the chief writes.
    `last_saved` is the epoch of the newest committed checkpoint."""

    def __init__(self, run_dir, data, rows, chief, strategy, last_saved=0):
        super().__init__()
        self.run_dir, self.data, self.rows, self.chief, self.strategy = run_dir, data, rows, chief, strategy
        self.last_saved = last_saved

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        from approxtrain.train.loop import evaluate

        logs = logs if logs is not None else {}
        train_time = time.time() - self.started
        started = time.time()
        row = {
            "epoch": epoch + 1,
            "loss": logs.get("loss"),
            "accuracy": logs.get("accuracy"),
            "lr": current_lr(self.model.optimizer),
            "train_time_s": round(train_time, 3),
        }
        for prefix, dataset in (("val", self.data.validation), ("test", self.data.test)):
            if dataset is not None:
                metrics = evaluate(self.model, dataset, self.strategy)
                for name in ("loss", "accuracy"):
                    row[f"{prefix}_{name}"] = logs[f"{prefix}_{name}"] = float(metrics[name])
        row["eval_time_s"] = round(time.time() - started, 3)
        self.rows.append(row)
        if self.chief:
            # History first: a crash before state.json commits the checkpoint leaves a row that
            # the resume drops; the other order could lose a committed epoch's row.
            with interrupts_deferred():
                write_history(os.path.join(self.run_dir, HISTORY), self.rows)
                checkpoint.save(self.run_dir, self.model, epoch + 1)
        self.last_saved = epoch + 1
