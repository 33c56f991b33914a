"""Approximate random dropout whose dropped units cost no multiply (docs/approx-dropout.md).

Two layers:

- `ApproxRandomDropout(rate, pattern="row"|"tile", tile=(32, 64), seed=None)` describes the dropout
  and draws its patterns (`approxtrain.layers._dropout_patterns`), one per training step.
  Alone, after any layer, a row pattern drops whole features of its input -- correct, but the
  products that made the dropped features were already spent.
- `ApproxDropoutDense(units, dropout=ApproxRandomDropout(...), multiplier=...)`: a Dense layer
  fused with its dropout. The pattern is drawn BEFORE the product, and the product runs on
  compacted operands: one smaller AM matmul (or native matmul for ``"fp32"``) forward, and
  its two gradient GEMMs are smaller in the same proportion, since they are that product's
  gradients. At inference (training False) it is exactly `AMDense`.

    dense = ApproxDropoutDense(300, activation="relu", multiplier="mbm7",
                               dropout=ApproxRandomDropout(0.5, "row"))
"""

import keras
import tensorflow as tf

from approxtrain import ops
from approxtrain.layers import _dropout_patterns as patterns
from approxtrain.layers import _kept_units as kept_units
from approxtrain.layers._am_layer import from_float32, to_float32
from approxtrain.layers.dense import AMDense


