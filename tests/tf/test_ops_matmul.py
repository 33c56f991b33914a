"""approxtrain.ops.matmul: native agreement (bf16 table), bit-exactness (random table), errors."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import amsim_reference as ref  # noqa: E402
from _compare import assert_bits_equal, assert_close_to_native, bf16_values  # noqa: E402

from approxtrain import ops  # noqa: E402


def _op(x, transpose):
    return np.swapaxes(x, -1, -2) if transpose else x


def _am_and_grads(a, b, g, multiplier, **kwargs):
    a, b = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        c = ops.matmul(a, b, multiplier, **kwargs)
    da, db = tape.gradient(c, [a, b], output_gradients=tf.constant(g))
    return c.numpy(), da.numpy(), db.numpy()


# (a shape, b shape, transpose_a, transpose_b)
NATIVE_CASES = [
    ((3, 5), (5, 4), False, False),
    ((5, 3), (5, 4), True, False),
    ((3, 5), (4, 5), False, True),
    ((5, 3), (4, 5), True, True),
    ((2, 3, 5), (5, 4), False, False),  # shared weight (dense layer)
    ((2, 5, 3), (4, 5), True, True),
    ((3, 5), (2, 5, 4), False, False),  # shared left operand
    ((2, 1, 3, 5), (1, 4, 5, 6), False, False),  # both broadcast
    ((1, 3, 5), (4, 5, 6), False, False),
    ((2, 3, 5), (2, 4, 5), False, True),
    ((4, 300), (300, 3), False, False),  # long sums
]


@pytest.mark.parametrize("a_shape,b_shape,ta,tb", NATIVE_CASES)
def test_bf16_table_matches_native_matmul_and_gradients(bf16, a_shape, b_shape, ta, tb):
    rng = np.random.default_rng(7)
    a, b = bf16_values(rng, a_shape), bf16_values(rng, b_shape)
    c_native = np.matmul(_op(a, ta), _op(b, tb))
    g = bf16_values(rng, c_native.shape)
    c, da, db = _am_and_grads(a, b, g, bf16, transpose_a=ta, transpose_b=tb)

    at, bt, gt = tf.constant(a), tf.constant(b), tf.constant(g)
    with tf.GradientTape() as tape:
        tape.watch([at, bt])
        cn = tf.linalg.matmul(at, bt, transpose_a=ta, transpose_b=tb)
    da_n, db_n = tape.gradient(cn, [at, bt], output_gradients=gt)

    abs_a, abs_b, abs_g = np.abs(_op(a, ta)), np.abs(_op(b, tb)), np.abs(g)
    assert_close_to_native(c, cn.numpy(), np.matmul(abs_a, abs_b), "forward")
    # d op(a) = g . op(b)^T summed over broadcast axes; the bound uses the same sums of |products|.
    bound_a = np.matmul(abs_g, np.swapaxes(abs_b, -1, -2))
    bound_b = np.matmul(np.swapaxes(abs_a, -1, -2), abs_g)
    bound_a = _unbroadcast(_op(bound_a, ta), a.shape)
    bound_b = _unbroadcast(_op(bound_b, tb), b.shape)
    assert_close_to_native(da, da_n.numpy(), bound_a, "grad a")
    assert_close_to_native(db, db_n.numpy(), bound_b, "grad b")


def _unbroadcast(x, shape):
    """Sum x over the leading/broadcast axes so it has `shape`."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


# --- bit-exact against the NumPy reference with a random table --------------------------------


def _ref_matmul(a, b, m):
    return ref.matmul(a, b, m.lut, m.mantissa_bits, m.operand_rounding)


def _values(rng, shape):
    return ref.random_floats(rng, shape, normal_fraction=0.8)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_2d_forward_and_gradients_bit_exact(random_multiplier, ta, tb):
    m = random_multiplier
    rng = np.random.default_rng(11)
    a = _values(rng, (4, 6) if ta else (6, 4))
    b = _values(rng, (5, 4) if tb else (4, 5))
    opa, opb = _op(a, ta), _op(b, tb)
    g = _values(rng, (opa.shape[0], opb.shape[1]))
    c, da, db = _am_and_grads(a, b, g, m, transpose_a=ta, transpose_b=tb)
    assert_bits_equal(c, _ref_matmul(opa, opb, m), "forward")
    # dA = dC . op(B)^T with dC the left operand; dB = op(A)^T . dC with op(A)^T the left operand.
    assert_bits_equal(da, _op(_ref_matmul(g, opb.T, m), ta), "grad a")
    assert_bits_equal(db, _op(_ref_matmul(opa.T, g, m), tb), "grad b")


