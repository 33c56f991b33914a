"""Training runs: `train(TrainConfig(...))` writes history.csv, checkpoints and results.json.

    from approxtrain.train import TrainConfig, train
    results = train(TrainConfig(model="lenet5", dataset="fashion_mnist", out="runs/x", epochs=2))
"""
from approxtrain.train.config import TrainConfig
from approxtrain.train.run import run_state, train

__all__ = ["TrainConfig", "train", "run_state"]
