"""What an AM op takes of a multiplier: its table tensor and its operand rounding."""

from typing import NamedTuple

import tensorflow as tf

from approxtrain.ops._tables import table


class OpTable(NamedTuple):
    """The table input of an AM op and its operand_rounding attribute."""

    tensor: tf.Tensor
    operand_rounding: str


def op_table_for(multiplier):
    """OpTable of a resolved Multiplier; None (NATIVE: the native op) stays None."""
    return None if multiplier is None else OpTable(table(multiplier), multiplier.operand_rounding)


def op_table_of(op, table_input):
    """OpTable of an AM op in a graph (for registered gradients): its own table and rounding."""
    rounding = op.get_attr("operand_rounding")
    return OpTable(op.inputs[table_input], rounding.decode() if isinstance(rounding, bytes) else rounding)
