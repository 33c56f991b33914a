"""Approximate multipliers by name (docs/design.md, "Multipliers and tables").

    approxtrain.multipliers.names()                 # ['bf16', 'bf16_trunc', 'drum4', ...]
    m = approxtrain.multipliers.get("mbm7")         # Multiplier: .name .mantissa_bits .operand_rounding .lut
    approxtrain.multipliers.register("mine", "mine.c", mantissa_bits=7)

This package imports nothing of approxtrain outside itself at import time,
so setup.py can load it to build the shipped tables before _core exists.
"""
from ._multiplier import ROUNDINGS, Multiplier
from .builder import ModelError, build_table
from .metrics import error_metrics
from .registry import (NATIVE, build_shipped_tables, describe, get, home, names, register, shipped_names,
                       unregister, user_dir, user_names)
from .table_file import TableFileError, read_table, write_table

__all__ = ["Multiplier", "ROUNDINGS", "NATIVE", "names", "get", "register", "unregister", "describe",
           "shipped_names", "user_names", "home", "user_dir", "error_metrics", "build_table",
           "build_shipped_tables", "read_table", "write_table", "ModelError", "TableFileError"]
