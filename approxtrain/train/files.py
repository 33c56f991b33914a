"""The files of a run directory: settings, history, results, checkpoint. Atomic writes."""
import csv
import json
import math
import os

SETTINGS = "settings.json"
HISTORY = "history.csv"
RESULTS = "results.json"
CHECKPOINT_DIR = "checkpoint"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
                   "lr", "train_time_s", "eval_time_s")


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_finite(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def _finite(obj):
    """NaN/inf become null (strict JSON); a diverged run stays readable."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_history(path):
    """Rows of history.csv as dicts of floats (epoch as int); [] when there is none."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k == "epoch" else float(v) if v not in ("", None) else None)
                         for k, v in row.items()})
    return rows


def write_history(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    os.replace(tmp, path)