def test_shared_weight_gradient_is_one_gemm_over_batch_and_rows(random_multiplier):
    """b [k, n] shared by a [B, m, k]: dB = A'^T . dC' with A' = A as [(B*m), k], order (batch, row)."""
    m = random_multiplier
    rng = np.random.default_rng(12)
    a, b = _values(rng, (3, 4, 5)), _values(rng, (5, 2))
    g = _values(rng, (3, 4, 2))
    c, da, db = _am_and_grads(a, b, g, m)
    assert_bits_equal(c, np.stack([_ref_matmul(a[i], b, m) for i in range(3)]), "forward")
    assert_bits_equal(da, np.stack([_ref_matmul(g[i], b.T, m) for i in range(3)]), "grad a")
    assert_bits_equal(db, _ref_matmul(a.reshape(12, 5).T, g.reshape(12, 2), m), "grad b")


def test_shared_left_operand_gradient_sums_batch_then_columns(random_multiplier):
    """a [m, k] shared by b [B, k, n]: dA[i, :] = sum over (batch, column) ascending of dC (x) B^T."""
    m = random_multiplier
    rng = np.random.default_rng(13)
    a, b = _values(rng, (3, 4)), _values(rng, (2, 4, 5))
    g = _values(rng, (2, 3, 5))
    c, da, db = _am_and_grads(a, b, g, m)
    assert_bits_equal(c, np.stack([_ref_matmul(a, b[i], m) for i in range(2)]), "forward")
    x = g.transpose(1, 0, 2).reshape(3, 10)  # [m, (batch, n)]
    y = b.transpose(0, 2, 1).reshape(10, 4)  # [(batch, n), k]
    assert_bits_equal(da, _ref_matmul(x, y, m), "grad a")
    assert_bits_equal(db, np.stack([_ref_matmul(a.T, g[i], m) for i in range(2)]), "grad b")


def test_mixed_broadcast_with_transposes_bit_exact(random_multiplier):
    """a [2, 1, k, m] (transposed) x b [3, n, k] (transposed): each gradient sums its broadcast axis first."""
    m = random_multiplier
    rng = np.random.default_rng(14)
    a, b = _values(rng, (2, 1, 4, 3)), _values(rng, (3, 5, 4))
    g = _values(rng, (2, 3, 3, 5))
    c, da, db = _am_and_grads(a, b, g, m, transpose_a=True, transpose_b=True)
    opa, opb = np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2)  # [2, 1, 3, 4], [3, 4, 5]
    expected = np.stack([np.stack([_ref_matmul(opa[i, 0], opb[j], m) for j in range(3)]) for i in range(2)])
    assert_bits_equal(c, expected, "forward")
    # d op(a)[i] = sum over (j, col) of g[i, j] (x) op(b)[j]^T ; returned transposed.
    da_exp = np.stack(
        [
            _ref_matmul(g[i].transpose(1, 0, 2).reshape(3, 15), opb.transpose(0, 2, 1).reshape(15, 4), m)
            for i in range(2)
        ]
    )
    assert_bits_equal(da, np.swapaxes(da_exp, -1, -2)[:, None], "grad a")
    # d op(b)[j] = sum over (i, row) of op(a)[i]^T (x) g[i, j] ; returned transposed.
    db_exp = np.stack([_ref_matmul(opa[:, 0].reshape(6, 4).T, g[:, j].reshape(6, 5), m) for j in range(3)])
    assert_bits_equal(db, np.swapaxes(db_exp, -1, -2), "grad b")


def test_grad_multipliers_are_used_for_their_own_gradient(bf16, random_multiplier):
    m = random_multiplier
    rng = np.random.default_rng(15)
    a, b, g = _values(rng, (3, 4)), _values(rng, (4, 2)), _values(rng, (3, 2))
    c, da, db = _am_and_grads(a, b, g, bf16, grad_input_multiplier=m, grad_weight_multiplier="fp32")
    assert_bits_equal(c, _ref_matmul(a, b, bf16), "forward (bf16)")
    assert_bits_equal(da, _ref_matmul(g, b.T, m), "grad a (random table)")
    assert_bits_equal(db, (tf.linalg.matmul(a, g, transpose_a=True)).numpy(), "grad b (native)")


def test_fp32_forward_with_am_gradient(random_multiplier):
    m = random_multiplier
    rng = np.random.default_rng(16)
    a, b, g = _values(rng, (3, 4)), _values(rng, (4, 2)), _values(rng, (3, 2))
    c, da, db = _am_and_grads(a, b, g, "fp32", grad_weight_multiplier=m)
    assert_bits_equal(c, tf.linalg.matmul(a, b).numpy(), "forward (native)")
    assert_bits_equal(db, _ref_matmul(a.T, g, m), "grad b (random table)")


def test_all_fp32_is_the_native_op():
    @tf.function
    def f(a, b):
        return ops.matmul(a, b, "fp32")

    graph = f.get_concrete_function(tf.TensorSpec([2, 3], tf.float32), tf.TensorSpec([3, 4], tf.float32)).graph
    types = {op.type for op in graph.get_operations()}
    assert "AMMatMul" not in types and "IdentityN" not in types  # no AM op, no custom gradient
    assert types & {"MatMul", "BatchMatMulV2"}


