"""AMMultiHeadAttention: keras.layers.MultiHeadAttention with every product approximate.

Six GEMMs per call go through `approxtrain.ops.matmul`: the query, key, value and output
projections, and the two attention products (scores = Q K^T, output = scores V). Keras
builds the projections as EinsumDense sublayers; after Keras's build they are turned into
`_AMProjection` (an EinsumDense whose `call` is an AM matmul), so weights, their paths
and serialisation stay exactly Keras's.

With an integer multiplier and calibration="moving_average", every left (activation) operand
has its own running range, a non-trainable weight of the attention layer named
``<operand>_range``: the inputs of the projections (`query_projection`, `key_projection`,
`value_projection`, `gate_projection` when use_gate, `output_projection`), the scaled query of
the scores product (`score_query`) and the attention probabilities of the context product
(`context_probabilities`); the right operands of the two attention products are activations
too and keep theirs (`score_key`, `context_values`), each quantized per tensor with it
(``weight_range``). With the other calibrations keys and values are calibrated like the
weights of a projection (their own min/max, per tensor or per channel).
"""

import keras
import tensorflow as tf

from approxtrain import ops
from approxtrain.layers._am_layer import AMLayer, add_bias_and_activate, from_float32, range_kwargs, to_float32
from approxtrain.layers.dense import dense_matmul


class _AMProjection(keras.layers.EinsumDense):
    """An EinsumDense of the projection form "<free><bound>,<bound><out>-><free><out>"
    (what MultiHeadAttention builds), computed as one AM matmul. Only made by
    AMMultiHeadAttention.build, from Keras's own sublayer."""

    # Set by AMMultiHeadAttention.build: this projection's input range from the attention layer's
    # moving-average state (a function of the input), or None (the op calibrates).
    _range_of_input = None

    def input_range(self, x, name="inputs"):
        return None if self._range_of_input is None else self._range_of_input(x)

    def call(self, inputs, training=None):
        _, bound, _ = _projection_parts(self.equation)
        return add_bias_and_activate(self, dense_matmul(self, inputs, self.kernel, bound_rank=len(bound)))


def _projection_parts(equation):
    """(free, bound, out) index letters of a projection equation; anything else is an error."""
    inputs, result = equation.split("->")
    lhs, rhs = inputs.split(",")
    bound = "".join(c for c in lhs if c in rhs)
    free, out = lhs[: len(lhs) - len(bound)], rhs[len(bound) :]
    if lhs != free + bound or rhs != bound + out or result != free + out:
        raise NotImplementedError(f"AM projection supports '<free><bound>,<bound><out>-><free><out>', got {equation!r}")
    return free, bound, out


