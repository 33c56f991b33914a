"""Loading a trained model from an `approxtrain train` run folder (its last committed checkpoint)."""

import os

from approxtrain.train import checkpoint
from approxtrain.train.config import TrainConfig
from approxtrain.train.files import SETTINGS, read_json


def load(run_dir, batch_size=None):
    """(compiled model with the checkpoint's weights, data, config, epoch) of run folder `run_dir`."""
    import keras

    from approxtrain import data as datasets
    from approxtrain.train.optim import make_optimizer

    path = os.path.join(run_dir, SETTINGS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a run folder of `approxtrain train` (no {SETTINGS})")
    config = TrainConfig.from_dict(read_json(path, run_dir)["config"])
    entry, _ = checkpoint.choose(run_dir)
    if entry is None:
        raise ValueError(f"run folder {run_dir} has no finished epoch (no checkpoint) to load")
    data = datasets.load(
        config.dataset,
        data_dir=config.data_dir,
        batch_size=batch_size or config.batch_size,
        seed=config.seed,
        subset=config.subset,
        augment=config.augment,
        image_size=config.image_size,
    )
    model = config.build_model(data.info.input_shape, data.info.num_classes)
    model.compile(optimizer=make_optimizer(config, 1), loss=keras.losses.SparseCategoricalCrossentropy())
    checkpoint.restore(run_dir, model, entry)
    return model, data, config, entry.epoch
