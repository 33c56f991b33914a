"""Training runs: `train(TrainConfig(...))` writes history.csv, checkpoints and results.json.

    from approxtrain.train import TrainConfig, train
    results = train(TrainConfig(model="lenet5", dataset="fashion_mnist", out="runs/x", epochs=2))

The training loop itself, for any compiled Keras model and tf.distribute strategy (one device,
MirroredStrategy, MultiWorkerMirroredStrategy), with fit's callback hooks:

    from approxtrain.train import loop
    history = loop.fit(model, dataset, epochs=3, callbacks=[...], strategy=strategy)
"""

from approxtrain.train.config import TrainConfig
from approxtrain.train.run import run_state, train

__all__ = ["TrainConfig", "train", "run_state"]
