"""Per-epoch checkpoints: model and optimizer variables, committed by state.json.

Saving epoch N writes checkpoint/epoch-000N.weights.h5 (temporary name, fsync, rename),
then replaces state.json, which names that file and its SHA-256, then removes the files
state.json no longer names. The newest checkpoint and the one before it are kept: a
resume verifies the newest against its hash and falls back to the one before when the
newest is damaged. A crash between the two writes leaves state.json naming the previous
epoch, and the new weights file unnamed: it is ignored and removed on resume.

A sparse run (approxtrain.sparsity) also writes checkpoint/epoch-NNNN.sparsity.npz (masks,
schedule position, RNG) before state.json, which names it with its SHA-256 beside the weights;
a checkpoint is intact only when both files are.

The optimizer is rebuilt from the current settings and only its variables (iteration
count, momenta) are restored, so a run resumed with more --epochs gets schedules sized
for the new total while continuing from the saved step.
"""

import hashlib
import os
import sys
from typing import NamedTuple

from approxtrain.train import testing_hooks
from approxtrain.train.files import (
    CHECKPOINT_DIR,
    FORMAT_VERSION,
    DamagedRunFiles,
    check_format,
    commit,
    read_json,
    write_json,
)

STATE = "state.json"
KEEP = 2  # the newest checkpoint and a fallback
LEGACY_WEIGHTS = "model.weights.h5"  # format 1: one file, overwritten every epoch


class Checkpoint(NamedTuple):
    epoch: int
    weights: str  # file name inside checkpoint/
    sha256: str | None  # None for format 1 checkpoints, which recorded no hash
    sparsity: str | None = None  # sparse runs: the masks' state file inside checkpoint/
    sparsity_sha256: str | None = None

    def to_dict(self):
        entry = {"epoch": self.epoch, "weights": self.weights, "sha256": self.sha256}
        if self.sparsity is not None:
            entry.update(sparsity=self.sparsity, sparsity_sha256=self.sparsity_sha256)
        return entry


def directory(run_dir):
    return os.path.join(run_dir, CHECKPOINT_DIR)


def weights_name(epoch):
    return f"epoch-{epoch:04d}.weights.h5"


def sparsity_name(epoch):
    return f"epoch-{epoch:04d}.sparsity.npz"


