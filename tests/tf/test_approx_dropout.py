"""Approximate random dropout: exact values and gradients against NumPy, skipped multiplies,
patterns, seeds, errors, config and .keras files (approxtrain/layers/approx_dropout.py)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from approxtrain import models, multipliers  # noqa: E402
from approxtrain.ops import _matmul, _matmul_kept  # noqa: E402
import amsim_reference as ref  # noqa: E402

IN, UNITS = 12, 10


def am_ref_matmul(a, b):
    """The mbm7 product a . b by the independent NumPy AMSim (k ascending)."""
    m = multipliers.get("mbm7")
    return ref.matmul(a, b, m.lut, m.mantissa_bits, m.operand_rounding)


def data(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def fused(multiplier, pattern="row", rate=0.5, group_size=8, tile=(4, 3), seed=3, activation="relu", units=UNITS):
    dropout = am.ApproxRandomDropout(rate, pattern, tile=tile, group_size=group_size, seed=seed)
    layer = am.ApproxDropoutDense(units, activation=activation, multiplier=multiplier, dropout=dropout)
    layer.build((None, IN))
    layer.set_weights([data(10, (IN, units)), data(11, (units,))])
    return layer


def drawn(layer, draw, attribute="dropout"):
    """What `draw(dropout)` returns from the layer's current seed state, the state left as it was:
    the pattern the layer's next training call will use."""
    dropout = getattr(layer, attribute)
    state = [v.numpy() for v in dropout.variables]
    try:
        return draw(dropout).numpy()
    finally:
        for v, s in zip(dropout.variables, state):
            v.assign(s)


def group_slices(rows, group_size):
    """The row ranges of the groups (as _dropout_patterns.group_rows forms them)."""
    groups = -(-rows // group_size)
    per = -(-rows // groups)
    return [slice(g * per, min((g + 1) * per, rows)) for g in range(groups)]


def relu(v):
    return np.maximum(v, np.float32(0))


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("multiplier", ["mbm7", "fp32"])
def test_row_dropout_keeps_the_undropped_values_times_the_scale(multiplier):
    layer = fused(multiplier, rate=0.5, group_size=8)
    x = data(0, (20, IN))  # 3 groups of 7 rows (the last padded by one row)
    kept = drawn(layer, lambda d: d.kept_units(UNITS, 3))
    y = layer(x, training=True).numpy()
    full = am.AMDense(UNITS, activation="relu", multiplier=multiplier)
    full.build((None, IN))
    full.set_weights(layer.get_weights())
    undropped = full(x).numpy()
    if multiplier == "mbm7":  # the undropped layer itself against the independent NumPy AMSim
        w, b = layer.get_weights()
        np.testing.assert_array_equal(undropped, relu(am_ref_matmul(x, w) + b))
    assert kept.shape == (3, 5)
    for rows, units in zip(group_slices(20, 8), kept):
        dropped = np.setdiff1d(np.arange(UNITS), units)
        if multiplier == "mbm7":  # AM products and sums follow the canonical order: the same bits
            np.testing.assert_array_equal(y[rows][:, units], undropped[rows][:, units] * np.float32(2.0))
        else:  # a native matmul's blocking (hence its rounding) may depend on the operand shapes
            np.testing.assert_allclose(y[rows][:, units], undropped[rows][:, units] * np.float32(2.0), rtol=1e-5)
        assert np.all(y[rows][:, dropped] == 0) and not np.signbit(y[rows][:, dropped]).any()


def test_tile_dropout_equals_the_masked_kernel_bit_for_bit_mbm7():
    layer = fused("mbm7", pattern="tile", rate=0.5, group_size=None, tile=(4, 3))
    x = data(1, (6, IN))
    kept = drawn(layer, lambda d: d.kept_tiles(3, 4, 1))[0]  # 12 rows = 3 row tiles; 10 units = 4 blocks
    assert kept.shape == (4, 2)  # round(3 * 0.5) = 2 row tiles kept per column block
    mask = np.zeros((IN, 12), np.float32)
    for block, row_tiles in enumerate(kept):
        for t in row_tiles:
            mask[4 * t : 4 * t + 4, 3 * block : 3 * block + 3] = 1
    w, b = layer.get_weights()
    expected = relu(am_ref_matmul(x, w * mask[:, :UNITS]) * np.float32(3 / 2) + b)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), expected)


