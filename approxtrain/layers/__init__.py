"""Keras 3 layers whose products go through simulated approximate multipliers.

Each layer is its Keras twin plus `multiplier`, `grad_input_multiplier` and
`grad_weight_multiplier` (see `AMLayer`); build, weights and serialisation are Keras's.

    import approxtrain as at
    layer = at.layers.AMDense(64, activation="relu", multiplier="mbm7")
"""

from approxtrain import _substituted_save  # noqa: F401  (registers what .keras files of substituted models name)
from approxtrain.layers._am_layer import AMLayer
from approxtrain.layers.approx_dropout import ApproxDropoutDense, ApproxRandomDropout
from approxtrain.layers.attention import AMMultiHeadAttention
from approxtrain.layers.conv import AMConv1D, AMConv2D
from approxtrain.layers.conv3d import AMConv3D
from approxtrain.layers.conv_transpose import AMConv1DTranspose, AMConv2DTranspose, AMConv3DTranspose
from approxtrain.layers.dense import AMDense
from approxtrain.layers.depthwise_conv import AMDepthwiseConv2D, AMSeparableConv2D
from approxtrain.layers.einsum_dense import AMEinsumDense
from approxtrain.layers.recurrent import AMGRU, AMLSTM, AMSimpleRNN

# Every AM layer class; each names its Keras twin in `keras_twin` (substitute() maps them).
# ApproxDropoutDense has no Keras twin: its own class, so substitute() only re-targets it.
AM_LAYERS = (
    AMDense,
    AMConv1D,
    AMConv2D,
    AMDepthwiseConv2D,
    AMSeparableConv2D,
    AMMultiHeadAttention,
    AMSimpleRNN,
    AMGRU,
    AMLSTM,
    AMEinsumDense,
    AMConv3D,
    AMConv1DTranspose,
    AMConv2DTranspose,
    AMConv3DTranspose,
    ApproxDropoutDense,
)

__all__ = [
    "AM_LAYERS",
    "AMLayer",
    "AMDense",
    "AMConv1D",
    "AMConv2D",
    "AMDepthwiseConv2D",
    "AMSeparableConv2D",
    "AMMultiHeadAttention",
    "AMEinsumDense",
    "AMConv3D",
    "AMConv1DTranspose",
    "AMConv2DTranspose",
    "AMConv3DTranspose",
    "AMSimpleRNN",
    "AMGRU",
    "AMLSTM",
    "ApproxDropoutDense",
    "ApproxRandomDropout",
]
