"""The native kept-block product of row dropout (AMMatMulKept and its gradient ops,
approxtrain/ops/_matmul_kept.py): values and gradients against the NumPy AMSim, NaN columns of
non-finite dropped weights, errors, the layers' choice of path and its bits."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from approxtrain import layers as am  # noqa: E402
from approxtrain import models, multipliers  # noqa: E402
from approxtrain._op_library import library  # noqa: E402
from approxtrain.ops import _matmul_kept  # noqa: E402
import amsim_reference as ref  # noqa: E402
from test_approx_dropout import chain_gradients, chain_step  # noqa: E402

K, N, M = 9, 8, 5
ROWS = [0, 2, 3, 5, 8]  # kept rows of b (the kept units of the previous layer)
DROPPED = [1, 4, 6, 7]  # the others, in the order a pattern draw lists them
COLS = [1, 4, 6, 7]  # kept columns (this layer's kept units)


def ref_matmul(a, b, name):
    m = multipliers.get(name)
    return ref.matmul(a, b, m.lut, m.mantissa_bits, m.operand_rounding)


def data(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def weights():
    """b [K, N] with non-finite weights where the product must and must not see them."""
    b = data(2, (K, N))
    b[4, 6] = np.inf  # dropped row, kept column 6 (its 3rd): that column is NaN
    b[7, 1] = np.nan  # dropped row, kept column 1 (its 1st): NaN too
    b[1, 0] = -np.inf  # dropped row, dropped column: no effect
    b[2, 5] = np.inf  # kept row, dropped column: never read
    b[3, 7] = np.inf  # kept row and column: enters the products themselves
    return b


def test_op_tables_only_for_three_float_am_multipliers():
    assert _matmul_kept.op_tables("mbm7") is not None
    assert _matmul_kept.op_tables("mbm7", "bf16", "mitchell7") is not None
    assert _matmul_kept.op_tables("fp32") is None
    assert _matmul_kept.op_tables("mbm7", grad_weight_multiplier="fp32") is None
    assert _matmul_kept.op_tables("mul8s_exact") is None


@pytest.mark.parametrize("dropped", [DROPPED, []])
def test_values_and_gradients_equal_the_numpy_amsim_on_the_kept_block(dropped):
    a, b, c = data(1, (M, len(ROWS))), weights(), data(3, (M, len(COLS)))
    tables = _matmul_kept.op_tables("mbm7", "mitchell7", "bf16")  # a table per product
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        rows, cols, drop = (tf.constant(v, tf.int32) for v in (ROWS, COLS, dropped))
        y = _matmul_kept.matmul_kept(a_t, b_t, rows, cols, drop, tables)
        loss = tf.reduce_sum(y * c)  # dL/dy = c
    da, db = (g.numpy() for g in tape.gradient(loss, [a_t, b_t]))

    block = b[np.ix_(ROWS, COLS)]
    poisoned = np.array([not np.isfinite(b[dropped, j]).all() for j in COLS], bool)
    assert poisoned.tolist() == ([True, False, True, False] if dropped else [False] * 4)
    want = ref_matmul(a, block, "mbm7")
    want[:, poisoned] = np.nan
    np.testing.assert_array_equal(y.numpy(), want)
    assert np.isnan(want[:, 3]).any() or np.isinf(want[:, 3]).any()  # the kept inf did enter

    dy = np.where(poisoned[None, :], np.float32(0), c)  # a NaN column does not depend on the product
    np.testing.assert_array_equal(da, ref_matmul(dy, block.T, "mitchell7"))  # dy the table row
    want_db = np.zeros((K, N), np.float32)
    want_db[np.ix_(ROWS, COLS)] = ref_matmul(a.T, dy, "bf16")  # a^T the table row
    np.testing.assert_array_equal(db, want_db)
    outside = np.ones((K, N), bool)
    outside[np.ix_(ROWS, COLS)] = False
    assert not np.signbit(db[outside]).any()  # +0 where nothing was kept


@pytest.mark.parametrize("rows, cols", [([8, 0, 3], [5, 2, 7]), ([3, 0, 3], [5, 2, 2])])
def test_unsorted_and_repeated_indices_gather_and_sum_as_tensorflows_gather(rows, cols):
    """Any order gathers b[rows][:, cols]; a repeated row or column sums its gradients (onto +0)."""
    a, b, c = data(1, (M, 3)), data(2, (K, N)), data(3, (M, 3))
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch(b_t)
        rows_t, cols_t = tf.constant(rows, tf.int32), tf.constant(cols, tf.int32)
        y = _matmul_kept.matmul_kept(a_t, b_t, rows_t, cols_t, _matmul_kept.no_index(), _matmul_kept.op_tables("mbm7"))
        loss = tf.reduce_sum(y * c)
    db = tape.gradient(loss, b_t).numpy()
    np.testing.assert_array_equal(y.numpy(), ref_matmul(a, b[np.ix_(rows, cols)], "mbm7"))
    want = np.zeros((K, N), np.float32)
    np.add.at(want, (np.array(rows)[:, None], np.array(cols)[None, :]), ref_matmul(a.T, c, "mbm7"))
    np.testing.assert_array_equal(db, want)


@pytest.mark.parametrize("m, rows, cols", [(M, [], [1, 4]), (M, [0, 2], []), (0, [0, 2], [1, 4])])
def test_empty_sums_are_positive_zeros(m, rows, cols):
    """No kept row (forward and dW sum over nothing), no kept column (dX sums over nothing) or an
    empty batch (dW sums over nothing): each such output is +0, as AMMatMul gives for k = 0."""
    a, b, c = data(1, (m, len(rows))), data(2, (K, N)), data(3, (m, len(cols)))
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        rows_t, cols_t = tf.constant(rows, tf.int32), tf.constant(cols, tf.int32)
        y = _matmul_kept.matmul_kept(a_t, b_t, rows_t, cols_t, _matmul_kept.no_index(), _matmul_kept.op_tables("mbm7"))
        loss = tf.reduce_sum(y * c)
    da, db = (g.numpy() for g in tape.gradient(loss, [a_t, b_t]))
    want_y = ref_matmul(a, b[np.ix_(rows, cols)], "mbm7") if rows else np.zeros((m, len(cols)), np.float32)
    want_da = ref_matmul(c, b[np.ix_(rows, cols)].T, "mbm7") if cols else np.zeros((m, len(rows)), np.float32)
    want_db = np.zeros((K, N), np.float32)
    if m:
        want_db[np.ix_(rows, cols)] = ref_matmul(a.T, c, "mbm7")
    for got, want in ((y.numpy(), want_y), (da, want_da), (db, want_db)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not np.signbit(got[want == 0]).any()


def test_bad_indices_and_shapes_are_errors_naming_them():
    table = tf.constant(multipliers.get("mbm7").lut, tf.uint16)
    a, b = tf.constant(data(1, (M, 3))), tf.constant(data(2, (K, N)))

    def run(rows, cols, dropped=(), a=a):
        rows, cols, dropped = (tf.constant(list(v), tf.int32) for v in (rows, cols, dropped))
        return library().am_mat_mul_kept(a, b, table, rows, cols, dropped, operand_rounding="truncate")

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"AMMatMulKept: rows\[1\] = 9 is out of range \[0, 9\)"):
        run([0, 9, 2], [1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"AMMatMulKept: cols\[0\] = -1 is out of range \[0, 8\)"):
        run([0, 1, 2], [-1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dropped\[0\] = 12 is out of range \[0, 9\)"):
        run([0, 1, 2], [1], dropped=[12])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a \[5,3\] has 3 columns but 2 rows of b are kept"):
        run([0, 1], [1])


# --- the layers ------------------------------------------------------------------------------------


def chain(multiplier="mbm7", poisoned=None):
    """ApproxDropoutDense(10, row 0.5) -> ApproxDropoutDense(6, row 0.5) -> AMDense(4), fixed weights and
    seeds; `poisoned` (layer, row, column, value): a non-finite weight in layer 1 or 2's kernel."""
    fc1, fc2 = (
        am.ApproxDropoutDense(n, activation="relu", multiplier=multiplier, dropout=am.ApproxRandomDropout(0.5, seed=s))
        for n, s in ((10, 5), (6, 6))
    )
    fc3 = am.AMDense(4, multiplier=multiplier, grad_weight_multiplier="bf16" if multiplier == "mbm7" else None)
    layers = [fc1, fc2, fc3]
    for i, (layer, n_in, seed) in enumerate(((fc1, 12, 30), (fc2, 10, 32), (fc3, 6, 34))):
        layer.build((None, n_in))
        kernel = data(seed, (n_in, layer.units))
        if poisoned is not None and poisoned[0] == i:
            kernel[poisoned[1], poisoned[2]] = poisoned[3]
        layer.set_weights([kernel, data(seed + 1, (layer.units,))])
    return layers


