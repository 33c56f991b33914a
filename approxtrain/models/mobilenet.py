"""MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise convolutions."""

from keras import layers

from approxtrain.models.resnet import _resolve_stem

# (expansion t, output channels c, repeats n, first stride s), from the paper's table 2.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(channels, divisor=8):
    """Channel count rounded to a multiple of divisor, never below 90 % of the request."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _bn(x, relu6=True):
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.99)(x)
    return layers.ReLU(max_value=6.0)(x) if relu6 else x


def inverted_residual(x, expansion, filters, strides):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = _bn(layers.Conv2D(in_channels * expansion, 1, use_bias=False)(y))
    y = _bn(layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(y))
    y = _bn(layers.Conv2D(filters, 1, use_bias=False)(y), relu6=False)
    if strides == 1 and in_channels == filters:
        y = layers.Add()([x, y])
    return y


def mobilenetv2(inputs, num_classes, alpha=1.0, stem="auto", dropout=0.2):
    """alpha: width multiplier. stem 'cifar' keeps stride 1 in the stem and the first
    stride-2 stage (32x32 inputs end at 4x4 rather than 1x1); 'imagenet' is the paper's."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ValueError(f"alpha (width multiplier) must be a positive number, got {alpha!r}")
    stem = _resolve_stem(stem, inputs)
    x = layers.Conv2D(
        make_divisible(32 * alpha), 3, strides=2 if stem == "imagenet" else 1, padding="same", use_bias=False
    )(inputs)
    x = _bn(x)
    for index, (t, c, n, s) in enumerate(BLOCKS):
        if stem == "cifar" and index == 1:
            s = 1
        for i in range(n):
            x = inverted_residual(x, t, make_divisible(c * alpha), s if i == 0 else 1)
    last = make_divisible(1280 * max(alpha, 1.0))
    x = _bn(layers.Conv2D(last, 1, use_bias=False)(x))
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, name="logits")(x)
