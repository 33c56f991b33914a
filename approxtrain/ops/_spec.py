"""What an AM op needs of a multiplier: its table tensor and operand rounding."""
from typing import NamedTuple

import tensorflow as tf

from approxtrain.ops._tables import table


class TableSpec(NamedTuple):
    """The table input of an AM op and its operand_rounding attribute."""

    tensor: tf.Tensor
    rounding: str


def spec(multiplier):
    """TableSpec of a resolved Multiplier; None (fp32: the native op) stays None."""
    return None if multiplier is None else TableSpec(table(multiplier), multiplier.operand_rounding)


def spec_of_op(op, table_input):
    """TableSpec of an AM op in a graph (for registered gradients): its own table and rounding."""
    rounding = op.get_attr("operand_rounding")
    return TableSpec(op.inputs[table_input], rounding.decode() if isinstance(rounding, bytes) else rounding)
