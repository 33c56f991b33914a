"""AMSimpleRNN, AMGRU, AMLSTM: Keras recurrent layers whose matrix products use approximate multipliers.

Which products are approximated (docs/design.md, "Recurrent layers"): every product
Keras computes with a matmul --

- the input products ``x_t . kernel`` (all gates), and
- the recurrent products ``h_{t-1} . recurrent_kernel`` (all gates; for a GRU with
  ``reset_after=False`` also ``(r_t * h_{t-1}) . recurrent_kernel[:, 2u:]``),

forward and backward, through `approxtrain.ops.matmul` with the layer's three multipliers
(the activations are the table row: x_t or h_{t-1} forward, dY for dX / dh, X or h for dW).
The elementwise gate math -- bias adds, sigmoid / tanh, the gate products ``f * c``,
``z * h``, dropout masks -- is native float32, as in Keras.

The input products do not depend on the recurrence, so they are hoisted out of the time
loop: ONE AM matmul of the whole sequence, rows (batch, time), each output element summing
over the input features ascending -- the same products in the same order as one product per
step, hence the same bits. Its kernel gradient is then one AM GEMM summing over
(batch, time) ascending. The recurrent products stay one AM matmul per step; their kernel
gradient is TensorFlow's sum over the steps of the loop.

The layers never take Keras's fused cuDNN / backend paths (which would multiply natively):
``use_cudnn`` is always False, and ``use_cudnn=True`` is an error.

Moving-average calibration (an integer multiplier with calibration="moving_average") is state
of the cell, one non-trainable ``<name>_range`` weight per quantized activation: ``inputs``
(x_t), ``recurrent`` (h_{t-1}) and, for a GRU with ``reset_after=False``, ``reset_recurrent``
(r_t * h_{t-1}). Each is moved at most once per training batch (`StepCalibration`):

- ``inputs``: the hoisted input product quantizes the whole sequence with the moved range, as
  AMDense does (this batch's range: the min/max of the sequence, after input dropout).
- ``recurrent`` / ``reset_recurrent``: every step quantizes its operand with the range stored
  before this batch (the operand's own min/max while none is stored, e.g. in the first training
  batch); the state is never assigned inside the time loop. The loop carries the min/max of
  the operands (after recurrent dropout) over the rows and steps whose results the mask keeps
  (all of them without a mask), and after the loop the state moves once by that range. No
  kept step (every row masked at every step): the state is left as it is.

In inference every product uses the stored ranges and nothing is updated. A cell called step
by step (``keras.layers.RNN(cell)``) would move its ranges once per time step, so it refuses
moving-average calibration; the AM recurrent layers run the loop themselves.
"""

import keras
import tensorflow as tf
from keras.src import backend as keras_backend

from approxtrain.layers._am_layer import AMLayer, _training
from approxtrain.layers.dense import dense_matmul

ops = keras.ops


# --- products --------------------------------------------------------------------------------


def _masked(x, mask):
    """x * mask, a [batch, features] dropout mask broadcast over the time axis of a sequence."""
    if len(x.shape) == 3:
        mask = ops.expand_dims(mask, 1)
    return x * mask


def gate_products(cell, x, weight, masks, gates, calibrate=None):
    """x . weight through the cell's AM multipliers (x the table row), x of shape [batch, k] or
    [batch, time, k]. masks: None, one dropout mask, or one mask per gate (Keras's
    implementation=1), in which case each gate's column block multiplies its own masked x.
    calibrate: None, or a function of the list of operands giving the one range all of them
    are quantized with (moving-average calibration)."""
    if masks is None or not isinstance(masks, (list, tuple)):
        operand = x if masks is None else _masked(x, masks)
        input_range = None if calibrate is None else calibrate([operand])
        return dense_matmul(cell, operand, weight, bound_rank=1, input_range=input_range)
    operands = [_masked(x, m) for m in masks[:gates]]
    input_range = None if calibrate is None else calibrate(operands)
    blocks = ops.split(weight, gates, axis=1)
    return ops.concatenate(
        [dense_matmul(cell, o, w, bound_rank=1, input_range=input_range) for o, w in zip(operands, blocks)],
        axis=-1,
    )


def _float32(x):
    return tf.stop_gradient(tf.cast(x, tf.float32))


def _moving_input_range(cell):
    """`calibrate` of the input product: the sequence's min/max moves the ``inputs`` state."""
    if not cell._moving_average():
        return None

    def calibrate(operands):
        lo = tf.reduce_min([tf.reduce_min(_float32(o)) for o in operands])
        hi = tf.reduce_max([tf.reduce_max(_float32(o)) for o in operands])
        return cell.moving_range("inputs", lo, hi)

    return calibrate