@keras.saving.register_keras_serializable(package="approxtrain")
class ApproxRandomDropout(keras.layers.Layer):
    """Structured dropout drawn online: whole units (``"row"``) or whole kernel tiles (``"tile"``).

    A fresh pattern at every training step for each group of `group_size` consecutive
    examples; the kept values are scaled by n / kept, which is the usual 1 / (1 - rate)
    whenever n * (1 - rate) is a whole number (see `_dropout_patterns.scale`). Identity at
    inference.

    Args:
        rate: share dropped, a float in [0, 1).
        pattern: ``"row"`` (drop output units) or ``"tile"`` (drop tiles of the kernel of the
            Dense layer it is fused with; see `ApproxDropoutDense`).
        tile: tile size (rows, cols) of the kernel [in, out], or one int for square tiles;
            used by the tile pattern only. The default's 64 columns match the strips of 64
            columns the CPU GEMM packs B into (measured faster than 32x32).
        group_size: examples (rows) that share one pattern. None (default): the whole batch
            shares one, as in the paper -- one plain compacted GEMM, the fewest extra ops; but
            the dropout noise no longer averages over the batch, so SGD with momentum needs a
            smaller step than without dropout (e.g. lr 0.01 instead of 0.05 for LeNet-300-100).
            An int gives each group of that many rows its own pattern (one batched GEMM over the
            groups: the same multiplies, more gathers and smaller GEMMs, hence slower on CPU).
        seed: int seed of the pattern stream (None: drawn from Keras's global seed).

    Used alone (after any layer) only the row pattern applies: it zeroes whole features of
    its input. To skip the multiplies of the dropped units, give it to `ApproxDropoutDense`.
    """

    def __init__(self, rate, pattern="row", tile=(32, 64), group_size=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = patterns.check_rate(rate)
        self.pattern = patterns.check_pattern(pattern)
        self.tile = patterns.check_tile(tile)
        self.group_size = patterns.check_group_size(group_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def kept_units(self, n, groups=1):
        """[groups, kept] sorted int32 indices of the units each group keeps (fresh at every call)."""
        uniform = keras.random.uniform(tf.stack([groups, n]), seed=self.seed_generator)
        return patterns.random_subsets(uniform, patterns.kept_count(n, self.rate))

    def kept_and_dropped_units(self, n):
        """(kept, dropped) int32 units of one pattern for the whole batch: kept sorted, the same
        draw as ``kept_units(n)[0]``; dropped the others, unsorted (fresh at every call)."""
        uniform = keras.random.uniform(tf.stack([1, n]), seed=self.seed_generator)
        return patterns.random_split(uniform[0], patterns.kept_count(n, self.rate))

    def kept_tiles(self, row_tiles, col_tiles, groups=1):
        """[groups, col_tiles, kept] sorted int32 row-tile indices kept in each column block of tiles."""
        uniform = keras.random.uniform(tf.stack([groups, col_tiles, row_tiles]), seed=self.seed_generator)
        return patterns.random_subsets(uniform, patterns.kept_count(row_tiles, self.rate))

    def call(self, inputs, training=None):
        if self.pattern != "row":
            raise ValueError(
                f"ApproxRandomDropout {self.name!r}: pattern={self.pattern!r} drops tiles of a weight matrix; "
                "use it as ApproxDropoutDense(..., dropout=ApproxRandomDropout(..., pattern='tile'))"
            )
        if not training or self.rate == 0.0:
            return inputs
        n = inputs.shape[-1]
        flat = tf.reshape(inputs, [-1, n])
        grouped, groups = patterns.group_rows(flat, self.group_size)
        mask = tf.cast(patterns.positions(self.kept_units(n, groups), n) > 0, inputs.dtype)
        out = grouped * (mask[:, None, :] * tf.cast(patterns.scale(n, self.rate), inputs.dtype))
        return tf.reshape(patterns.ungroup_rows(out, tf.shape(flat)[0]), tf.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            rate=self.rate, pattern=self.pattern, tile=list(self.tile), group_size=self.group_size, seed=self.seed
        )
        return config


def dropout_argument(dropout):
    """None, an ApproxRandomDropout, or its serialised form (as from_config passes it)."""
    if isinstance(dropout, dict):
        dropout = keras.saving.deserialize_keras_object(dropout)
    if dropout is not None and not isinstance(dropout, ApproxRandomDropout):
        raise ValueError(f"dropout must be an ApproxRandomDropout or None, got {dropout!r}")
    return dropout


@keras.saving.register_keras_serializable(package="approxtrain")
class ApproxDropoutDense(AMDense):
    """`AMDense` fused with approximate random dropout: dropped units cost no multiply.

    Training step, ``dropout.pattern == "row"``: the kept units K are drawn, then
    ``y[:, K] = act(x . kernel[:, K] + bias[K]) * scale`` by ONE matmul of shape
    [rows, in] x [in, |K|]; the dropped units are exact zeros. Its gradients are the
    compacted product's: dX = dY[:, K] . kernel[:, K]^T and dW[:, K] = x^T . dY[:, K];
    the dropped columns of the kernel and bias get exactly zero gradient.

    ``"tile"``: the kernel is cut into tiles (dropout.tile); each column block keeps the same
    number of its row tiles, so the step is ONE batched matmul over the column blocks,
    [blocks, rows, kept*tile_rows] x [blocks, kept*tile_rows, tile_cols]:
    ``y = act((x . (kernel * M)) * scale + bias)``, M the tile mask (DropConnect by tiles).

    Kept products sum k ascending, as in `AMDense`: a kept unit of a row pattern is the
    undropped layer's value times the scale, bit for bit.  At inference the layer is `AMDense`.

    Args:
        units, activation, use_bias, ...: as `keras.layers.Dense` / `AMDense`.
        dropout: an `ApproxRandomDropout` (None: no dropout, plain AMDense).
        multiplier, grad_input_multiplier, grad_weight_multiplier: as `AMDense`; ``"fp32"``
            compacts the same way with native matmuls.
    """

    def __init__(self, units, dropout=None, **kwargs):
        super().__init__(units, **kwargs)
        self.dropout = dropout_argument(dropout)

    def build(self, input_shape):
        super().build(input_shape)
        if self.dropout is not None and not self.dropout.built:
            self.dropout.build(input_shape)

    def call(self, inputs, training=None):
        if not training or self.dropout is None or self.dropout.rate == 0.0:
            return super().call(inputs, training=training)
        x, kernel = to_float32(self, inputs, self.kernel)
        if self.dropout.pattern == "row" and self.dropout.group_size is None:
            return self._row_dropped_batch(inputs, x, kernel)
        flat = tf.reshape(x, [-1, x.shape[-1]])
        grouped, groups = patterns.group_rows(flat, self.dropout.group_size)  # [groups, rows, in]
        if self.dropout.pattern == "row":
            y = self._row_dropped(grouped, groups, kernel)
        else:
            y = self._tile_dropped(grouped, groups, kernel)
        return self._unflatten(patterns.ungroup_rows(y, tf.shape(flat)[0]), x)

    def _unflatten(self, y, x):
        """[rows, units] -> [*x.shape[:-1], units]."""
        y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [self.units]], axis=0))
        y.set_shape(x.shape[:-1].concatenate([self.units]))
        return y

    def _finish(self, y, kept):
        """act(y + bias[kept]) * scale for the kept units' product y: [rows, kept] for kept [kept],
        [groups, rows, kept] for kept [groups, kept]."""
        y = from_float32(self, y)
        if self.bias is not None:
            bias = tf.gather(self.bias, kept)
            y = keras.ops.add(y, bias if kept.shape.rank == 1 else bias[:, None, :])
        if self.activation is not None:
            y = self.activation(y)
        return y * tf.cast(patterns.scale(self.units, self.dropout.rate), y.dtype)

    def _row_dropped_batch(self, inputs, x, kernel):
        """One pattern for the batch: ONE plain 2-D product on the kept columns of the kernel.

        `_kept_units.product`: on the CPU one native op that gathers the kept columns itself
        (and two for the gradients), otherwise TensorFlow's gathers around the AM matmul. The
        input may itself be the spread of a row-dropped layer (`_kept_units`): then only its kept
        units enter the product, with the block kernel[kept in][:, kept]. A rank-2 result carries
        its compact values for the next layer.
        """
        stash = kept_units.of(inputs, kernel.shape[0]) if kept_units.takes(self) else None
        rows = tf.reshape(x, [-1, x.shape[-1]]) if stash is None else stash.compact
        kept, dropped = self.dropout.kept_and_dropped_units(self.units)
        y = kept_units.product(self, rows, kernel, stash, kept_columns=kept)
        compact = self._finish(y, kept)
        full = self._unflatten(patterns.spread(compact[None], kept[None], self.units)[0], x)
        if x.shape.rank == 2 and kept_units.hands_on(self):
            kept_units.attach(full, compact, kept, self.units, dropped)
        return full

    def _row_dropped(self, grouped, groups, kernel):
        """act(x . kernel[:, K] + bias[K]) * scale per group of rows, spread back to all units."""
        kept = self.dropout.kept_units(self.units, groups)  # [groups, kept]
        w = tf.transpose(tf.gather(kernel, kept, axis=1), [1, 0, 2])  # [groups, in, kept]
        y = ops.matmul(grouped, w, **self.am_multipliers.op_kwargs())
        y = self._finish(y, kept)
        return patterns.spread(y, kept, self.units)

    def _tile_dropped(self, grouped, groups, kernel):
        """act((x . (kernel * M)) * scale + bias) per group, M the group's tile mask."""
        n_in, units = kernel.shape
        tile_rows, tile_cols = self.dropout.tile
        row_tiles, col_tiles = patterns.tile_grid(n_in, units, self.dropout.tile)
        kept = self.dropout.kept_tiles(row_tiles, col_tiles, groups)  # [groups, col_tiles, kept]
        # Zero-pad to whole tiles: a padded zero adds +0 to a sum, which leaves it unchanged.
        k_pad, n_pad = row_tiles * tile_rows - n_in, col_tiles * tile_cols - units
        kernel = tf.pad(kernel, [[0, k_pad], [0, n_pad]])
        grouped = tf.pad(grouped, [[0, 0], [0, 0], [0, k_pad]])
        rows = tf.shape(grouped)[1]
        # kernel tiles [col_tiles, row_tiles, tile_rows, tile_cols]; the kept ones of each
        # (group, column block): [groups, col_tiles, kept * tile_rows, tile_cols]
        w = tf.transpose(tf.reshape(kernel, [row_tiles, tile_rows, col_tiles, tile_cols]), [2, 0, 1, 3])
        w = tf.gather(w, tf.transpose(kept, [1, 0, 2]), batch_dims=1)  # [col_tiles, groups, kept, tr, tc]
        w = tf.reshape(tf.transpose(w, [1, 0, 2, 3, 4]), tf.stack([groups, col_tiles, -1, tile_cols]))
        # the matching input slices: [groups, col_tiles, rows, kept * tile_rows]
        x = tf.transpose(tf.reshape(grouped, tf.stack([groups, rows, row_tiles, tile_rows])), [0, 2, 1, 3])
        x = tf.transpose(tf.gather(x, kept, batch_dims=1), [0, 1, 3, 2, 4])  # [groups, ct, rows, kept, tr]
        x = tf.reshape(x, tf.stack([groups, col_tiles, rows, -1]))
        y = ops.matmul(x, w, **self.am_multipliers.op_kwargs())  # [groups, col_tiles, rows, tile_cols]
        y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), tf.stack([groups, rows, col_tiles * tile_cols]))[:, :, :units]
        y = from_float32(self, y * patterns.scale(row_tiles, self.dropout.rate))
        if self.bias is not None:
            y = keras.ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self):
        config = super().get_config()
        dropout = None if self.dropout is None else keras.saving.serialize_keras_object(self.dropout)
        if dropout is not None:
            dropout.pop("build_config", None)  # built with this layer: not part of its configuration
        config["dropout"] = dropout
        return config


# ApproxDropoutDense stands in for no Keras layer: substitute() maps it to itself only, to
# re-target its multiplier (approxtrain._substitute.TWINS).
ApproxDropoutDense.keras_twin = ApproxDropoutDense
