"""The files of a run folder, its format version, and how they are written and read back.

Layout (format 2):

    settings.json          {"format", "identity", "config"}: what the run computes
    history.csv            one row per finished epoch (HISTORY_COLUMNS)
    results.json           written when the requested epochs are done
    model.keras            the trained model, written just before results.json
    checkpoint/epoch-NNNN.weights.h5   model and optimizer variables after epoch NNNN
    checkpoint/epoch-NNNN.sparsity.npz  sparse runs: masks, schedule position, RNG (approxtrain.sparsity)
    checkpoint/state.json  {"format", "epoch", "checkpoints": [{"epoch", "weights", "sha256"
                           [, "sparsity", "sparsity_sha256"]}, ...]}

Every file is written to a temporary name, flushed to disk (fsync) and renamed over
the old one, and the folder is synced after each rename, so a crash at any point leaves
either the old or the new version of a file, never a mixture. state.json is the commit
point of a checkpoint: it is replaced only after the weights file it names is complete.

Format 1 (approxtrain before run folder versions) had one checkpoint/model.weights.h5
and state.json {"epoch": N}, and no "format" in settings.json; it is still read.
"""

import contextlib
import csv
import json
import math
import os
import signal
import threading

FORMAT_VERSION = 2  # the one place that says which run folder format this code writes
OLDEST_FORMAT = 1  # the oldest it still reads

SETTINGS = "settings.json"
HISTORY = "history.csv"
RESULTS = "results.json"
MODEL = "model.keras"
CHECKPOINT_DIR = "checkpoint"
HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "lr",
    "train_time_s",
    "eval_time_s",
)
REQUIRED_HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "train_time_s")


class DamagedRunFiles(ValueError):
    """Files of a run folder that cannot be read back: every one named, with what to do."""

    def __init__(self, run_dir, problems):
        self.run_dir, self.problems = run_dir, list(problems)  # [(path, what is wrong)]
        lines = [f"run folder {run_dir} has damaged files:"]
        lines += [f"  {path}: {what}" for path, what in self.problems]
        lines.append(
            f"restore them from a backup, or delete {run_dir} (or train into another --out) to start the run again"
        )
        super().__init__("\n".join(lines))


class RunFormatError(ValueError):
    """A run folder written in a format this version cannot read."""


def check_format(run_dir, path, value):
    """The format version recorded in `path` (a missing one is format 1) as an int."""
    if value is None:
        return OLDEST_FORMAT
    if isinstance(value, bool) or not isinstance(value, int) or value < OLDEST_FORMAT:
        raise DamagedRunFiles(run_dir, [(path, f"format version {value!r} is not a version number")])
    if value > FORMAT_VERSION:
        raise RunFormatError(
            f"{path} is in run folder format {value}, written by a newer approxtrain; this one reads formats "
            f"{OLDEST_FORMAT} to {FORMAT_VERSION}: upgrade approxtrain to continue this run, or train into "
            f"another --out"
        )
    return value


# Writing ------------------------------------------------------------------------------------------


def fsync_path(path):
    """Flushes a file's (or a folder's entries') data to disk."""
    if os.name == "nt" and os.path.isdir(path):
        return  # Windows cannot open folders; NTFS journals the rename itself
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp, path):
    """Puts the finished file `tmp` in place of `path`: synced, renamed, folder synced."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_finite(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    commit(tmp, path)


def write_history(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    commit(tmp, path)


@contextlib.contextmanager
def interrupts_deferred():
    """Holds back Ctrl-C (SIGINT) while the block writes, and delivers it when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _finite(obj):
    """NaN/inf become null (strict JSON); a diverged run stays readable."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# Reading ------------------------------------------------------------------------------------------


def read_json(path, run_dir=None):
    """The JSON object in `path`; DamagedRunFiles naming the file when it is not one."""
    run_dir = run_dir if run_dir is not None else os.path.dirname(path) or "."
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DamagedRunFiles(run_dir, [(path, "missing")]) from None
    if not raw.strip():
        raise DamagedRunFiles(run_dir, [(path, "empty")])
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedRunFiles(run_dir, [(path, "not text (binary garbage)")]) from None
    except json.JSONDecodeError as e:
        raise DamagedRunFiles(
            run_dir, [(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")]
        ) from None
    if not isinstance(obj, dict):
        raise DamagedRunFiles(run_dir, [(path, f"holds a JSON {type(obj).__name__}, not an object")])
    return obj


def read_history(path, run_dir=None):
    """Rows of history.csv as dicts of floats (epoch as int, empty cells None); [] when there is none.

    Rows must be epochs 1, 2, 3, ... with numbers in every cell of REQUIRED_HISTORY_COLUMNS;
    anything else raises DamagedRunFiles naming the file, the row and the column."""
    if not os.path.exists(path):
        return []
    run_dir = run_dir if run_dir is not None else os.path.dirname(path) or "."

    def damaged(what):
        return DamagedRunFiles(run_dir, [(path, what)])

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_HISTORY_COLUMNS if c not in header]
            if missing:
                raise damaged(f"the header lacks column(s) {', '.join(missing)}")
            rows = []
            for number, row in enumerate(reader, start=1):
                line = reader.line_num
                if None in row or None in row.values():
                    raise damaged(f"line {line} does not have the header's {len(header)} cells")
                parsed = {}
                for column, cell in row.items():
                    if cell == "":
                        if column in REQUIRED_HISTORY_COLUMNS:
                            raise damaged(f"line {line}: column {column!r} is empty")
                        parsed[column] = None
                        continue
                    try:
                        parsed[column] = int(cell) if column == "epoch" else float(cell)
                    except ValueError:
                        raise damaged(f"line {line}: column {column!r} is not a number: {cell!r}") from None
                if parsed["epoch"] != number:
                    raise damaged(
                        f"line {line}: epoch {parsed['epoch']}, expected {number} (rows must be epochs 1, 2, 3, ...)"
                    )
                rows.append(parsed)
    except UnicodeDecodeError:
        raise damaged("not text (binary garbage)") from None
    except csv.Error as e:
        raise damaged(f"not valid CSV ({e})") from None
    return rows
