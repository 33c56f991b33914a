"""What every AM layer shares: the multiplier arguments, their config, the float32 boundary.

An AM layer is its Keras twin (same build, weights and serialisation) whose
multiplications go through `approxtrain.ops`. The mixin goes first in the
bases, e.g. ``class AMDense(AMLayer, keras.layers.Dense)``.
"""

from dataclasses import dataclass

import keras
import tensorflow as tf

from approxtrain import multipliers
from approxtrain.multipliers import Multiplier


def check_multiplier(value, argument, optional=False):
    """Validate one multiplier argument early (multipliers.resolve, as the ops do), so a typo fails
    at construction, naming the argument; the value itself is kept (names stay names)."""
    if value is None and optional:
        return None
    try:
        multipliers.resolve(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{argument}: {e}") from None
    return value


# The layout of an AM layer's config in .keras files: get_config writes it as "format_version",
# AMLayer.from_config is the one place that reads it.  Version 1 is the layout of files saved
# before the key existed, so a config without it is version 1.  A change of the layout gets a
# new number here and a conversion of the older ones in from_config.
CONFIG_FORMAT_VERSION = 1
READABLE_CONFIG_VERSIONS = (1,)


def multiplier_name(value):
    """What get_config stores: the registry name (the table itself is not serialised)."""
    return value.name if isinstance(value, Multiplier) else value


@dataclass(frozen=True)
class AMMultipliers:
    """The three multipliers of one layer, in the keyword form every approxtrain.ops function takes."""

    multiplier: object
    grad_input_multiplier: object = None
    grad_weight_multiplier: object = None

    def op_kwargs(self, activations_only=False):
        """Keyword arguments for an op. activations_only: both operands are activations (attention
        products), so both gradients use grad_input_multiplier."""
        grad_weight = self.grad_input_multiplier if activations_only else self.grad_weight_multiplier
        if activations_only and grad_weight is None:
            grad_weight = self.multiplier
        return dict(
            multiplier=self.multiplier,
            grad_input_multiplier=self.grad_input_multiplier,
            grad_weight_multiplier=grad_weight,
        )

    def config(self):
        return {
            "multiplier": multiplier_name(self.multiplier),
            "grad_input_multiplier": multiplier_name(self.grad_input_multiplier),
            "grad_weight_multiplier": multiplier_name(self.grad_weight_multiplier),
        }


def to_float32(layer, *tensors):
    """Cast floating tensors to float32 (the AM ops' dtype); anything else is a clear error.

    Under a mixed-precision policy Keras hands the layer float16/bfloat16 inputs and
    kernels; the AM arithmetic is defined on float32, so it runs there.
    """
    out = []
    for t in tensors:
        dtype = tf.as_dtype(t.dtype)
        if not dtype.is_floating:
            raise TypeError(f"{type(layer).__name__} {layer.name!r}: inputs must be floating point, got {dtype.name}")
        out.append(tf.cast(t, tf.float32))
    return out[0] if len(out) == 1 else out


def from_float32(layer, y):
    """Cast an AM op's float32 result back to the layer's compute dtype."""
    return tf.cast(y, layer.compute_dtype)


def add_bias_and_activate(layer, outputs):
    """The tail every Keras twin applies after its product: bias (on the trailing axes), then activation."""
    if layer.bias is not None:
        outputs = keras.ops.add(outputs, layer.bias)
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


def check_rank(layer, inputs, rank):
    if inputs.shape.rank != rank:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} expects inputs of rank {rank}, got shape {tuple(inputs.shape)}"
        )


class AMLayer:
    """Mixin: `multiplier`, `grad_input_multiplier`, `grad_weight_multiplier` on a Keras layer.

    Each AM layer class names the Keras layer it stands in for in ``keras_twin`` (one of its
    bases); `approxtrain.substitute` derives its replacement map from these declarations.

    Args (in addition to the Keras twin's):
        multiplier: multiplier of the forward products: a registry name (e.g. ``"mbm7"``),
            an `approxtrain.multipliers.Multiplier`, or ``"fp32"`` (the native op).
        grad_input_multiplier: multiplier of the products giving the gradient w.r.t. the
            layer input (None: same as `multiplier`).
        grad_weight_multiplier: multiplier of the products giving the gradient w.r.t. the
            weights (None: same as `multiplier`).
    """

    keras_twin = None  # set by each AM layer class, e.g. keras.layers.Dense for AMDense

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        twin = cls.__dict__.get("keras_twin")
        if twin is not None and not issubclass(cls, twin):
            raise TypeError(f"{cls.__name__}.keras_twin must be one of its bases, got {twin.__name__}")

    def __init__(self, *args, multiplier, grad_input_multiplier=None, grad_weight_multiplier=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.am_multipliers = AMMultipliers(
            check_multiplier(multiplier, "multiplier"),
            check_multiplier(grad_input_multiplier, "grad_input_multiplier", optional=True),
            check_multiplier(grad_weight_multiplier, "grad_weight_multiplier", optional=True),
        )
        # The AM ops are custom kernels XLA cannot compile. Keras's trainer compiles a model
        # with XLA only if every layer has supports_jit (trainer.model_supports_jit), so
        # jit_compile="auto" (and True, with a warning) falls back to a plain tf.function.
        self.supports_jit = False

    @property
    def multiplier(self):
        return self.am_multipliers.multiplier

    @property
    def grad_input_multiplier(self):
        return self.am_multipliers.grad_input_multiplier

    @property
    def grad_weight_multiplier(self):
        return self.am_multipliers.grad_weight_multiplier

    def get_config(self):
        config = super().get_config()
        config.update(self.am_multipliers.config())
        config["format_version"] = CONFIG_FORMAT_VERSION
        return config

    @classmethod
    def from_config(cls, config):
        """The twin's from_config, once the config's format_version (missing: 1, the layout of files
        saved before the key existed) is one this approxtrain reads."""
        config = dict(config)
        version = config.pop("format_version", 1)
        if version not in READABLE_CONFIG_VERSIONS or isinstance(version, bool):
            readable = ", ".join(map(str, READABLE_CONFIG_VERSIONS))
            if isinstance(version, int) and not isinstance(version, bool) and version > CONFIG_FORMAT_VERSION:
                raise ValueError(
                    f"{cls.__name__} {config.get('name')!r}: layer config format_version {version} was written by a "
                    f"newer approxtrain (this one reads format_version {readable}); upgrade approxtrain to load it"
                )
            raise ValueError(
                f"{cls.__name__} {config.get('name')!r}: layer config format_version {version!r} is not "
                f"a known version (this approxtrain reads format_version {readable}); the saved model "
                "is damaged"
            )
        return super().from_config(config)

    def _require_channels_last(self):
        if self.data_format != "channels_last":
            raise ValueError(
                f"{type(self).__name__} supports data_format='channels_last' only (the AM ops are NHWC), "
                f"got data_format={self.data_format!r}"
            )