def test_special_values_propagate(bf16):
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    a = np.array([[inf, 1.0], [nan, 1.0], [inf, 0.0], [-0.0, 0.0]], np.float32)
    b = np.array([[2.0], [0.0]], np.float32)
    c = ops.matmul(a, b, bf16).numpy()[:, 0]
    assert c[0] == np.inf  # inf x 2 + 1 x 0
    assert np.isnan(c[1])  # NaN in -> NaN
    assert np.isnan(ops.matmul(a[2:3], np.array([[0.0], [1.0]], np.float32), bf16).numpy()[0, 0])  # inf x 0
    assert c[3] == 0 and not np.signbit(c[3])  # sums start from +0


def test_empty_inner_dimension_gives_zeros(bf16):
    c, da, db = _am_and_grads(
        np.zeros((3, 0), np.float32), np.zeros((0, 2), np.float32), np.ones((3, 2), np.float32), bf16
    )
    assert c.shape == (3, 2) and np.all(c == 0) and not np.signbit(c).any()
    assert da.shape == (3, 0) and db.shape == (0, 2)


@pytest.mark.parametrize(
    "a_shape,b_shape,c_shape",
    [
        ((0, 3, 4), (4, 5), (0, 3, 5)),
        ((2, 0, 4), (2, 4, 5), (2, 0, 5)),
        ((3, 1, 2, 4), (1, 0, 4, 5), (3, 0, 2, 5)),  # 1 broadcasts against 0, as in numpy
        ((1, 2, 4), (0, 4, 5), (0, 2, 5)),
    ],
)
def test_empty_batches_and_rows(bf16, a_shape, b_shape, c_shape):
    a, b = np.ones(a_shape, np.float32), np.ones(b_shape, np.float32)
    c, da, db = _am_and_grads(a, b, np.ones(c_shape, np.float32), bf16)
    assert c.shape == c_shape and da.shape == a_shape and db.shape == b_shape
    assert not da.any() and not db.any()


def test_dynamic_batch_shapes_in_tf_function_match_eager(random_multiplier):
    """Unknown batch sizes: broadcasting is only known at run time (the dynamic gradient path)."""
    m = random_multiplier
    rng = np.random.default_rng(17)
    a, b, g = _values(rng, (3, 4, 5)), _values(rng, (1, 5, 2)), _values(rng, (3, 4, 2))
    spec = tf.TensorSpec([None, None, None], tf.float32)

    @tf.function(input_signature=[spec, spec, spec])
    def step(a, b, g):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            c = ops.matmul(a, b, m)
        return (c,) + tuple(tape.gradient(c, [a, b], output_gradients=g))

    got = [t.numpy() for t in step(a, b, g)]
    assert got[0].shape == (3, 4, 2) and got[2].shape == (1, 5, 2)
    for x, y, what in zip(got, _am_and_grads(a, b, g, m), ("forward", "grad a", "grad b")):
        assert_bits_equal(x, y, what)
    assert_bits_equal(got[2][0], _ref_matmul(a.reshape(12, 5).T, g.reshape(12, 2), m), "grad b order")


def test_static_shape_inference(bf16):
    @tf.function
    def f(a, b):
        c = ops.matmul(a, b, bf16, transpose_b=True)
        assert c.shape.as_list() == [7, 2, 3, 4]
        return c

    f.get_concrete_function(tf.TensorSpec([7, 1, 3, 5], tf.float32), tf.TensorSpec([2, 4, 5], tf.float32))


# --- errors ------------------------------------------------------------------------------------


def test_rank_below_two_is_rejected(bf16):
    with pytest.raises(ValueError, match="rank >= 2"):
        ops.matmul(np.ones(3, np.float32), np.ones((3, 2), np.float32), bf16)


def test_inner_dimension_mismatch(bf16):
    with pytest.raises(tf.errors.InvalidArgumentError, match="inner dimensions differ"):
        ops.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), bf16)

    @tf.function
    def f(a, b):
        return ops.matmul(a, b, bf16)

    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="inner dimensions differ"):
        f(tf.ones([2, 3]), tf.ones([4, 2]))


def test_batch_dimensions_that_do_not_broadcast(bf16):
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not broadcast"):
        ops.matmul(np.ones((2, 3, 3), np.float32), np.ones((4, 3, 3), np.float32), bf16)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_non_float32_inputs_are_type_errors(bf16, dtype):
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(np.ones((2, 2), dtype), np.ones((2, 2), np.float32), bf16)


def test_unknown_multiplier_name():
    with pytest.raises(ValueError, match="unknown multiplier 'no_such_multiplier'.*fp32"):
        ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), "no_such_multiplier")
