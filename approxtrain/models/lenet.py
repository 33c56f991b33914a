"""LeNet-300-100 (fully connected) and LeNet-5 (convolutional), for MNIST-sized images.

Both take the dropout options of their hidden Dense layers (fc1, fc2):

- ``approx_dropout="row"|"tile"``: each hidden Dense is an `ApproxDropoutDense` whose
  approximate random dropout (rate ``dropout_rate``, default 0.5) skips the multiplies of the
  dropped units/tiles (docs/approx-dropout.md);
- ``dropout_rate`` alone: a plain per-element `keras.layers.Dropout` after each hidden Dense,
  the baseline approximate random dropout replaces;
- neither (the default): no dropout.

``dropout_group_size``: examples sharing one pattern (None: the whole batch, as in the paper);
see `ApproxRandomDropout`.
"""

from keras import layers

APPROX_DROPOUT_PATTERNS = ("row", "tile")
DEFAULT_DROPOUT_RATE = 0.5
DEFAULT_GROUP_SIZE = None  # the whole batch shares one pattern, as in the paper


def _hidden_dense(x, units, name, approx_dropout, dropout_rate, group_size):
    """One hidden Dense (ReLU) with the dropout the options ask for."""
    if approx_dropout is None:
        x = layers.Dense(units, activation="relu", name=name)(x)
        return x if dropout_rate is None else layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    from approxtrain.layers import ApproxDropoutDense, ApproxRandomDropout

    rate = DEFAULT_DROPOUT_RATE if dropout_rate is None else dropout_rate
    # multiplier "fp32" here; models.build() re-targets it with substitute() like every Dense.
    dropout = ApproxRandomDropout(rate, approx_dropout, group_size=group_size, name=f"{name}_dropout")
    return ApproxDropoutDense(units, activation="relu", dropout=dropout, multiplier="fp32", name=name)(x)


def _check_dropout_options(approx_dropout, dropout_rate):
    if approx_dropout is not None and approx_dropout not in APPROX_DROPOUT_PATTERNS:
        raise ValueError(
            f"approx_dropout must be one of {', '.join(map(repr, APPROX_DROPOUT_PATTERNS))} or None, "
            f"got {approx_dropout!r}"
        )
    if dropout_rate is not None and (
        isinstance(dropout_rate, bool) or not isinstance(dropout_rate, (int, float)) or not 0 <= dropout_rate < 1
    ):
        raise ValueError(f"dropout_rate must be a number in [0, 1), got {dropout_rate!r}")


def lenet300100(inputs, num_classes, approx_dropout=None, dropout_rate=None, dropout_group_size=DEFAULT_GROUP_SIZE):
    _check_dropout_options(approx_dropout, dropout_rate)
    x = layers.Flatten()(inputs)
    x = _hidden_dense(x, 300, "fc1", approx_dropout, dropout_rate, dropout_group_size)
    x = _hidden_dense(x, 100, "fc2", approx_dropout, dropout_rate, dropout_group_size)
    return layers.Dense(num_classes, name="logits")(x)


def lenet5(inputs, num_classes, approx_dropout=None, dropout_rate=None, dropout_group_size=DEFAULT_GROUP_SIZE):
    """LeNet-5 with ReLU and max pooling; the first conv pads so 28x28 inputs work as 32x32 did."""
    _check_dropout_options(approx_dropout, dropout_rate)
    height, width = inputs.shape[1], inputs.shape[2]
    if min(height, width) < 12:
        raise ValueError(f"lenet5 needs inputs of at least 12x12 pixels, got {height}x{width}")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = _hidden_dense(x, 120, "fc1", approx_dropout, dropout_rate, dropout_group_size)
    x = _hidden_dense(x, 84, "fc2", approx_dropout, dropout_rate, dropout_group_size)
    return layers.Dense(num_classes, name="logits")(x)
