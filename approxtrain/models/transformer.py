"""A small Transformer encoder classifier (ViT-style on image patches, or on sequences).

Inputs: images (H, W, C) are cut into patch_size x patch_size patches by a strided
conv; sequences of vectors (L, F) are projected by a dense layer; token sequences (L,)
need vocab_size and go through an embedding. With a multiplier, models.build() makes every Conv2D,
Dense and MultiHeadAttention approximate (attention: all four projections and both products).
"""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="approxtrain")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding per sequence position."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding",
            shape=(input_shape[-2], input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, x):
        return x + keras.ops.cast(self.embedding, x.dtype)


def _tokens(inputs, dim, patch_size, vocab_size):
    rank = len(inputs.shape) - 1
    if rank == 3:
        height, width = inputs.shape[1], inputs.shape[2]
        if patch_size is None:  # about 8x8 patches on small images, 16x16 on large ones
            patch_size = 4 if max(height, width) <= 64 else 16
        if height % patch_size or width % patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of patch_size {patch_size}")
        x = layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embedding")(inputs)
        return layers.Reshape(((height // patch_size) * (width // patch_size), dim))(x)
    if rank == 2:
        return layers.Dense(dim, name="input_projection")(inputs)
    if rank == 1:
        if vocab_size is None:
            raise ValueError("a token-sequence input (shape (L,)) needs vocab_size")
        return layers.Embedding(vocab_size, dim, name="token_embedding")(inputs)
    raise ValueError(
        f"transformer inputs must be images (H, W, C), sequences (L, F) or tokens (L,), "
        f"got shape {tuple(inputs.shape[1:])}"
    )


def encoder_block(x, num_heads, mlp_dim, dropout):
    dim = x.shape[-1]
    y = layers.LayerNormalization(epsilon=1e-6)(x)
    y = layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)(y, y)
    x = layers.Add()([x, layers.Dropout(dropout)(y)])
    y = layers.LayerNormalization(epsilon=1e-6)(x)
    y = layers.Dense(mlp_dim, activation="gelu")(y)
    y = layers.Dense(dim)(layers.Dropout(dropout)(y))
    return layers.Add()([x, layers.Dropout(dropout)(y)])


def transformer(
    inputs, num_classes, dim=64, depth=2, num_heads=4, mlp_dim=None, patch_size=None, vocab_size=None, dropout=0.1
):
    if dim % num_heads:
        raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads})")
    x = _tokens(inputs, dim, patch_size, vocab_size)
    x = PositionEmbedding(name="position_embedding")(x)
    for _ in range(depth):
        x = encoder_block(x, num_heads, mlp_dim or 2 * dim, dropout)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return layers.Dense(num_classes, name="logits")(x)


def input_dtype(input_shape, vocab_size=None, **_):
    return "int32" if len(input_shape) == 1 and vocab_size is not None else "float32"