def first_patterns():
    """(kept, dropped) units of fc1 and fc2 in a fresh chain's first training call."""
    fc1, fc2, _ = chain()
    return [[int(u) for u in d.kept_units(n).numpy()[0]] for d, n in ((fc1.dropout, 10), (fc2.dropout, 6))]


def op_types(layers, x):
    """The op types of one traced training step of the chain."""
    step = tf.function(lambda x: chain_gradients(layers, x))
    return [op.type for op in step.get_concrete_function(x).graph.get_operations()]


def tf_op_path(monkeypatch):
    """The layers as on a GPU machine: the TensorFlow-op path (gathers around AMMatMul)."""
    monkeypatch.setattr(_matmul_kept, "runs_natively", lambda: False)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", ["fc2 dropped row", "fc2 kept row", "fc3 dropped row"])
def test_native_and_tensorflow_paths_give_the_same_bits(monkeypatch, value, where):
    (kept1, kept2) = first_patterns()
    layer, kept = (1, kept1) if where.startswith("fc2") else (2, kept2)
    n_in = 10 if layer == 1 else 6
    row = kept[1] if "kept" in where else sorted(set(range(n_in)) - set(kept))[0]
    column = kept2[1] if layer == 1 else 3  # a unit fc2 keeps; any output of fc3
    poisoned = (layer, row, column, value)
    x = tf.constant(np.abs(data(9, (8, 12))) + 0.25)  # relu keeps every kept unit's value non-zero
    assert set(op_types(chain(poisoned=poisoned), x)) >= {"AMMatMulKept", "AMMatMulKeptGradA", "AMMatMulKeptGradB"}
    native = chain_step(chain(poisoned=poisoned), x)
    tf_op_path(monkeypatch)
    assert "AMMatMulKept" not in op_types(chain(poisoned=poisoned), x)
    reference = chain_step(chain(poisoned=poisoned), x)
    for got, want in zip(native, reference):
        np.testing.assert_array_equal(got, want)
    if "dropped" in where:  # 0 x inf in every row of that column (fc3's output: the whole row of NaN)
        assert np.isnan(native[0]).any()


