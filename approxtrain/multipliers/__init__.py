"""Approximate multipliers by name (docs/design.md, "Multipliers and tables").

    approxtrain.multipliers.names()                 # ['bf16', 'bf16_trunc', 'drum4', ...]
    m = approxtrain.multipliers.get("mbm7")         # Multiplier: .name .mantissa_bits .operand_rounding .lut
    approxtrain.multipliers.resolve("fp32")         # None: NATIVE, the native op (any multiplier argument)
    approxtrain.multipliers.register("mine", "mine.c", mantissa_bits=7)      # C or C++ (.cc .cpp .inl ...)
    approxtrain.multipliers.register("mine", fn, mantissa_bits=7)            # Python fn(a, b) on float32 arrays
    approxtrain.multipliers.register_table("mbm7at", "MBM_7.bin", mantissa_bits=7)  # ApproxTrain .bin, .npy
    approxtrain.multipliers.export_table("mbm7", "mbm7.bin")

8-bit integer circuits are the second kind (IntegerMultiplier, .kind == "integer"; .products):
    approxtrain.multipliers.register("mul8u_x", "mul8u_x.c", integer_bits=8, signed=False)  # EvoApproxLib C file
    approxtrain.multipliers.register_table("l40", "mul8u_L40.bin", integer_bits=8, signed=False)  # TFApprox map
    approxtrain.multipliers.get("mul8s_mitchell").products                 # int32 (256, 256)

This package imports nothing of approxtrain outside itself at import time,
so setup.py can load it to build the shipped tables before _core exists.
"""

from ._integer import INTEGER_BITS, IntegerMultiplier
from ._multiplier import ROUNDINGS, Multiplier
from .builder import ModelError, build_table
from .compiler import LANGUAGES
from .integer_formats import FORMATS as INTEGER_TABLE_FORMATS
from .integer_metrics import integer_error_metrics
from .metrics import error_metrics
from .registry import (
    NATIVE,
    AlreadyRegisteredError,
    UnknownMultiplierError,
    build_shipped_tables,
    describe,
    export_table,
    get,
    home,
    names,
    register,
    register_table,
    resolve,
    shipped_names,
    unregister,
    user_dir,
    user_names,
)
from .table_file import DamagedTableError, TableFileError, read_table, write_table
from .table_formats import FORMATS as TABLE_FORMATS
from .table_formats import TableImportError

__all__ = [
    "Multiplier",
    "IntegerMultiplier",
    "INTEGER_BITS",
    "ROUNDINGS",
    "LANGUAGES",
    "TABLE_FORMATS",
    "INTEGER_TABLE_FORMATS",
    "NATIVE",
    "names",
    "get",
    "resolve",
    "register",
    "register_table",
    "export_table",
    "unregister",
    "describe",
    "shipped_names",
    "user_names",
    "home",
    "user_dir",
    "error_metrics",
    "integer_error_metrics",
    "build_table",
    "build_shipped_tables",
    "read_table",
    "write_table",
    "ModelError",
    "TableFileError",
    "DamagedTableError",
    "TableImportError",
    "UnknownMultiplierError",
    "AlreadyRegisteredError",
]