def listed(run_dir):
    """The checkpoints state.json names, oldest first; [] when there is no state.json."""
    path = os.path.join(directory(run_dir), STATE)
    if not os.path.exists(path):
        return []
    state = read_json(path, run_dir)
    version = check_format(run_dir, path, state.get("format"))
    try:
        if version == 1:
            epoch = state["epoch"]
            entries = [Checkpoint(epoch, LEGACY_WEIGHTS, None)]
        else:
            entries = [
                Checkpoint(e["epoch"], e["weights"], e["sha256"], e.get("sparsity"), e.get("sparsity_sha256"))
                for e in state["checkpoints"]
            ]
        for entry in entries:
            if isinstance(entry.epoch, bool) or not isinstance(entry.epoch, int) or entry.epoch < 1:
                raise ValueError(f"epoch {entry.epoch!r} is not a positive integer")
            for what, name in (("weights", entry.weights), ("sparsity", entry.sparsity)):
                if (what == "weights" or name is not None) and (
                    not isinstance(name, str) or os.path.basename(name) != name
                ):
                    raise ValueError(f"{what} {name!r} is not a file name")
        if not entries or [e.epoch for e in entries] != sorted({e.epoch for e in entries}):
            raise ValueError("the checkpoints are not listed in increasing epochs")
    except (KeyError, TypeError, ValueError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise DamagedRunFiles(run_dir, [(path, f"not a checkpoint state ({what})")]) from None
    return entries


def choose(run_dir):
    """The newest listed checkpoint whose weights file is intact, and the problems of newer ones.

    Returns (Checkpoint or None, [(path, what is wrong)]); DamagedRunFiles when checkpoints are
    listed but none is intact."""
    entries = listed(run_dir)
    problems = []
    for entry in reversed(entries):
        files = [(entry.weights, entry.sha256)]
        if entry.sparsity is not None:
            files.append((entry.sparsity, entry.sparsity_sha256))
        found = [(os.path.join(directory(run_dir), name), verify(os.path.join(directory(run_dir), name), sha))
                 for name, sha in files]  # fmt: skip
        if all(problem is None for _, problem in found):
            return entry, problems
        problems += [(path, problem) for path, problem in found if problem is not None]
    if problems:
        raise DamagedRunFiles(run_dir, problems)
    return None, []


def verify(path, sha256):
    """None when the file at `path` is intact, else what is wrong with it."""
    if not os.path.exists(path):
        return "missing"
    if sha256 is not None:
        actual = file_sha256(path)
        return None if actual == sha256 else f"damaged (SHA-256 {actual[:12]}..., state.json recorded {sha256[:12]}...)"
    import h5py  # format 1 recorded no hash: at least the HDF5 file must open

    try:
        with h5py.File(path, "r") as f:
            list(f.keys())
    except OSError as e:
        return f"not a readable HDF5 file ({str(e).splitlines()[0][:120]})"
    return None


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(run_dir, model, epoch):
    """Checkpoints `model` (weights and optimizer variables) as epoch `epoch`."""
    folder = directory(run_dir)
    os.makedirs(folder, exist_ok=True)
    name = weights_name(epoch)
    tmp = os.path.join(folder, f"epoch-{epoch:04d}.tmp.weights.h5")  # Keras wants the .weights.h5 ending
    model.save_weights(tmp)
    commit(tmp, os.path.join(folder, name))
    testing_hooks.reached(f"checkpoint:weights-written:{epoch}")
    entry = Checkpoint(epoch, name, file_sha256(os.path.join(folder, name)))
    sparse = getattr(model, "_approxtrain_sparsity", None)  # an approxtrain.sparsity callback
    if sparse is not None:
        import numpy as np

        masks = sparsity_name(epoch)
        tmp = os.path.join(folder, f"epoch-{epoch:04d}.tmp.sparsity.npz")
        np.savez(tmp, **sparse.state())
        commit(tmp, os.path.join(folder, masks))
        entry = entry._replace(sparsity=masks, sparsity_sha256=file_sha256(os.path.join(folder, masks)))
    kept = [e for e in listed(run_dir) if e.epoch < epoch][-(KEEP - 1) :] + [entry]
    write_state(run_dir, kept)


def write_state(run_dir, entries):
    """Commits `entries` (oldest first) as the run's checkpoints, then removes every other file.
    A format 1 checkpoint (no hash recorded) gets the hash of the file it has now."""
    entries = [
        e if e.sha256 else e._replace(sha256=file_sha256(os.path.join(directory(run_dir), e.weights))) for e in entries
    ]
    write_json(
        os.path.join(directory(run_dir), STATE),
        {"format": FORMAT_VERSION, "epoch": entries[-1].epoch, "checkpoints": [e.to_dict() for e in entries]},
    )
    remove_unlisted(run_dir, entries)


def remove_unlisted(run_dir, entries):
    """Deletes the checkpoint folder's files state.json does not name: older epochs, the weights
    of an epoch whose commit a crash cut short, temporary files."""
    keep = {STATE} | {e.weights for e in entries} | {e.sparsity for e in entries if e.sparsity}
    folder = directory(run_dir)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name not in keep and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))


def restore(run_dir, model, entry):
    """Loads a checkpoint's weights and optimizer variables into a compiled model."""
    # The optimizer's variables exist only once it is built; unbuilt, Keras would skip them.
    model.optimizer.build(model.trainable_variables)
    path = os.path.join(directory(run_dir), entry.weights)
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        first_line = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise DamagedRunFiles(run_dir, [(path, f"cannot be loaded into this model ({first_line})")]) from None


def restore_sparsity(run_dir, sparse, entry):
    """Loads a checkpoint's sparsity state (masks, schedule position, RNG) into the callback."""
    import numpy as np

    if entry.sparsity is None:
        path = os.path.join(directory(run_dir), STATE)
        raise DamagedRunFiles(run_dir, [(path, f"the epoch {entry.epoch} checkpoint has no sparsity state (masks)")])
    path = os.path.join(directory(run_dir), entry.sparsity)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            sparse.load_state({k: arrays[k] for k in arrays.files})
    except (OSError, ValueError, KeyError) as e:
        first_line = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise DamagedRunFiles(
            run_dir, [(path, f"cannot be loaded as this run's sparsity state ({first_line})")]
        ) from None


def warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)
