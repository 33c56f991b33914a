"""Per-epoch checkpoints: model and optimizer variables (.weights.h5) and an epoch counter.

The optimizer is rebuilt from the current settings and only its variables (iteration
count, momenta) are restored, so a run resumed with more --epochs gets schedules sized
for the new total while continuing from the saved step.
"""
import os

from approxtrain.train.files import CHECKPOINT_DIR, read_json, write_json

WEIGHTS = "model.weights.h5"  # Keras saves the compiled optimizer's variables in it too
STATE = "state.json"


def last_epoch(run_dir):
    """Number of the last epoch whose checkpoint is complete; 0 when there is none."""
    path = os.path.join(run_dir, CHECKPOINT_DIR, STATE)
    return int(read_json(path)["epoch"]) if os.path.exists(path) else 0


def save(run_dir, model, epoch):
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, WEIGHTS)
    model.save_weights(weights + ".tmp.weights.h5")
    os.replace(weights + ".tmp.weights.h5", weights)
    # Written last: its presence means the weights file belongs to this epoch.
    write_json(os.path.join(directory, STATE), {"epoch": epoch})


def restore(run_dir, model):
    """Loads weights and optimizer variables into a compiled model; returns the epoch."""
    # The optimizer's variables exist only once it is built; unbuilt, Keras would skip them.
    model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(run_dir, CHECKPOINT_DIR, WEIGHTS))
    return last_epoch(run_dir)
