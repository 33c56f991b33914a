"""What a results.json records about the machine and software a run used."""

import os
import platform
import socket
import sys


def versions():
    import keras
    import numpy
    import tensorflow as tf

    import approxtrain

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "approxtrain": approxtrain.__version__,
    }


def machine(strategy):
    import tensorflow as tf

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "strategy": type(strategy).__name__,
        "num_replicas": strategy.num_replicas_in_sync,
    }


def build_info():
    """approxtrain.build_info(), or why it is unavailable (fp32 runs need no native build)."""
    try:
        import approxtrain

        return approxtrain.build_info()
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return {"error": f"{type(e).__name__}: {e}"}


def multiplier_descriptions(names):
    """name -> {mantissa_bits, operand_rounding, description} for the AM multipliers used."""
    out = {}
    for name in sorted({n for n in names if n and n != "fp32"}):
        try:
            from approxtrain import multipliers

            m = multipliers.get(name)
            out[name] = {
                "mantissa_bits": m.mantissa_bits,
                "operand_rounding": m.operand_rounding,
                "description": m.description,
            }
        except Exception as e:  # noqa: BLE001 - recorded, not fatal
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out