@keras.saving.register_keras_serializable(package="approxtrain")
class AMMultiHeadAttention(AMLayer, keras.layers.MultiHeadAttention):
    """Multi-head attention with AM products; the arguments of `keras.layers.MultiHeadAttention`.

    All four projections (query, key, value, output; and the gate when use_gate=True)
    and both attention products are AM matmuls. Scaling, masking, softmax and dropout
    are Keras's. The attention products multiply two activations, so both of their
    gradients use `grad_input_multiplier`. Attention is always computed explicitly
    (no fused/flash kernel).

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for gradients w.r.t. activations (None: `multiplier`).
        grad_weight_multiplier: multiplier for gradients w.r.t. the projection kernels
            (None: `multiplier`).
        **kwargs: every other `keras.layers.MultiHeadAttention` argument (value_dim, dropout,
            use_bias, output_shape, attention_axes, ...); flash_attention must not be True.
    """

    keras_twin = keras.layers.MultiHeadAttention
    _PROJECTIONS = {
        "_query_dense": "query_projection",
        "_key_dense": "key_projection",
        "_value_dense": "value_projection",
        "_gate_dense": "gate_projection",
        "_output_dense": "output_projection",
    }

    @property
    def quantized_inputs(self):
        """The activations quantized with a moving-average range (see the module docstring)."""
        projections = ["query_projection", "key_projection", "value_projection"]
        if self._use_gate:
            projections.append("gate_projection")
        return (*projections, "output_projection", "score_query", "score_key", "context_probabilities",
                "context_values")  # fmt: skip

    def __init__(self, *args, flash_attention=None, **kwargs):
        if flash_attention:
            raise ValueError(
                "AMMultiHeadAttention computes attention explicitly; flash_attention=True is not supported"
            )
        super().__init__(*args, **kwargs)
        self._flash_attention = False  # even when keras.config.enable_flash_attention() is on

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        for attribute, range_name in self._PROJECTIONS.items():
            projection = getattr(self, attribute, None)
            if projection is None:
                continue
            _projection_parts(projection.equation)  # fail at build, not at the first call
            projection.__class__ = _AMProjection
            projection.am_multipliers = self.am_multipliers
            projection.supports_jit = False
            if self._moving_average():
                projection._range_of_input = self._input_range_function(range_name)

    def _right_range(self, x, name):
        """``weight_range=`` for an attention product's right operand (an activation) under a
        moving-average calibration, else nothing (the op calibrates it like a weight)."""
        value = self.input_range(x, name)
        return {} if value is None else {"weight_range": value}

    def _input_range_function(self, name):
        # A plain function, not the layer: an attribute holding this layer would make the
        # projection track its parent as a sublayer.
        return lambda x: self.input_range(x, name)

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        if use_causal_mask:  # Keras passes it only to its own _compute_attention; kept for safety
            causal = self._compute_causal_mask(query, value)
            attention_mask = (
                causal
                if attention_mask is None
                else keras.ops.logical_and(keras.ops.cast(attention_mask, "bool"), causal)
            )
        query = keras.ops.multiply(query, keras.ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        rank = len(query.shape)
        attention = tuple(self._attention_axes)
        batch = tuple(i for i in range(rank - 1) if i not in attention)
        order = batch + attention + (rank - 1,)  # [<batch and heads>, <attention axes>, channels]

        q, k, v = (tf.transpose(t, order) for t in (query, key, value))
        q32, k32, v32 = to_float32(self, q, k, v)
        nb, na = len(batch), len(attention)
        q_shape, k_shape = tf.shape(q), tf.shape(k)
        q_len = tf.reduce_prod(q_shape[nb : nb + na])
        k_len = tf.reduce_prod(k_shape[nb : nb + na])

        activation_kwargs = self.am_multipliers.op_kwargs(activations_only=True)
        scores = ops.matmul(
            tf.reshape(q32, tf.stack([-1, q_len, q.shape[-1]])),
            tf.reshape(k32, tf.stack([-1, k_len, k.shape[-1]])),
            transpose_b=True,
            **activation_kwargs,
            **range_kwargs(self, q32, "score_query"),
            **self._right_range(k32, "score_key"),
        )
        # Keras's layout: [<batch and heads>, <query attention axes>, <key attention axes>].
        scores = tf.reshape(scores, tf.concat([q_shape[: nb + na], k_shape[nb : nb + na]], axis=0))
        scores = self._masked_softmax(from_float32(self, scores), attention_mask)
        probabilities = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores

        probabilities = tf.reshape(to_float32(self, probabilities), tf.stack([-1, q_len, k_len]))
        out = ops.matmul(
            probabilities,
            tf.reshape(v32, tf.stack([-1, k_len, v.shape[-1]])),
            **activation_kwargs,
            **range_kwargs(self, probabilities, "context_probabilities"),
            **self._right_range(v32, "context_values"),
        )
        out = tf.reshape(out, tf.concat([q_shape[:-1], [v.shape[-1]]], axis=0))
        out = tf.transpose(out, [order.index(i) for i in range(rank)])
        return from_float32(self, out), scores
