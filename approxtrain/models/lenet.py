"""LeNet-300-100 (fully connected) and LeNet-5 (convolutional), for MNIST-sized images."""

from keras import layers


def lenet300100(inputs, num_classes):
    x = layers.Flatten()(inputs)
    x = layers.Dense(300, activation="relu", name="fc1")(x)
    x = layers.Dense(100, activation="relu", name="fc2")(x)
    return layers.Dense(num_classes, name="logits")(x)


def lenet5(inputs, num_classes):
    """LeNet-5 with ReLU and max pooling; the first conv pads so 28x28 inputs work as 32x32 did."""
    height, width = inputs.shape[1], inputs.shape[2]
    if min(height, width) < 12:
        raise ValueError(f"lenet5 needs inputs of at least 12x12 pixels, got {height}x{width}")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    return layers.Dense(num_classes, name="logits")(x)