def test_tile_dropout_fp32_groups_match_the_masked_kernel():
    layer = fused("fp32", pattern="tile", rate=0.3, group_size=4, tile=(5, 4), activation=None)
    x = data(2, (11, IN))  # 3 groups of 4, 4, 3 rows; 12 inputs = 3 row tiles (last one partial)
    kept = drawn(layer, lambda d: d.kept_tiles(3, 3, 3))
    assert kept.shape == (3, 3, 2)  # round(3 * 0.7) = 2
    y = layer(x, training=True).numpy()
    w, b = layer.get_weights()
    for rows, group in zip(group_slices(11, 4), kept):
        mask = np.zeros((15, 12), np.float32)
        for block, row_tiles in enumerate(group):
            for t in row_tiles:
                mask[5 * t : 5 * t + 5, 4 * block : 4 * block + 4] = 1
        expected = (x[rows] @ (w * mask[:IN, :UNITS])) * np.float32(3 / 2) + b
        np.testing.assert_allclose(y[rows], expected, rtol=1e-5, atol=1e-5)


def test_inference_is_the_undropped_layer_and_standalone_dropout_is_identity():
    layer = fused("mbm7")
    full = am.AMDense(UNITS, activation="relu", multiplier="mbm7")
    full.build((None, IN))
    full.set_weights(layer.get_weights())
    x = data(3, (9, IN))
    np.testing.assert_array_equal(layer(x).numpy(), full(x).numpy())
    np.testing.assert_array_equal(layer(x, training=False).numpy(), full(x).numpy())
    dropout = am.ApproxRandomDropout(0.5, seed=1)
    np.testing.assert_array_equal(dropout(x, training=False).numpy(), x)


def test_standalone_row_dropout_zeroes_whole_features_per_group():
    dropout = am.ApproxRandomDropout(0.25, group_size=5, seed=4)
    x = np.abs(data(4, (2, 5, 8))) + 1  # 10 rows, 2 groups; no zero input
    y = dropout(x, training=True).numpy().reshape(10, 8)
    for rows in (slice(0, 5), slice(5, 10)):
        kept = np.all(y[rows] != 0, axis=0)
        assert np.all(np.all(y[rows] == 0, axis=0) == ~kept)
        assert kept.sum() == 6  # round(8 * 0.75)
        np.testing.assert_array_equal(y[rows][:, kept], x.reshape(10, 8)[rows][:, kept] * np.float32(8 / 6))


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("xla", [False, True])  # the kept columns gathered by TensorFlow or XLA
def test_dropped_units_get_exactly_zero_gradient_and_kept_ones_the_compacted_products(monkeypatch, xla):
    from approxtrain.layers import _kept_units

    monkeypatch.setattr(_kept_units, "XLA_MIN_ELEMENTS", 1 if xla else 10**9)
    layer = fused("mbm7", rate=0.5, group_size=None, activation=None)
    x = tf.constant(data(5, (7, IN)))
    c = data(6, (7, UNITS))  # loss = sum(y * c): dL/dy = c
    kept = drawn(layer, lambda d: d.kept_units(UNITS, 1))[0]
    dropped = np.setdiff1d(np.arange(UNITS), kept)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) * c)
    dx, dw, db = (tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [x, layer.kernel, layer.bias]))
    w = layer.kernel.numpy()
    dy = c[:, kept] * np.float32(2.0)  # the gradient reaching the compacted product
    np.testing.assert_array_equal(dx, am_ref_matmul(dy, w[:, kept].T))  # dY is the table row
    np.testing.assert_array_equal(dw[:, kept], am_ref_matmul(x.numpy().T, dy))  # X^T is the table row
    np.testing.assert_array_equal(dw[:, dropped], 0)
    np.testing.assert_array_equal(db[dropped], 0)
    np.testing.assert_allclose(db[kept], dy.sum(0), rtol=1e-6)


def test_grouped_gradients_vanish_for_units_no_group_kept():
    layer = fused("fp32", rate=0.7, group_size=4, activation=None)
    x = tf.constant(data(7, (8, IN)))  # 2 groups of 4
    kept = drawn(layer, lambda d: d.kept_units(UNITS, 2))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * data(8, (8, UNITS)))
    dw, db = (tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [layer.kernel, layer.bias]))
    used = np.isin(np.arange(UNITS), kept)
    assert not used.all()  # 3 of 10 per group: some unit is dropped by both groups
    np.testing.assert_array_equal(dw[:, ~used], 0)
    np.testing.assert_array_equal(db[~used], 0)
    assert np.all(np.any(dw[:, used] != 0, axis=0))


# --- the multiplies really disappear -----------------------------------------------------------