class StepCalibration:
    """Moving-average calibration of a cell's per-step products for one pass of the time loop
    (the rule: module docstring).

    The stored ranges are read once, before the loop. The loop carries, per product, the
    running min and max of its operands per batch row ([batch, 1] each) as extra states, so
    Keras's masking keeps a masked row's values; `update` moves the cell's state after the loop.
    """

    def __init__(self, cell):
        self.cell = cell
        self.names = cell.step_range_names
        self.stored = {name: tf.convert_to_tensor(cell._quant_ranges[name]) for name in self.names}
        self._running = None

    def initial_states(self, batch_size):
        shape = tf.stack([batch_size, 1])
        return [tf.fill(shape, tf.float32.max * sign) for _ in self.names for sign in (1.0, -1.0)]

    def begin_step(self, running):
        """Start a step with the running [lo, hi] states (in the order of `initial_states`)."""
        self._running = {name: [running[2 * i], running[2 * i + 1]] for i, name in enumerate(self.names)}

    def end_step(self):
        return [bound for name in self.names for bound in self._running[name]]

    def calibrate(self, name):
        """`calibrate` of the per-step product `name`: the stored range (the operands' own while
        none is stored); the operands' per-row min/max join the running range."""

        def calibrate(operands):
            operands = [_float32(o) for o in operands]
            lo = tf.reduce_min([tf.reduce_min(o, axis=-1, keepdims=True) for o in operands], axis=0)
            hi = tf.reduce_max([tf.reduce_max(o, axis=-1, keepdims=True) for o in operands], axis=0)
            running = self._running[name]
            self._running[name] = [tf.minimum(running[0], lo), tf.maximum(running[1], hi)]
            state = self.stored[name]
            seen = state[2] > 0
            return tf.where(seen, state[0], tf.reduce_min(lo)), tf.where(seen, state[1], tf.reduce_max(hi))

        return calibrate

    def update(self, running):
        """After the loop, in training: move each state by the range of the kept operands."""
        if not _training():
            return
        for i, name in enumerate(self.names):
            lo, hi = tf.reduce_min(running[2 * i]), tf.reduce_max(running[2 * i + 1])
            self.cell.moving_range(name, lo, hi, valid=lo <= hi)  # lo > hi: no step was kept


class _AMCell(AMLayer):
    """An RNN cell split in two: `input_products` (x . kernel, no state) and `step` (the rest).

    `call` is the two in a row, so the cell also works alone, e.g. in `keras.layers.RNN`.
    """

    gates = None  # column blocks of kernel / recurrent_kernel

    @property
    def step_range_names(self):
        """The quantized activations of the per-step products (moving-average state names)."""
        return ("recurrent",)

    @property
    def quantized_inputs(self):
        return ("inputs", *self.step_range_names)

    def _input_masks(self, inputs, training):
        if not training or not 0.0 < self.dropout < 1.0:
            return None
        return self.get_dropout_mask(inputs[:, 0, :] if len(inputs.shape) == 3 else inputs)

    def _recurrent_masks(self, h_tm1, training):
        if not training or not 0.0 < self.recurrent_dropout < 1.0:
            return None
        return self.get_recurrent_dropout_mask(h_tm1)

    def input_products(self, inputs, training=False):
        """inputs . kernel (dropout applied), for one step [batch, k] or a whole sequence [batch, time, k]."""
        masks = self._input_masks(inputs, training)
        return gate_products(self, inputs, self.kernel, masks, self.gates, _moving_input_range(self))

    def call(self, inputs, states, training=False):
        if self._moving_average():
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: calibration='moving_average' is not supported for a cell "
                "called step by step (its ranges would move once per time step); use the AM recurrent layer "
                "(AMSimpleRNN, AMGRU, AMLSTM), or calibration='minmax' or 'percentile'"
            )
        return self.step(self.input_products(inputs, training), states, training)


def _calibrate(calibration, name):
    return None if calibration is None else calibration.calibrate(name)


def _first_state(states):
    return states[0] if isinstance(states, (list, tuple)) else states


