"""The child process of builder.build_table_isolated: builds one table and exits.

Run as ``python -m approxtrain.multipliers._build_child REQUEST``.  It lives
in its own module, one the package never imports, so that runpy runs it
without warning that the module was imported before it was executed.  It
answers through files in the request's ``out`` directory: table.npy (a float
table or integer products, by the request's kind) and result.json on success,
error.txt (exit status CHILD_MODEL_ERROR) when the model is at fault,
internal.txt (CHILD_INTERNAL_ERROR) on any other error.
A process that ends with none of them was ended by the model (exit()).
"""

import json
import sys
from pathlib import Path

import numpy as np

from approxtrain.multipliers import builder, integer_builder


def main(request):
    request = json.loads(request)
    out = Path(request["out"])
    integer = request["kind"] == "integer"
    try:
        signature = integer_builder.INTEGER_SIGNATURE if integer else builder.FLOAT_SIGNATURE
        model = builder.CompiledModel(request["path"], request["language"], signature)
        symbol = request["symbol"]
        if symbol is None:
            symbol = model.default_symbol(request["label"])
        if integer:
            table = integer_builder.make_products(model, symbol, request["signed"], request["bits"], request["label"])
        else:
            table = builder.make_table(model, symbol, request["mantissa_bits"], request["rounding"], request["label"])
    except (builder.ModelError, ValueError, FileNotFoundError, RuntimeError) as e:
        (out / "error.txt").write_text(str(e), encoding="utf-8")
        return builder.CHILD_MODEL_ERROR
    np.save(out / "table.npy", table)
    result = {"symbol": symbol, "language": model.language}
    if integer:
        result["style"] = model.style(symbol)
    (out / "result.json").write_text(json.dumps(result))
    return 0


def run(request):
    try:
        return main(request)
    except BaseException:  # noqa: BLE001 - reported to the parent, which tells it from a model's exit()
        import traceback

        (Path(json.loads(request)["out"]) / "internal.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return builder.CHILD_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