def gemm_shapes(monkeypatch):
    """Record the operand shapes and transposes of every AM GEMM (forward and gradients): those of
    AMMatMul, and those the native kept-block ops run (approxtrain/ops/_matmul_kept.py, on the CPU),
    their B being the gathered block [kept rows, kept columns]."""
    calls = []
    original, original_kept = _matmul.gemm, _matmul_kept.kept_gemm

    def recording(a, b, op_table, transpose_a=False, transpose_b=False):
        calls.append((tuple(a.shape), tuple(b.shape), transpose_a, transpose_b))
        return original(a, b, op_table, transpose_a, transpose_b)

    def recording_kept(op, matrices, indices, op_table):
        block = (indices[0].shape[0], indices[1].shape[0])
        calls.append(
            {
                "am_mat_mul_kept": (tuple(matrices[0].shape), block, False, False),  # a . block
                "am_mat_mul_kept_grad_a": (tuple(matrices[0].shape), block, False, True),  # dY . block^T
                "am_mat_mul_kept_grad_b": (tuple(matrices[0].shape), tuple(matrices[1].shape), True, False),  # a^T . dY
            }[op]
        )
        return original_kept(op, matrices, indices, op_table)

    monkeypatch.setattr(_matmul, "gemm", recording)
    monkeypatch.setattr(_matmul_kept, "kept_gemm", recording_kept)
    return calls


def test_am_products_run_on_compacted_operands_forward_and_backward(monkeypatch):
    calls = gemm_shapes(monkeypatch)
    rows = fused("mbm7", rate=0.5, group_size=4)
    tiles = fused("mbm7", pattern="tile", rate=0.5, group_size=4, tile=(4, 5))
    one_pattern = fused("mbm7", rate=0.7, group_size=None)
    x = tf.constant(data(9, (8, IN)))  # 2 groups of 4 rows
    for layer in (rows, tiles, one_pattern):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        tape.gradient(loss, [x, layer.kernel])
    assert calls == [
        # row: 5 of 10 units per group; forward, dX = dY . W^T, dW = X^T . dY
        ((2, 4, IN), (2, IN, 5), False, False),
        ((2, 4, 5), (2, IN, 5), False, True),
        ((2, 4, IN), (2, 4, 5), True, False),
        # tile: 3 row tiles of 4 -> 2 kept in each of 2 column blocks of 5 units
        ((2, 2, 4, 8), (2, 2, 8, 5), False, False),
        ((2, 2, 4, 5), (2, 2, 8, 5), False, True),
        ((2, 2, 4, 8), (2, 2, 4, 5), True, False),
        # one pattern for the batch: plain 2-D products, 3 of 10 units (the kept kernel columns
        # gathered as they lie: no transposed operand, so the weight gradient needs no transpose)
        ((8, IN), (IN, 3), False, False),
        ((8, 3), (IN, 3), False, True),
        ((8, IN), (8, 3), True, False),
    ]


def test_fp32_products_run_on_compacted_operands():
    layer = fused("fp32", rate=0.5, group_size=None)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, [x, layer.kernel])

    graph = step.get_concrete_function(tf.TensorSpec((6, IN), tf.float32)).graph
    products = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3")]
    shapes = sorted(tuple(tuple(t.shape) for t in op.inputs) for op in products)
    # 5 of 10 units: the kept kernel columns [IN, 5]; dX = dY . W^T, dW = X^T . dY
    assert shapes == sorted([((6, IN), (IN, 5)), ((6, 5), (IN, 5)), ((6, IN), (6, 5))])


# --- the next layer skips the dropped units too (_kept_units) ----------------------------------


def dropout_chain(multiplier, consumer_multiplier=None, poisoned=None):
    """Input [*, IN] -> ApproxDropoutDense(10, row 0.5) -> ApproxDropoutDense(6, row 0.5) -> AMDense(4),
    one pattern per batch, fixed seeds and weights; `poisoned` (row, column): an inf in fc2's kernel."""
    consumer_multiplier = consumer_multiplier or multiplier
    fc1 = am.ApproxDropoutDense(
        UNITS, activation="relu", multiplier=multiplier, dropout=am.ApproxRandomDropout(0.5, seed=21)
    )
    fc2 = am.ApproxDropoutDense(
        6, activation="relu", multiplier=consumer_multiplier, dropout=am.ApproxRandomDropout(0.5, seed=22)
    )
    fc3 = am.AMDense(4, multiplier=consumer_multiplier)
    for layer, n_in, seed in ((fc1, IN, 30), (fc2, UNITS, 32), (fc3, 6, 34)):
        layer.build((None, n_in))
        kernel = data(seed, (n_in, layer.units))
        if layer is fc2 and poisoned is not None:
            kernel[poisoned] = np.inf
        layer.set_weights([kernel, data(seed + 1, (layer.units,))])
    return [fc1, fc2, fc3]


