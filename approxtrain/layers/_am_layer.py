"""What every AM layer shares: the multiplier arguments, their config, the float32 boundary.

An AM layer is its Keras twin (same build, weights and serialisation) whose
multiplications go through `approxtrain.ops`. The mixin goes first in the
bases, e.g. ``class AMDense(AMLayer, keras.layers.Dense)``.
"""

from dataclasses import dataclass

import keras
import tensorflow as tf

from approxtrain.multipliers import IntegerMultiplier, Multiplier
from approxtrain.quant.config import QuantConfig, quant_config
from approxtrain.quant.multipliers import resolve_any
from approxtrain.quant.quantize import minmax


def check_multiplier(value, argument, optional=False):
    """Validate one multiplier argument early (multipliers.resolve, as the ops do), so a typo fails
    at construction, naming the argument; the value itself is kept (names stay names)."""
    if value is None and optional:
        return None
    try:
        resolve_any(value)
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
    return value.name if isinstance(value, (Multiplier, IntegerMultiplier)) else value


@dataclass(frozen=True)
class AMMultipliers:
    """The three multipliers of one layer, in the keyword form every approxtrain.ops function takes,
    and its quantization (a QuantConfig, None when not given; used by integer multipliers only)."""

    multiplier: object
    grad_input_multiplier: object = None
    grad_weight_multiplier: object = None
    quantization: QuantConfig = None

    @property
    def integer(self):
        """Whether the forward multiplier is an integer one (the products are quantized)."""
        return isinstance(resolve_any(self.multiplier), IntegerMultiplier)

    def op_kwargs(self, activations_only=False):
        """Keyword arguments for an op. activations_only: both operands are activations (attention
        products), so both gradients use grad_input_multiplier."""
        grad_weight = self.grad_input_multiplier if activations_only else self.grad_weight_multiplier
        if activations_only and grad_weight is None:
            grad_weight = self.multiplier
        kwargs = dict(
            multiplier=self.multiplier,
            grad_input_multiplier=self.grad_input_multiplier,
            grad_weight_multiplier=grad_weight,
        )
        if self.quantization is not None and self.integer:
            kwargs["quantization"] = self.quantization
        return kwargs

    def config(self):
        config = {
            "multiplier": multiplier_name(self.multiplier),
            "grad_input_multiplier": multiplier_name(self.grad_input_multiplier),
            "grad_weight_multiplier": multiplier_name(self.grad_weight_multiplier),
        }
        if self.quantization is not None:  # absent otherwise: configs of float layers stay as they were
            config["quantization"] = self.quantization.get_config()
        return config


def range_kwargs(layer, x, name="inputs"):
    """``input_range=`` for an op quantizing the activation x (a moving-average range), or nothing."""
    input_range = getattr(layer, "input_range", None)
    value = None if input_range is None else input_range(x, name)
    return {} if value is None else {"input_range": value}


