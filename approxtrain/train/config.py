"""Settings of one training run, and which of them a resumed run must share."""

import dataclasses
from dataclasses import dataclass, field

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "step")
STRATEGIES = ("default", "mirrored", "multiworker")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}

# Settings that do not change what is computed: a run may be resumed with other values.
_RUNTIME_ONLY = ("epochs", "out", "strategy", "verbose")


@dataclass
class TrainConfig:
    model: str
    dataset: str
    out: str
    data_dir: str | None = None
    multiplier: str = "fp32"
    grad_input_multiplier: str | None = None
    grad_weight_multiplier: str | None = None
    model_options: dict = field(default_factory=dict)
    # None: dense; else approxtrain.sparsity.settings' dict ({"method": "prune" | "chase", ...})
    sparsity: dict | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9  # sgd and rmsprop
    weight_decay: float = 0.0  # decoupled, applied by the optimizer
    lr_schedule: str = "constant"
    seed: int = 0
    subset: int | None = None  # first N training examples
    test_subset: int | None = None  # first N test examples (smoke runs only)
    validation: float = 0.0  # fraction of training examples held out
    augment: bool | None = None  # None: the dataset's standard augmentation
    image_size: int | None = None  # class-folder datasets
    strategy: str = "default"
    verbose: int | str = "auto"  # Keras fit verbosity; "auto": bar on a terminal, lines otherwise

    def __post_init__(self):
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.optimizer)
        self.validate()

    def build_model(self, input_shape, num_classes):
        """The zoo model this run trains, with its multipliers and model options (uncompiled)."""
        from approxtrain import models

        return models.build(
            self.model,
            input_shape,
            num_classes,
            multiplier=self.multiplier,
            grad_input_multiplier=self.grad_input_multiplier,
            grad_weight_multiplier=self.grad_weight_multiplier,
            **self.model_options,
        )

    def validate(self):
        for what, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("strategy", self.strategy, STRATEGIES),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
        for what in ("epochs", "batch_size"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.sparsity is not None:
            from approxtrain.sparsity.settings import validate

            self.sparsity = validate(self.sparsity, self.epochs)

    def to_dict(self):
        return dataclasses.asdict(self)

    def identity(self):
        """The settings that define what is computed (all but epochs, out and runtime choices)."""
        return {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_ONLY}

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def differences(saved, current):
    """'key: saved -> current' for every identity setting that differs (JSON-normalised)."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