def test_a_training_step_runs_the_native_ops_instead_of_gathers_and_am_matmul():
    keras.utils.set_random_seed(1)
    model = models.build("lenet300100", (28, 28, 1), 10, multiplier="mbm7", approx_dropout="row", dropout_rate=0.5)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)

    types = [op.type for op in step.get_concrete_function(tf.TensorSpec((16, 28, 28, 1))).graph.get_operations()]
    # fc1 (rows: all 784), fc2 (the block of fc1's kept units and its own), the logits (fc2's kept rows)
    assert [types.count(t) for t in ("AMMatMulKept", "AMMatMulKeptGradA", "AMMatMulKeptGradB")] == [3, 3, 3]
    assert "AMMatMul" not in types and "IsNan" not in types and "ScatterNd" in types


def test_with_a_gpu_visible_the_layers_keep_the_tensorflow_ops(monkeypatch):
    listed = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else listed(kind)
    )
    assert not _matmul_kept.runs_natively()
    types = op_types(chain(), tf.constant(data(9, (8, 12))))
    assert "AMMatMul" in types and "AMMatMulKept" not in types


@pytest.mark.parametrize("multiplier", ["fp32", "mul8s_exact"])
def test_fp32_and_integer_multipliers_keep_their_paths(multiplier):
    types = op_types(chain(multiplier), tf.constant(data(9, (8, 12))))
    assert "AMMatMulKept" not in types
    if multiplier == "fp32":
        assert "MatMul" in types
    else:  # the integer products (AMIntMatMul or its zero-point form)
        assert any(t.startswith("AMIntMatMul") for t in types)