def _training():
    """Keras's training flag of the current layer call (None: inference, as Keras treats it)."""
    from keras.src.backend.common import global_state

    context = global_state.get_global_attribute("current_call_ctx")
    training = None if context is None else context.get_value("training")
    if training is None or isinstance(training, bool):
        return bool(training)
    static = tf.get_static_value(training)
    if static is None:
        raise ValueError("calibration='moving_average' needs a Python training flag, got a symbolic one")
    return bool(static)


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
        quantization: for an integer multiplier (`approxtrain.multipliers.IntegerMultiplier`
            or its name), how operands are quantized: an `approxtrain.quant.QuantConfig` or its
            dict (None: its defaults).  See docs/integer.md.
    """

    keras_twin = None  # set by each AM layer class, e.g. keras.layers.Dense for AMDense
    # The activations a layer quantizes, each with a moving-average range when
    # calibration="moving_average" (layer state); None: the layer does not support that mode.
    quantized_inputs = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        twin = cls.__dict__.get("keras_twin")
        if twin is not None and not issubclass(cls, twin):
            raise TypeError(f"{cls.__name__}.keras_twin must be one of its bases, got {twin.__name__}")

    def __init__(
        self, *args, multiplier, grad_input_multiplier=None, grad_weight_multiplier=None, quantization=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.am_multipliers = AMMultipliers(
            check_multiplier(multiplier, "multiplier"),
            check_multiplier(grad_input_multiplier, "grad_input_multiplier", optional=True),
            check_multiplier(grad_weight_multiplier, "grad_weight_multiplier", optional=True),
            None if quantization is None else quant_config(quantization),
        )
        self._check_quantization()
        if self._moving_average():
            # [low, high, seen]: the running range of each quantized input, saved with the weights.
            # Made here, not in build: its shape does not depend on the input's, and Keras calls a
            # build it did not define with the input shape by parameter name.
            self._quant_ranges = {
                name: self.add_weight(
                    name=f"{name}_range",
                    shape=(3,),
                    initializer="zeros",
                    trainable=False,
                    autocast=False,
                    aggregation="mean",
                )
                for name in self.quantized_inputs
            }
        # The AM ops are custom kernels XLA cannot compile. Keras's trainer compiles a model
        # with XLA only if every layer has supports_jit (trainer.model_supports_jit), so
        # jit_compile="auto" (and True, with a warning) falls back to a plain tf.function.
        self.supports_jit = False

    @property
    def multiplier(self):
        return self.am_multipliers.multiplier

    @property
    def quantization(self):
        """The QuantConfig (None: not given, the defaults apply to an integer multiplier)."""
        return self.am_multipliers.quantization

    def _moving_average(self):
        q = self.am_multipliers.quantization
        return q is not None and q.calibration == "moving_average" and self.am_multipliers.integer

    def _check_quantization(self):
        if self._moving_average() and self.quantized_inputs is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: calibration='moving_average' is not supported by this "
                f"layer with integer multiplier {multiplier_name(self.multiplier)!r}; use calibration='minmax' "
                "or 'percentile'"
            )

    def _twin_saves_every_variable(self):
        """Whether the twin saves with keras.Layer's own save_own_variables, which writes every
        variable of the layer (the ranges included), rather than its own list (Dense's kernel, bias)."""
        mro = type(self).__mro__
        for klass in mro[mro.index(AMLayer) + 1 :]:
            if "save_own_variables" in vars(klass):
                return klass is keras.Layer
        return True

    # Twins with their own save/load_own_variables (Dense, EinsumDense, the convolutions) write
    # their weights by index and check the count on load; the moving-average ranges go after them.
    # Twins on keras.Layer's (DepthwiseConv2D, SeparableConv2D, the RNN cells, MultiHeadAttention)
    # already write every variable, the ranges among them.
    def save_own_variables(self, store):
        if not self._moving_average() or self._twin_saves_every_variable():
            super().save_own_variables(store)
            return
        own = {}
        super().save_own_variables(own)
        for key, value in own.items():
            store[key] = value
        for i, name in enumerate(self.quantized_inputs):
            store[str(len(own) + i)] = self._quant_ranges[name].numpy()

    def load_own_variables(self, store):
        if not self._moving_average() or self._twin_saves_every_variable():
            super().load_own_variables(store)
            return
        count = len(store.keys()) - len(self.quantized_inputs)
        super().load_own_variables(store)  # reads its own indices; checks the count of all variables
        for i, name in enumerate(self.quantized_inputs):
            self._quant_ranges[name].assign(store[str(count + i)])

    def input_range(self, x, name="inputs"):
        """The range of the quantized input `name` for an op's ``input_range``: None (the op calibrates)
        unless calibration="moving_average", whose state is updated here in training only."""
        if not self._moving_average():
            return None
        return self.moving_range(name, *minmax(tf.stop_gradient(tf.cast(x, tf.float32))))

    def moving_range(self, name, lo, hi, valid=None):
        """The moving-average range of the quantized input `name`, given this batch's range (lo, hi).

        Training: the first training batch sets the state to (lo, hi), later ones move it,
        ``range = momentum * range + (1 - momentum) * (lo, hi)``; the new range is returned.
        Inference: the stored range, untouched ((lo, hi) until a training batch has been seen).
        valid: None, or a boolean scalar tensor; where it is False the batch had no values and
        the state stays as it is (chosen by tf.where: a tf.cond around the assignment would
        break under tf.distribute)."""
        state = self._quant_ranges[name]
        lo, hi = tf.cast(lo, tf.float32), tf.cast(hi, tf.float32)
        seen = state[2] > 0
        if not _training():
            return tf.where(seen, state[0], lo), tf.where(seen, state[1], hi)
        m = self.am_multipliers.quantization.momentum
        lo = tf.where(seen, m * state[0] + (1.0 - m) * lo, lo)
        hi = tf.where(seen, m * state[1] + (1.0 - m) * hi, hi)
        moved = tf.stack([lo, hi, tf.constant(1.0)])
        state.assign(moved if valid is None else tf.where(valid, moved, tf.convert_to_tensor(state)))
        return lo, hi

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
