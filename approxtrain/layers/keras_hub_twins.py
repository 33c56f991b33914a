"""AM twins of keras_hub layers; imported only once keras_hub itself is loaded.

keras_hub is optional and slow to import, so approxtrain never imports it eagerly:
`approxtrain.substitute` adds `TWINS` to its map only when ``"keras_hub" in sys.modules``
(a model holding keras_hub layers implies that). Loading a saved model with these layers
needs this module imported first, so Keras knows their registered names.
"""

import keras
from keras_hub.src.layers.modeling.cached_multi_head_attention import CachedMultiHeadAttention

from approxtrain.layers.attention import AMMultiHeadAttention


@keras.saving.register_keras_serializable(package="approxtrain")
class AMCachedMultiHeadAttention(AMMultiHeadAttention, CachedMultiHeadAttention):
    """keras_hub's CachedMultiHeadAttention (GPT-2, OPT, ... decoders) with AM products.

    The MRO puts AMMultiHeadAttention first, so `build` (projections made AM) and
    `_compute_attention` (both attention products AM) are its; `call` is keras_hub's, which
    goes through exactly those projections and `_compute_attention`, with or without the
    key/value cache. Arguments: AMMultiHeadAttention's.
    """

    keras_twin = CachedMultiHeadAttention


# keras_hub layer -> its AM twin; the twins map to themselves (re-targeting a multiplier).
TWINS = {
    AMCachedMultiHeadAttention.keras_twin: AMCachedMultiHeadAttention,
    AMCachedMultiHeadAttention: AMCachedMultiHeadAttention,
}