@keras.saving.register_keras_serializable(package="approxtrain")
class AMSimpleRNNCell(_AMCell, keras.layers.SimpleRNNCell):
    """`keras.layers.SimpleRNNCell` with AM products: ``act((x . W + b) + h . U)``."""

    keras_twin = keras.layers.SimpleRNNCell
    gates = 1

    def step(self, x_kernel, states, training=False, calibration=None):
        h_tm1 = _first_state(states)
        z = x_kernel if self.bias is None else ops.add(x_kernel, self.bias)
        masks = self._recurrent_masks(h_tm1, training)
        z = z + gate_products(self, h_tm1, self.recurrent_kernel, masks, 1, _calibrate(calibration, "recurrent"))
        if self.activation is not None:
            z = self.activation(z)
        return z, ([z] if isinstance(states, (list, tuple)) else z)


@keras.saving.register_keras_serializable(package="approxtrain")
class AMLSTMCell(_AMCell, keras.layers.LSTMCell):
    """`keras.layers.LSTMCell` with AM products.

    z = x . W + h . U + b (bias added first under implementation=1, last otherwise, as Keras
    does), gates i, f, c~, o = z split in four; c = f * c_prev + i * act(c~); h = o * act(c).
    """

    keras_twin = keras.layers.LSTMCell
    gates = 4

    def step(self, x_kernel, states, training=False, calibration=None):
        h_tm1, c_tm1 = states[0], states[1]
        masks = self._recurrent_masks(h_tm1, training)
        h_kernel = gate_products(self, h_tm1, self.recurrent_kernel, masks, 4, _calibrate(calibration, "recurrent"))
        return lstm_gates(self, x_kernel, h_kernel, c_tm1, self.bias if self.use_bias else None)


def lstm_gates(cell, x_kernel, h_kernel, c_tm1, bias):
    """The LSTM step after its two products: z = x.W + h.U + b (bias first under
    implementation=1, as Keras), then the gates i, f, c~, o; returns h, [h, c]."""
    if bias is not None and cell.implementation == 1:
        z = (x_kernel + bias) + h_kernel
    else:
        z = x_kernel + h_kernel
        if bias is not None:
            z = z + bias
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    i = cell.recurrent_activation(z_i)
    f = cell.recurrent_activation(z_f)
    c = f * c_tm1 + i * cell.activation(z_c)
    o = cell.recurrent_activation(z_o)
    h = o * cell.activation(c)
    return h, [h, c]


@keras.saving.register_keras_serializable(package="approxtrain")
class AMGRUCell(_AMCell, keras.layers.GRUCell):
    """`keras.layers.GRUCell` with AM products, both `reset_after` conventions.

    x = x . W + b_in split into (x_z, x_r, x_h). reset_after=True: m = h . U + b_rec split into
    (m_z, m_r, m_h), r = sig(x_r + m_r), candidate act(x_h + r * m_h). reset_after=False:
    (m_z, m_r) = h . U[:, :2u], candidate act(x_h + (r * h) . U[:, 2u:]) -- an AM product too.
    z = sig(x_z + m_z); h_new = z * h + (1 - z) * candidate.
    """

    keras_twin = keras.layers.GRUCell
    gates = 3

    @property
    def step_range_names(self):
        return ("recurrent",) if self.reset_after else ("recurrent", "reset_recurrent")

    def _biases(self):
        if not self.use_bias:
            return None, None
        if not self.reset_after:
            return self.bias, None
        return self.bias[0], self.bias[1]

    def step(self, x_kernel, states, training=False, calibration=None):
        h_tm1 = _first_state(states)
        input_bias, recurrent_bias = self._biases()
        x = x_kernel if input_bias is None else x_kernel + input_bias
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        masks = self._recurrent_masks(h_tm1, training)
        u = self.units
        if self.reset_after:
            inner = gate_products(self, h_tm1, self.recurrent_kernel, masks, 3, _calibrate(calibration, "recurrent"))
            if recurrent_bias is not None:
                inner = inner + recurrent_bias
            m_z, m_r, m_h = ops.split(inner, 3, axis=-1)
        else:
            recurrent = _calibrate(calibration, "recurrent")
            inner = gate_products(self, h_tm1, self.recurrent_kernel[:, : 2 * u], masks, 2, recurrent)
            m_z, m_r = ops.split(inner, 2, axis=-1)
        z = self.recurrent_activation(x_z + m_z)
        r = self.recurrent_activation(x_r + m_r)
        if self.reset_after:
            m_h = r * m_h
        else:
            h_h = h_tm1 if masks is None else _masked(h_tm1, masks[2] if isinstance(masks, (list, tuple)) else masks)
            reset = _calibrate(calibration, "reset_recurrent")
            m_h = gate_products(self, r * h_h, self.recurrent_kernel[:, 2 * u :], None, 1, reset)
        candidate = self.activation(x_h + m_h)
        h = z * h_tm1 + (1 - z) * candidate
        return h, ([h] if isinstance(states, (list, tuple)) else h)