def chain_gradients(layers, x):
    """(output, gradients w.r.t. x and every weight) of one training call of the chain, as tensors
    (traceable by tf.function)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = x
        for layer in layers:
            h = layer(h, training=True)
        loss = tf.reduce_sum(h * h)
    weights = [w for layer in layers for w in layer.trainable_weights]
    return [h] + [tf.convert_to_tensor(g) for g in tape.gradient(loss, [x] + weights)]


def chain_step(layers, x):
    """chain_gradients as NumPy arrays."""
    return [t.numpy() for t in chain_gradients(layers, x)]


def without_compaction(monkeypatch):
    from approxtrain.layers import _kept_units

    monkeypatch.setattr(_kept_units, "of", lambda inputs, n_in: None)


@pytest.mark.parametrize("multiplier", ["mbm7", "fp32"])
def test_next_layers_skip_dropped_units_bit_for_bit(monkeypatch, multiplier):
    x = tf.constant(data(9, (8, IN)))
    calls = gemm_shapes(monkeypatch)
    compact = chain_step(dropout_chain(multiplier), x)
    compact_calls = list(calls)
    without_compaction(monkeypatch)
    full = chain_step(dropout_chain(multiplier), x)
    for got, want in zip(compact, full):
        if multiplier == "fp32":  # TF's own matmul: its summation order depends on k, so only close
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        else:
            np.testing.assert_array_equal(got, want)
    if multiplier == "mbm7":  # fc2 multiplies only fc1's 5 kept units, fc3 only fc2's 3
        # the kept kernel columns (fc2: of its kept rows) are gathered as they lie: no transposes
        assert compact_calls[:2] == [((8, IN), (IN, 5), False, False), ((8, 5), (5, 3), False, False)]
        assert compact_calls[2] == ((8, 3), (3, 4), False, False)
        assert calls[len(compact_calls) : len(compact_calls) + 3] == [
            ((8, IN), (IN, 5), False, False),
            ((8, UNITS), (UNITS, 3), False, False),
            ((8, 6), (6, 4), False, False),
        ]


def test_next_layers_skip_dropped_units_in_a_compiled_fit():
    """In model.fit (a tf.function) the consumers take the compact values: the spread is unused."""
    from approxtrain.layers import _kept_units

    hits = []
    original = _kept_units.product

    def counting(layer, x, kernel, stash=None, kept_columns=None):
        if stash is not None:
            hits.append(tuple(kernel.shape))
        return original(layer, x, kernel, stash, kept_columns)

    keras.utils.set_random_seed(1)
    model = models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7", approx_dropout="row", dropout_rate=0.5)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    _kept_units.product, saved = counting, _kept_units.product
    try:
        model.fit(data(1, (16, 28, 28, 1)), np.zeros(16, np.int64), batch_size=16, epochs=1, verbose=0)
    finally:
        _kept_units.product = saved
    assert set(hits) == {(300, 100), (100, 10)}


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("row", ["dropped", "kept"])
def test_a_nonfinite_weight_poisons_exactly_the_columns_the_full_product_does(monkeypatch, value, row):
    """In a dropped row, inf and NaN make their whole column NaN (0 x inf); in a kept row they
    enter the compact product itself: compact and full agree either way, column by column."""
    x = tf.constant(np.abs(data(9, (8, IN))) + 0.5)
    fc1, fc2, _ = dropout_chain("mbm7")
    kept1 = drawn(fc1, lambda d: d.kept_units(UNITS))[0]
    unit = sorted(set(range(UNITS)) - set(kept1))[1] if row == "dropped" else int(kept1[2])
    column = int(drawn(fc2, lambda d: d.kept_units(6))[0][1])

    def second_layer():
        layers = dropout_chain("mbm7", poisoned=(unit, column))
        return layers[1](layers[0](x, training=True), training=True).numpy()

    compact = second_layer()
    without_compaction(monkeypatch)
    full = second_layer()
    np.testing.assert_array_equal(compact, full)
    assert not np.isnan(np.delete(full, column, axis=1)).any()
    if row == "dropped":
        assert np.isnan(full[:, column]).all()


@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("kept", [[1, 2, 8], [0, 3, 4, 5, 6, 7], [], list(range(9))])
def test_kept_columns_have_tensorflows_values_and_gradients_densely(monkeypatch, kept, xla):
    """_kept_units.columns (TensorFlow's ops, or XLA's for large matrices): TensorFlow's gather
    values, and its gradient (made dense) bit for bit -- the kept columns' gradients in place,
    +0 elsewhere -- as one dense tensor."""
    from approxtrain.layers import _kept_units

    monkeypatch.setattr(_kept_units, "XLA_MIN_ELEMENTS", 1 if xla else 10**9)
    matrix = tf.constant(data(40, (7, 9)))
    kept = tf.constant(kept, tf.int32)
    d_out = data(41, (7, len(kept)))
    results = []
    for gather in (lambda m: tf.gather(m, kept, axis=1), lambda m: _kept_units.columns(m, kept)):
        with tf.GradientTape() as tape:
            tape.watch(matrix)
            out = gather(matrix)
            loss = tf.reduce_sum(out * d_out)
        results.append((out.numpy(), tape.gradient(loss, matrix)))
    (want, want_grad), (got, got_grad) = results
    assert not isinstance(got_grad, tf.IndexedSlices)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_grad.numpy(), tf.convert_to_tensor(want_grad).numpy())
    dropped = np.setdiff1d(np.arange(9), kept.numpy())
    assert np.all(got_grad.numpy()[:, dropped] == 0) and not np.signbit(got_grad.numpy()[:, dropped]).any()


def test_a_nonfinite_weight_of_a_dropped_unit_poisons_its_column_as_the_full_product(monkeypatch):
    x = tf.constant(np.abs(data(9, (8, IN))))
    fc1, fc2, _ = dropout_chain("mbm7")
    dropped = sorted(set(range(UNITS)) - set(drawn(fc1, lambda d: d.kept_units(UNITS))[0]))
    column = int(drawn(fc2, lambda d: d.kept_units(6))[0][0])  # a unit fc2 keeps
    layers = dropout_chain("mbm7", poisoned=(dropped[0], column))
    compact = layers[1](layers[0](x, training=True), training=True).numpy()
    without_compaction(monkeypatch)
    layers = dropout_chain("mbm7", poisoned=(dropped[0], column))
    full = layers[1](layers[0](x, training=True), training=True).numpy()
    np.testing.assert_array_equal(compact, full)
    assert np.isnan(full[:, column]).all()  # 0 x inf in every row
    assert not np.isnan(np.delete(full, column, axis=1)).any()


def test_an_integer_consumer_takes_the_full_input(monkeypatch):
    x = tf.constant(data(9, (8, IN)))
    compact = chain_step(dropout_chain("mbm7", consumer_multiplier="mul8s_exact"), x)
    without_compaction(monkeypatch)
    full = chain_step(dropout_chain("mbm7", consumer_multiplier="mul8s_exact"), x)
    for got, want in zip(compact, full):
        np.testing.assert_array_equal(got, want)


def test_dropout_report_counts_the_products_the_training_call_runs(monkeypatch):
    """The skipped share equals 1 - (the forward products a training call runs) / (the dense count),
    both counted per example: the first from the GEMM shapes recorded in the call."""
    from approxtrain.sparsity import dropout_report

    model = models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7", approx_dropout="row", dropout_rate=0.3)
    calls = gemm_shapes(monkeypatch)
    model(data(2, (4, 28, 28, 1)), training=True)
    run = sum(np.prod(a) * (b[0] if transpose_b else b[1]) for a, b, _, transpose_b in calls) / 4
    dense = 784 * 300 + 300 * 100 + 100 * 10
    report = dropout_report(model)
    assert run == 784 * 210 + 210 * 70 + 70 * 10  # round(300 * 0.7) and round(100 * 0.7) kept
    assert report["multiplies_skipped"] == pytest.approx(1 - run / dense, rel=1e-12)
    assert dropout_report(models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7"))["multiplies_skipped"] == 0


# --- patterns and seeds ------------------------------------------------------------------------


def kept_columns(layer, x):
    y = layer(x, training=True).numpy()
    return tuple(np.flatnonzero(np.any(y != 0, axis=0)))


def test_row_pattern_is_redrawn_each_step_and_keeps_exactly_its_share():
    for rate, units, expected in ((0.5, 300, 150), (0.3, 10, 7), (0.9, 10, 1)):
        layer = fused("fp32", rate=rate, group_size=None, activation=None, units=units)
        x = tf.constant(np.abs(data(12, (4, IN))) + 1)
        patterns = [kept_columns(layer, x) for _ in range(4)]
        assert all(len(p) == expected for p in patterns)
        if expected < units - 1:
            assert len(set(patterns)) == 4


def test_one_pattern_split_is_the_top_k_draw_and_its_complement():
    """kept: the k largest draws, equal ones ranked by index (NumPy's stable argsort as the
    reference), ascending -- the set random_subsets picks; dropped: every other unit once."""
    from approxtrain.layers import _dropout_patterns as patterns

    rng = np.random.default_rng(31)
    for n, k, levels in ((10, 5, 4), (300, 150, 1 << 23), (37, 1, 3), (37, 36, 3), (8, 8, 2)):
        uniform = (rng.integers(0, levels, n) / levels).astype(np.float32)  # few levels: many ties
        kept, dropped = (t.numpy() for t in patterns.random_split(tf.constant(uniform), k))
        np.testing.assert_array_equal(kept, np.sort(np.argsort(-uniform, kind="stable")[:k]))
        np.testing.assert_array_equal(kept, patterns.random_subsets(tf.constant(uniform[None]), k).numpy()[0])
        np.testing.assert_array_equal(np.sort(np.concatenate([kept, dropped])), np.arange(n))
        assert kept.dtype == dropped.dtype == np.int32


def test_row_pattern_is_uniform_over_units_and_pairs():
    """Every unit is kept with probability kept/n, every pair of units with the probability of a
    uniformly random subset of that size (what the layer draws at each training step)."""
    dropout = am.ApproxRandomDropout(0.3, seed=12)  # 7 of 10 kept
    draws = 2000
    masks = np.zeros((draws, 10), bool)
    for i in range(draws):
        kept, dropped = (t.numpy() for t in dropout.kept_and_dropped_units(10))
        assert len(kept) == 7 and np.all(np.diff(kept) > 0) and set(kept).isdisjoint(dropped)
        masks[i, kept] = True
    share = masks.mean(0)
    np.testing.assert_allclose(share, 0.7, atol=4 * np.sqrt(0.21 / draws))
    pairs = (masks[:, :, None] & masks[:, None, :]).mean(0)[np.triu_indices(10, 1)]
    both = 7 * 6 / (10 * 9)  # P(two given units are both in a uniform 7-subset of 10)
    np.testing.assert_allclose(pairs, both, atol=4 * np.sqrt(both * (1 - both) / draws))


def test_tile_pattern_keeps_each_tile_at_the_rate_on_average():
    dropout = am.ApproxRandomDropout(0.5, "tile", seed=11)
    draws = np.stack([dropout.kept_tiles(4, 3).numpy()[0] for _ in range(400)])  # [400, 3, 2]
    assert draws.shape == (400, 3, 2) and np.all(draws[..., 0] < draws[..., 1])  # sorted, distinct
    share = np.stack([np.isin(np.arange(4), d).astype(float) for d in draws.reshape(-1, 2)]).mean(0)
    np.testing.assert_allclose(share, 0.5, atol=0.05)


def test_seeds_reproduce_the_pattern_stream():
    x = tf.constant(np.abs(data(13, (4, IN))) + 1)
    a, b, c = (fused("fp32", seed=s, activation=None) for s in (7, 7, 8))
    stream_a = [kept_columns(a, x) for _ in range(3)]
    assert stream_a == [kept_columns(b, x) for _ in range(3)]
    assert stream_a != [kept_columns(c, x) for _ in range(3)]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rate=1.0), "dropout rate must be a number in [0, 1), got 1.0"),
        (dict(rate=-0.1), "dropout rate must be a number in [0, 1), got -0.1"),
        (dict(rate="0.5"), "dropout rate must be a number in [0, 1), got '0.5'"),
        (dict(rate=True), "dropout rate must be a number in [0, 1), got True"),
        (dict(rate=0.5, pattern="column"), "dropout pattern must be one of 'row', 'tile', got 'column'"),
        (dict(rate=0.5, tile=0), "tile must be a positive int or a pair of positive ints (rows, cols), got 0"),
        (dict(rate=0.5, tile=(4,)), "tile must be a positive int or a pair of positive ints (rows, cols), got (4,)"),
        (
            dict(rate=0.5, tile=(4, 0)),
            "tile must be a positive int or a pair of positive ints (rows, cols), got (4, 0)",
        ),
        (dict(rate=0.5, group_size=0), "group_size must be a positive int or None, got 0"),
        (dict(rate=0.5, seed=1.5), "seed must be an int or None, got 1.5"),
    ],
)
def test_bad_arguments_are_errors_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        am.ApproxRandomDropout(**kwargs)
    assert str(info.value) == message


def test_misuse_errors():
    with pytest.raises(ValueError) as info:
        am.ApproxDropoutDense(4, multiplier="fp32", dropout=0.5)
    assert str(info.value) == "dropout must be an ApproxRandomDropout or None, got 0.5"
    with pytest.raises(ValueError, match="pattern='tile' drops tiles of a weight matrix; use it as ApproxDropoutDense"):
        am.ApproxRandomDropout(0.5, "tile", name="t")(np.ones((2, 3), np.float32), training=True)
    with pytest.raises(ValueError) as info:
        models.build("lenet300100", (28, 28, 1), 10, approx_dropout="column")
    assert str(info.value) == "approx_dropout must be one of 'row', 'tile' or None, got 'column'"
    with pytest.raises(ValueError) as info:
        models.build("lenet300100", (28, 28, 1), 10, approx_dropout="row", dropout_rate=1.5)
    assert str(info.value) == "dropout_rate must be a number in [0, 1), got 1.5"


# --- config, .keras files, zoo -----------------------------------------------------------------


def test_config_round_trip_and_keras_file(tmp_path):
    inputs = keras.Input((IN,))
    h = am.ApproxDropoutDense(
        16,
        activation="relu",
        multiplier="mbm7",
        grad_weight_multiplier="fp32",
        dropout=am.ApproxRandomDropout(0.4, "tile", tile=(4, 8), group_size=None, seed=2),
        name="fused",
    )(inputs)
    h = am.ApproxRandomDropout(0.25, group_size=2, seed=9, name="alone")(h)
    model = keras.Model(inputs, am.AMDense(3, multiplier="mbm7", name="out")(h))
    layer = model.get_layer("fused")
    copy = am.ApproxDropoutDense.from_config(layer.get_config())
    assert copy.get_config() == layer.get_config()
    assert layer.get_config()["dropout"]["config"]["tile"] == [4, 8]
    x = data(14, (5, IN))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("fused")) is am.ApproxDropoutDense
    assert loaded.get_layer("fused").get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    # the seeds travel in the config: the loaded model draws the original's pattern stream
    for _ in range(2):
        np.testing.assert_array_equal(loaded(x, training=True).numpy(), model(x, training=True).numpy())


def test_zoo_options_build_fused_layers_with_the_run_multiplier():
    model = models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7", approx_dropout="row", dropout_rate=0.3)
    for name in ("fc1", "fc2"):
        layer = model.get_layer(name)
        assert type(layer) is am.ApproxDropoutDense and layer.multiplier == "mbm7"
        assert (layer.dropout.rate, layer.dropout.pattern) == (0.3, "row")
    assert type(model.get_layer("logits")) is am.AMDense
    assert model.get_layer("fc1").dropout.group_size is None  # the paper's: one pattern per batch
    assert model.count_params() == models.build("lenet300100", (28, 28, 1), 10).count_params()
    head = models.build("lenet5", (28, 28, 1), 10, approx_dropout="tile")
    assert head.get_layer("fc2").dropout.pattern == "tile" and head.get_layer("fc2").dropout.rate == 0.5
    plain = models.build("lenet300100", (28, 28, 1), 10, dropout_rate=0.2)
    assert [type(layer).__name__ for layer in plain.layers].count("Dropout") == 2
    assert not any(isinstance(layer, am.ApproxDropoutDense) for layer in models.build("lenet5", (28, 28, 1), 10).layers)


def test_fit_trains_with_approx_dropout():
    keras.utils.set_random_seed(0)
    # groups of 8 examples, each with its own pattern, train at the usual SGD rates (one pattern
    # for the whole batch needs a smaller step; see _dropout_patterns, "Groups")
    model = models.build("lenet300100", (8, 8, 1), 4, multiplier="mbm7", approx_dropout="row", dropout_group_size=8)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(15)
    y = rng.integers(0, 4, 320)
    x = ((rng.standard_normal((320, 8, 8, 1)) * 0.3 + y[:, None, None, None]) / 4).astype(np.float32)
    history = model.fit(x[:256], y[:256], batch_size=32, epochs=4, verbose=0).history["loss"]
    assert np.all(np.diff(history) < 0), history
    assert model.evaluate(x[256:], y[256:], verbose=0)[1] > 0.6  # chance: 0.25


# --- AMLSTM: whole hidden units dropped per batch of sequences ---------------------------------

LSTM_UNITS = 6


def lstm_with_dropout(rate=0.5, seed=5, **kwargs):
    layer = am.AMLSTM(
        LSTM_UNITS,
        multiplier="mbm7",
        approx_dropout=am.ApproxRandomDropout(rate, seed=seed),
        **kwargs,
    )
    layer.build((None, 5, 4))
    rng = np.random.default_rng(21)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in layer.get_weights()])
    return layer


def kept_lstm_weights(layer, kept):
    """The weights of the LSTM of the kept units: their gate columns (and rows of U)."""
    kernel, recurrent, bias = layer.get_weights()
    columns = np.concatenate([kept + gate * LSTM_UNITS for gate in range(4)])
    return [kernel[:, columns], recurrent[kept][:, columns], bias[columns]]


def test_lstm_dropped_units_are_zero_at_every_step_and_kept_ones_a_smaller_lstm_bit_for_bit():
    layer = lstm_with_dropout(return_sequences=True, return_state=True)
    x = data(20, (3, 5, 4))
    kept = drawn(layer, lambda d: d.kept_units(LSTM_UNITS), "approx_dropout")[0]
    assert len(kept) == 3
    outputs, h, c = (t.numpy() for t in layer(x, training=True))
    small = am.AMLSTM(3, multiplier="mbm7", return_sequences=True, return_state=True)
    small.build((None, 5, 4))
    small.set_weights(kept_lstm_weights(layer, kept))
    small_outputs, small_h, small_c = (t.numpy() for t in small(x))
    dropped = np.setdiff1d(np.arange(LSTM_UNITS), kept)
    np.testing.assert_array_equal(outputs[..., kept], small_outputs * np.float32(2.0))
    np.testing.assert_array_equal(outputs[..., dropped], 0)
    np.testing.assert_array_equal(h[:, kept], small_h)  # states: not scaled
    np.testing.assert_array_equal(c[:, kept], small_c)
    np.testing.assert_array_equal(np.concatenate([h[:, dropped], c[:, dropped]]), 0)


def test_lstm_dropped_units_get_zero_gradient_and_products_are_compacted(monkeypatch):
    layer = lstm_with_dropout()
    x = tf.constant(data(22, (3, 5, 4)))
    kept = drawn(layer, lambda d: d.kept_units(LSTM_UNITS), "approx_dropout")[0]
    calls = gemm_shapes(monkeypatch)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * data(23, (3, LSTM_UNITS)))
    dw, du, db = (tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, layer.trainable_weights))
    dropped = np.setdiff1d(np.arange(LSTM_UNITS), kept)
    dropped_columns = np.concatenate([dropped + gate * LSTM_UNITS for gate in range(4)])
    np.testing.assert_array_equal(dw[:, dropped_columns], 0)
    np.testing.assert_array_equal(du[:, dropped_columns], 0)
    np.testing.assert_array_equal(du[dropped], 0)
    np.testing.assert_array_equal(db[dropped_columns], 0)
    assert np.all(np.any(dw != 0, axis=0) == ~np.isin(np.arange(4 * LSTM_UNITS), dropped_columns))
    # forward: x . W of the whole sequence once, then h . U per step -- all with 3 of 6 units
    assert calls[0] == ((15, 4), (4, 12), False, False)
    assert set(calls[1:]) >= {((3, 3), (3, 12), False, False)}
    assert not any(d in (LSTM_UNITS, 4 * LSTM_UNITS) for a, b, _, _ in calls for d in a + b)  # nor in the gradients


def test_lstm_inference_is_the_plain_layer_and_config_round_trips(tmp_path):
    layer = lstm_with_dropout(return_sequences=True)
    plain = am.AMLSTM(LSTM_UNITS, multiplier="mbm7", return_sequences=True)
    plain.build((None, 5, 4))
    plain.set_weights(layer.get_weights())
    x = data(24, (2, 5, 4))
    np.testing.assert_array_equal(layer(x).numpy(), plain(x).numpy())
    config = layer.get_config()
    assert config["approx_dropout"]["config"]["rate"] == 0.5 and "approx_dropout" not in plain.get_config()
    assert am.AMLSTM.from_config(config).get_config() == config
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, lstm_with_dropout(seed=6)(inputs))
    model.save(tmp_path / "lstm.keras")
    loaded = keras.models.load_model(tmp_path / "lstm.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    np.testing.assert_array_equal(loaded(x, training=True).numpy(), model(x, training=True).numpy())


def test_lstm_approx_dropout_errors():
    for dropout, message in (
        (am.ApproxRandomDropout(0.5, "tile"), "pattern='tile', group_size=None"),
        (am.ApproxRandomDropout(0.5, group_size=4), "pattern='row', group_size=4"),
    ):
        with pytest.raises(ValueError) as info:
            am.AMLSTM(4, multiplier="mbm7", approx_dropout=dropout)
        assert str(info.value) == (
            "AMLSTM approx_dropout drops whole hidden units for the whole batch: it needs pattern='row' "
            f"and group_size=None, got {message}"
        )
    with pytest.raises(ValueError) as info:
        am.AMLSTM(4, multiplier="mbm7", recurrent_dropout=0.2, approx_dropout=am.ApproxRandomDropout(0.5))
    assert str(info.value) == "AMLSTM: approx_dropout replaces dropout and recurrent_dropout; set those to 0"
