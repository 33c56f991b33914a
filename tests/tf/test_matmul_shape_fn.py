"""AMMatMul's and AMIntMatMul's shape function (one helper, src/tf/common/matmul_shape.h): the
static output shapes and the graph-construction errors of both ops, each naming its op."""

import pytest
import tensorflow as tf

from approxtrain._op_library import library

pytestmark = pytest.mark.tf


def build(op, a_shape, b_shape, transpose_a=False, transpose_b=False, table_shape=None):
    """The op's static output shape (None: unknown rank), built in a graph on placeholders."""
    with tf.Graph().as_default():
        if op == "AMMatMul":
            a = tf.compat.v1.placeholder(tf.float32, a_shape)
            b = tf.compat.v1.placeholder(tf.float32, b_shape)
            table = tf.compat.v1.placeholder(tf.uint16, table_shape or [1 << 14])
            out = library().am_mat_mul(
                a, b, table, transpose_a=transpose_a, transpose_b=transpose_b, operand_rounding="nearest"
            )
        else:
            a = tf.compat.v1.placeholder(tf.uint8, a_shape)
            b = tf.compat.v1.placeholder(tf.uint8, b_shape)
            products = tf.compat.v1.placeholder(tf.int32, table_shape or [256, 256])
            out = library().am_int_mat_mul(a, b, products, transpose_a=transpose_a, transpose_b=transpose_b)
        return None if out.shape.rank is None else out.shape.as_list()


OPS = ["AMMatMul", "AMIntMatMul"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "a_shape, b_shape, transpose_a, transpose_b, expected",
    [
        ([3, 5], [5, 7], False, False, [3, 7]),
        ([5, 3], [7, 5], True, True, [3, 7]),
        ([None, 3, 5], [5, 7], False, False, [None, 3, 7]),
        ([2, 1, 4, 5], [3, 5, 6], False, False, [2, 3, 4, 6]),
        ([None, None], [None, None], False, False, [None, None]),
        ([4, None, 5], [None, 5, 2], False, False, [4, None, 2]),
        (None, [5, 2], False, False, None),
    ],
)
def test_static_output_shapes(op, a_shape, b_shape, transpose_a, transpose_b, expected):
    assert build(op, a_shape, b_shape, transpose_a, transpose_b) == expected


@pytest.mark.parametrize("op", OPS)
def test_shape_errors_name_the_op(op):
    with pytest.raises(
        ValueError,
        match=rf"{op}: inner dimensions differ: \[2,3\] x \[4,2\] \(transpose_a=false, transpose_b=false\)",
    ):
        build(op, [2, 3], [4, 2])
    with pytest.raises(ValueError, match=rf"{op}: inner dimensions differ: \[3,2\] x \[2,4\] \(transpose_a=true"):
        build(op, [3, 2], [2, 4], transpose_a=True)
    with pytest.raises(ValueError, match=rf"{op}: batch dimensions of \[2,3,3\] and \[4,3,3\] do not broadcast"):
        build(op, [2, 3, 3], [4, 3, 3])


@pytest.mark.parametrize("op, bad_table", [("AMMatMul", [4, 4]), ("AMIntMatMul", [256, 255])])
def test_operand_ranks_are_checked_before_the_table(op, bad_table):
    with pytest.raises(ValueError, match="must be at least rank 2 but is rank 1"):
        build(op, [3], [3, 2], table_shape=bad_table)
    message = "Shape must be rank 1 but is rank 2" if op == "AMMatMul" else r"products must have shape \[256, 256\]"
    with pytest.raises(ValueError, match=message):
        build(op, [2, 3], [3, 2], table_shape=bad_table)
