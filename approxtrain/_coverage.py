"""approxtrain.coverage(model): which share of a model's multiplies runs approximately.

The model is traced once (tf.function, batch of one, nothing computed) with every
multiply-heavy layer (`approxtrain._substitute.MULTIPLY_HEAVY`, AM layers included) recording
the shapes of each of its calls; the MACs of each call follow analytically from those shapes
and the layer's kernels. A layer called twice counts twice. A layer counts as approximate when
it is an AM layer whose forward multiplier is a table (not ``"fp32"``).

Counts, per sample:
- Dense: input elements x units (input elements / last dim rows, each last dim x units).
- EinsumDense: input elements x kernel elements / the sizes of the axes they share.
- Convolutions: output elements x kernel fan-in; transposed: input elements x kernel fan-out;
  depthwise: output elements x kernel size; separable: its depthwise and its 1x1 parts.
- MultiHeadAttention / GroupQueryAttention: the four projections, plus Q.K^T and P.V.
- Attention / AdditiveAttention: the scores and P.V.
- SimpleRNN / GRU / LSTM: per step 1, 3 or 4 gates x (input x units + units x units);
  ConvLSTM: per step and output position, the input and recurrent kernels' sizes.
  A bare cell (inside keras.layers.RNN) is traced once: it counts one step.
"""

import math

import keras
import tensorflow as tf
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv
from keras.src.layers.rnn.conv_lstm import ConvLSTM

from approxtrain import multipliers
from approxtrain._substitute import _leaves
from approxtrain.layers import AMLayer


def coverage(model, inputs=None):
    """Share of the model's multiply-accumulates (MACs) that run on approximate multipliers.

    Args:
        model: a built Keras model.
        inputs: an example input (any structure the model takes; only shapes and dtypes
            are used, the batch size is replaced by 1). Needed where the model's input shapes
            are not all known (e.g. a sequence length of None).

    Returns:
        ``{"approximate_macs": int, "native_macs": int, "share": float, "layers": [...]}``
        for one forward pass of one sample; `share` is approximate / total (0.0 for a model
        without multiply-heavy layers). Each entry of `layers` is
        ``{"name", "class", "calls", "macs", "approximate"}``, in the model's layer order.

    Raises:
        ValueError: the model's input shapes are unknown and `inputs` was not given.
    """
    specs = _input_specs(model, inputs)
    leaves = _leaves(model)
    records = {id(layer): [] for layer in leaves}
    saved = [(layer, layer.__dict__.get("call")) for layer in leaves]
    for layer in leaves:
        _hook(layer, records[id(layer)])
    try:
        tf.function(lambda x: model(x, training=False)).get_concrete_function(specs)
    finally:
        for layer, call in saved:
            if call is None:
                del layer.__dict__["call"]
            else:
                layer.__dict__["call"] = call
    rows = []
    for layer in leaves:
        calls = records[id(layer)]
        rows.append(
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "calls": len(calls),
                "macs": sum(_macs(layer, *call) for call in calls),
                "approximate": _approximate(layer),
            }
        )
    approximate = sum(row["macs"] for row in rows if row["approximate"])
    native = sum(row["macs"] for row in rows if not row["approximate"])
    total = approximate + native
    return {
        "approximate_macs": approximate,
        "native_macs": native,
        "share": approximate / total if total else 0.0,
        "layers": rows,
    }


def _approximate(layer):
    return isinstance(layer, AMLayer) and multipliers.resolve(layer.multiplier) is not None


def _hook(layer, record):
    """Make layer.call record (args, kwargs, outputs) of every call, shapes only."""
    call = layer.call

    def recording_call(*args, **kwargs):
        outputs = call(*args, **kwargs)
        record.append((args, kwargs, outputs))
        return outputs

    layer.__dict__["call"] = recording_call


def _input_specs(model, inputs):
    if inputs is not None:
        return keras.tree.map_structure(
            lambda x: tf.TensorSpec([1, *tf.convert_to_tensor(x).shape[1:]], tf.convert_to_tensor(x).dtype), inputs
        )
    try:
        model_inputs = model.input
    except (AttributeError, ValueError):
        model_inputs = None
    if model_inputs is None:
        build = model.get_build_config() if model.built else None
        if not build or "input_shape" not in build:
            raise ValueError(
                f"coverage: the input shape of model {model.name!r} is not known; pass inputs=<an example batch>"
            )
        return tf.TensorSpec([1, *build["input_shape"][1:]], model.compute_dtype)

    def spec(t):
        if any(d is None for d in t.shape[1:]):
            raise ValueError(
                f"coverage: input {t.name!r} of model {model.name!r} has shape {tuple(t.shape)}; "
                "pass inputs=<an example batch> to fix the unknown sizes"
            )
        return tf.TensorSpec([1, *t.shape[1:]], t.dtype, name=t.name)

    return keras.tree.map_structure(spec, model_inputs)


