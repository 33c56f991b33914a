"""What was compiled, and for which TensorFlow."""

import importlib.util
import os
import platform

from approxtrain._op_library import LIBRARY_FILE, read_stamp


def build_info():
    """Returns a dict describing the native parts of this installation.

    Keys: ``version``, ``compiler``, ``cuda`` (bool: _core has CUDA kernels),
    ``cuda_archs`` (list of ints), ``cuda_available`` (a GPU is usable now),
    ``cpu_gemm_path`` (the CPU GEMM path chosen on this machine for M <= 7 and
    for M > 7), ``num_threads``, ``tf_ops`` (bool: the op library is built),
    ``tf`` (TensorFlow version the op library was compiled against, or None),
    ``tf_gpu_kernels`` (bool: the op library has GPU kernels; built when the
    CUDA kernels are and the TensorFlow is a CUDA build with CUDA headers).
    """
    from approxtrain._native import core

    _core = core()
    info = dict(_core.build_info)
    archs = info.get("cuda_archs") or ""
    info["cuda_archs"] = [int(a) for a in str(archs).replace(";", ",").split(",") if a.strip()]
    info["cuda_available"] = bool(_core.cuda_available())
    info["cpu_gemm_path"] = {"m<=7": _core.gemm_cpu_path(7), "m>7": _core.gemm_cpu_path(10)}
    info["num_threads"] = _core.num_threads()
    info["machine"] = platform.machine()
    here = os.path.dirname(os.path.abspath(__file__))
    stamped = read_stamp(here)
    info["tf_ops"] = os.path.exists(os.path.join(here, LIBRARY_FILE))
    info["tf"] = stamped[0] if stamped else None
    info["tf_gpu_kernels"] = bool(info["tf_ops"] and stamped and "GPU" in stamped[1])
    info["tf_installed"] = importlib.util.find_spec("tensorflow") is not None
    return info