# --- layers ----------------------------------------------------------------------------------


class _AMRecurrent(AMLayer):
    """What AMSimpleRNN, AMGRU and AMLSTM share: the AM cell and the hoisted loop."""

    cell_class = None
    quantized_inputs = ()  # the moving-average ranges are the cell's

    def __init__(self, *args, **kwargs):
        if "use_cudnn" in kwargs:
            self._check_use_cudnn(kwargs.pop("use_cudnn"), kwargs.get("name"))
            if self.keras_twin is not keras.layers.SimpleRNN:
                kwargs["use_cudnn"] = False
        super().__init__(*args, **kwargs)
        # The twin's __init__ made a native cell; make the same cell an AM one (same config).
        native = self.cell
        config = native.get_config()
        if hasattr(native, "implementation"):  # not in the cell's config, but it changes dropout
            config["implementation"] = native.implementation
        config.update(self.am_multipliers.op_kwargs())
        self._tracker.untrack(native)
        self.cell = self.cell_class.from_config(config)

    def _check_use_cudnn(self, value, name):
        if value is True:
            raise ValueError(
                f"{type(self).__name__} {name or ''!r}: use_cudnn=True asks for the fused cuDNN kernel, which "
                "multiplies natively; an AM recurrent layer always runs its own loop (use_cudnn='auto' or False)"
            )
        if value not in ("auto", False):
            raise ValueError(f"use_cudnn must be 'auto', True or False, got {value!r}")

    # Keras's LSTM / GRU take the fused cuDNN path while use_cudnn is "auto" or True, and
    # Bidirectional copies the wrapped layer's value onto its two copies: for an AM layer it
    # is always False.
    @property
    def use_cudnn(self):
        return False

    @use_cudnn.setter
    def use_cudnn(self, value):
        self._check_use_cudnn(value, getattr(self, "name", None))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.tree.is_nested(mask):
            mask = mask[0]
        projected = self.cell.input_products(sequences, training)
        return self.recurrence(projected, initial_state, mask, training)

    def recurrence(self, projected, initial_state, mask=None, training=False):
        """The time loop on the input products ``x . kernel`` of the whole sequence: Keras's
        backend loop (go_backwards, masking, unroll) over the cell's `step`."""

        def step(x_kernel, states, calibration):
            output, new_states = self.cell.step(x_kernel, states, training, calibration)
            return output, (new_states if keras.tree.is_nested(new_states) else [new_states])

        if not keras.tree.is_nested(initial_state):
            initial_state = [initial_state]
        return self.time_loop(step, projected, list(initial_state), mask)

    def time_loop(self, step, projected, states, mask):
        """Keras's backend loop of ``step(x_kernel, states, calibration)`` over the time axis of
        `projected`; with moving-average calibration the loop also carries the per-step products'
        running ranges (`StepCalibration`), and the cell's state moves once, after the loop."""
        calibration = StepCalibration(self.cell) if self.cell._moving_average() else None
        count = len(states)

        def loop_step(x_kernel, loop_states):
            if calibration is None:
                return step(x_kernel, loop_states, None)
            calibration.begin_step(loop_states[count:])
            output, new_states = step(x_kernel, loop_states[:count], calibration)
            return output, list(new_states) + calibration.end_step()

        if calibration is not None:
            states = states + calibration.initial_states(tf.shape(projected)[0])
        last, outputs, new_states = keras_backend.rnn(
            loop_step,
            projected,
            states,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=projected.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )
        if calibration is not None:
            calibration.update(new_states[count:])
        return last, outputs, list(new_states[:count])


_ARGS_DOC = """
    Same arguments, weights and behaviour as `{twin}` (return_sequences, return_state,
    go_backwards, masking, stateful, unroll, dropout, recurrent_dropout, ...), plus:

    Args:
        multiplier: forward multiplier (registry name, `Multiplier`, or ``"fp32"``).
        grad_input_multiplier: multiplier for the gradients w.r.t. the inputs and the hidden
            state (None: `multiplier`).
        grad_weight_multiplier: multiplier for the gradients w.r.t. kernel and
            recurrent_kernel (None: `multiplier`).

    `use_cudnn` is always False (the fused kernels multiply natively); True is an error.
    See the module docstring for which products are approximated and in which order.
"""