def _n(tensor_or_shape):
    shape = tensor_or_shape.shape if hasattr(tensor_or_shape, "shape") else tensor_or_shape
    return math.prod(int(d) for d in shape)


def _arg(args, kwargs, index, name):
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _macs(layer, args, kwargs, outputs):
    """MACs of one call (batch of one) of a multiply-heavy layer."""
    x = _arg(args, kwargs, 0, "inputs")
    y = keras.tree.flatten(outputs)[0]
    if isinstance(layer, keras.layers.Dense):
        return _n(x) * layer.units
    if isinstance(layer, keras.layers.EinsumDense):
        operands = layer.equation.split("->")[0].split(",")
        kernel = layer.kernel.shape
        shared = set(operands[0]) & set(operands[1]) - {"."}
        return _n(x) * _n(kernel) // math.prod(int(kernel[operands[1].index(c)]) for c in shared)
    if isinstance(layer, BaseSeparableConv):
        per_position = _n(y) // layer.filters
        return per_position * _n(layer.depthwise_kernel) + _n(y) * _n(layer.pointwise_kernel) // layer.filters
    if isinstance(layer, BaseDepthwiseConv):
        kernel = layer.kernel.shape
        return _n(y) * _n(kernel) // (int(kernel[-2]) * int(kernel[-1]))
    if isinstance(layer, BaseConvTranspose):
        return _n(x) * _n(layer.kernel) // int(layer.kernel.shape[-1])
    if isinstance(layer, BaseConv):
        return _n(y) * _n(layer.kernel) // layer.filters
    if isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.GroupQueryAttention)):
        query = _arg(args, kwargs, 0, "query")
        value = _arg(args, kwargs, 1, "value")  # the key, if given, has the value's length
        t_q, t_v = _n(query) // int(query.shape[-1]), _n(value) // int(value.shape[-1])
        projections = (
            t_q * _n(layer._query_dense.kernel)
            + t_v * _n(layer._key_dense.kernel)
            + t_v * _n(layer._value_dense.kernel)
            + t_q * _n(layer._output_dense.kernel)
        )
        if isinstance(layer, keras.layers.MultiHeadAttention):
            products = t_q * t_v * layer._num_heads * (layer._key_dim + layer._value_dim)
        else:
            products = t_q * t_v * layer.num_query_heads * 2 * layer.head_dim
        return projections + products
    if isinstance(layer, (keras.layers.Attention, keras.layers.AdditiveAttention)):
        query, value = x[0], x[1]
        t_q, t_v = _n(query) // int(query.shape[-1]), _n(value) // int(value.shape[-1])
        return t_q * t_v * (int(query.shape[-1]) + int(value.shape[-1]))
    if isinstance(layer, ConvLSTM):
        steps = int(x.shape[1])
        positions = _n(y) // layer.filters // (steps if layer.return_sequences else 1)
        cell = layer.cell
        return steps * positions * (_n(cell.kernel) + _n(cell.recurrent_kernel))
    if isinstance(layer, (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)):
        cell = layer.cell
        return int(x.shape[1]) * (_n(cell.kernel) + _n(cell.recurrent_kernel))
    if isinstance(layer, (keras.layers.SimpleRNNCell, keras.layers.GRUCell, keras.layers.LSTMCell)):
        return _n(layer.kernel) + _n(layer.recurrent_kernel)
    raise NotImplementedError(f"coverage: no MAC count for {type(layer).__name__} {layer.name!r}")


def summary(model, inputs=None):
    """One line for a run's summary: the approximate share of the MACs and the layers left native."""
    counts = coverage(model, inputs)
    total = counts["approximate_macs"] + counts["native_macs"]
    native = [f"{row['name']} ({row['class']})" for row in counts["layers"] if not row["approximate"]]
    line = (
        f"approximate multiplies: {counts['share']:.1%} of {total:,} MACs per sample "
        f"in {len(counts['layers'])} multiply-heavy layer(s)"
    )
    return line + (f"; native: {', '.join(native[:5])}{' ...' if len(native) > 5 else ''}" if native else "")


def zoo_summary(results, model_name, model_options):
    """summary() of the zoo model a finished `approxtrain train` run used (rebuilt, untrained: the
    count depends on shapes and layers only)."""
    from approxtrain import models

    settings, dataset = results["settings"], results["dataset"]
    model = models.build(
        model_name, dataset["input_shape"], dataset["num_classes"], multiplier=settings["multiplier"], **model_options
    )
    return summary(model)
