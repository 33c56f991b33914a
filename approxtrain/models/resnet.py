"""ResNets: CIFAR style (resnet20/32/56, He et al. 2016 section 4.2) and ImageNet style
(resnet18/34 with basic blocks, resnet50 with bottlenecks), channels_last with BatchNorm."""

from keras import layers

# name -> (blocks per stage, bottleneck?)
IMAGENET_DEPTHS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
}
CIFAR_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet56": 56}


def _bn_relu(x, relu=True):
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
    return layers.ReLU()(x) if relu else x


def _conv(filters, kernel, strides=1):
    return layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal"
    )


def _shortcut(x, filters, strides):
    if strides == 1 and x.shape[-1] == filters:
        return x
    # Projection shortcut (option B) whenever the shape changes.
    return _bn_relu(_conv(filters, 1, strides)(x), relu=False)


def basic_block(x, filters, strides):
    shortcut = _shortcut(x, filters, strides)
    y = _bn_relu(_conv(filters, 3, strides)(x))
    y = _bn_relu(_conv(filters, 3)(y), relu=False)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def bottleneck_block(x, filters, strides):
    shortcut = _shortcut(x, 4 * filters, strides)
    y = _bn_relu(_conv(filters, 1)(x))
    y = _bn_relu(_conv(filters, 3, strides)(y))
    y = _bn_relu(_conv(4 * filters, 1)(y), relu=False)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def _head(x, num_classes):
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(num_classes, name="logits")(x)


def cifar_resnet(depth):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    blocks = (depth - 2) // 6

    def build(inputs, num_classes, width=16):
        width = _positive_int("width", width)
        x = _bn_relu(_conv(width, 3)(inputs))
        for stage, filters in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks):
                x = basic_block(x, filters, 2 if stage > 0 and i == 0 else 1)
        return _head(x, num_classes)

    return build


def imagenet_resnet(name):
    stages, bottleneck = IMAGENET_DEPTHS[name]
    block = bottleneck_block if bottleneck else basic_block

    def build(inputs, num_classes, width=64, stem="auto"):
        width = _positive_int("width", width)
        stem = _resolve_stem(stem, inputs)
        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max pool: for 224x224-class inputs
            x = _bn_relu(_conv(width, 7, 2)(inputs))
            x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        else:  # 3x3/1 conv, no pooling: keeps 32x32 inputs from vanishing
            x = _bn_relu(_conv(width, 3)(inputs))
        for stage, count in enumerate(stages):
            for i in range(count):
                x = block(x, width * 2**stage, 2 if stage > 0 and i == 0 else 1)
        return _head(x, num_classes)

    return build


def _resolve_stem(stem, inputs):
    if stem == "auto":
        return "imagenet" if min(inputs.shape[1], inputs.shape[2]) >= 128 else "cifar"
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar', 'imagenet' or 'auto', got {stem!r}")
    return stem


def _positive_int(what, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value