@keras.saving.register_keras_serializable(package="approxtrain")
class AMSimpleRNN(_AMRecurrent, keras.layers.SimpleRNN):
    __doc__ = "Fully-connected RNN, ``h_t = act(x_t . W + b + h_{t-1} . U)``, with AM products.\n" + _ARGS_DOC.format(
        twin="keras.layers.SimpleRNN"
    )

    keras_twin = keras.layers.SimpleRNN
    cell_class = AMSimpleRNNCell


@keras.saving.register_keras_serializable(package="approxtrain")
class AMGRU(_AMRecurrent, keras.layers.GRU):
    __doc__ = "Gated Recurrent Unit (both `reset_after` conventions) with AM products.\n" + _ARGS_DOC.format(
        twin="keras.layers.GRU"
    )

    keras_twin = keras.layers.GRU
    cell_class = AMGRUCell


@keras.saving.register_keras_serializable(package="approxtrain")
class AMLSTM(_AMRecurrent, keras.layers.LSTM):
    __doc__ = (
        "Long Short-Term Memory layer with AM products.\n"
        + _ARGS_DOC.format(twin="keras.layers.LSTM")
        + """
    approx_dropout: an `ApproxRandomDropout` with pattern "row" and group_size None (default
        None: none). In training, a fresh random subset K of the hidden units is kept for each
        batch of sequences, the same for every time step; the layer then runs as an LSTM of
        |K| units whose weights are the kept units' gate columns (and, for U, rows): every
        product -- x . W over the whole sequence and h . U at each step -- is compacted, so the
        dropped units cost no multiply. Outputs of dropped units are exact zeros; the kept
        outputs are scaled by units / |K| (the returned states are not scaled). Not combinable
        with dropout / recurrent_dropout. See docs/approx-dropout.md.
"""
    )

    keras_twin = keras.layers.LSTM
    cell_class = AMLSTMCell

    def __init__(self, *args, approx_dropout=None, **kwargs):
        super().__init__(*args, **kwargs)
        from approxtrain.layers.approx_dropout import dropout_argument

        self.approx_dropout = dropout_argument(approx_dropout)
        if self.approx_dropout is not None:
            d = self.approx_dropout
            if d.pattern != "row" or d.group_size is not None:
                raise ValueError(
                    f"AMLSTM approx_dropout drops whole hidden units for the whole batch: it needs pattern='row' "
                    f"and group_size=None, got pattern={d.pattern!r}, group_size={d.group_size!r}"
                )
            if self.cell.dropout or self.cell.recurrent_dropout:
                raise ValueError("AMLSTM: approx_dropout replaces dropout and recurrent_dropout; set those to 0")

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        if self.approx_dropout is not None and not self.approx_dropout.built:
            self.approx_dropout.build(sequences_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not training or self.approx_dropout is None or self.approx_dropout.rate == 0.0:
            return super().inner_loop(sequences, initial_state, mask, training)
        if keras.tree.is_nested(mask):
            mask = mask[0]
        return self._compacted_loop(sequences, initial_state, mask)

    def _compacted_loop(self, sequences, initial_state, mask):
        """The loop of the LSTM of the kept units only (see the class docstring)."""
        from approxtrain.layers import _dropout_patterns as patterns

        cell, units = self.cell, self.cell.units
        kept = self.approx_dropout.kept_units(units)[0]
        columns = ops.concatenate([kept + gate * units for gate in range(4)], axis=0)  # i, f, c~, o blocks
        kernel = ops.take(cell.kernel, columns, axis=1)
        recurrent_kernel = ops.take(ops.take(cell.recurrent_kernel, kept, axis=0), columns, axis=1)
        bias = ops.take(cell.bias, columns, axis=0) if cell.use_bias else None
        projected = gate_products(cell, sequences, kernel, None, 4, _moving_input_range(cell))

        def step(x_kernel, states, calibration):
            h_kernel = gate_products(cell, states[0], recurrent_kernel, None, 4, _calibrate(calibration, "recurrent"))
            return lstm_gates(cell, x_kernel, h_kernel, states[1], bias)

        states = [ops.take(s, kept, axis=-1) for s in initial_state]
        last, outputs, states = self.time_loop(step, projected, states, mask)
        scale = patterns.scale(units, self.approx_dropout.rate)
        last, outputs = (patterns.spread_last(t * scale, kept, units) for t in (last, outputs))
        return last, outputs, [patterns.spread_last(s, kept, units) for s in states]

    def get_config(self):
        config = super().get_config()
        if self.approx_dropout is not None:  # absent otherwise: configs stay those of the twin
            dropout = keras.saving.serialize_keras_object(self.approx_dropout)
            dropout.pop("build_config", None)
            config["approx_dropout"] = dropout
        return config
