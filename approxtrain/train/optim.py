"""Optimizers and learning-rate schedules by name."""

import keras


def make_schedule(name, lr, steps_per_epoch, epochs):
    total = steps_per_epoch * epochs
    if name == "constant":
        return lr
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total, 1))
    if name == "step":  # /10 at 50 % and 75 % of training, the classic CIFAR ResNet recipe
        boundaries = sorted({max(1, total // 2), max(2, 3 * total // 4)})
        values = [lr * 0.1**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    raise ValueError(f"unknown lr schedule {name!r}")


def make_optimizer(config, steps_per_epoch):
    lr = make_schedule(config.lr_schedule, config.lr, steps_per_epoch, config.epochs)
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay or 0.004)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=config.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def current_lr(optimizer):
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)
