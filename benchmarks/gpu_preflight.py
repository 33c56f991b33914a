"""Pre-flight of benchmarks/gpu_check.sh: in about a second, before any
configure or build, whether this machine can run the GPU check at all.

    python benchmarks/gpu_preflight.py

Prints one line, `PRE-FLIGHT: ...`, with the Python headers (Python.h under
sysconfig's include path), pybind11, cmake, nvcc's release, the driver (its
version and the CUDA version it supports, read through libcuda.so.1 as the
CUDA runtime will), the visible devices and whether pytest-timeout is
installed.  When the check cannot pass it prints `FAIL: <reason>; <reason>`
last and exits 1.  Standard library only: it runs before anything is built.
Knobs: CUDACXX (the nvcc to use, as CMake reads it), APPROXTRAIN_CUDA_ARCHS,
PYTHON_INCLUDE_DIR (headers kept elsewhere; gpu_check.sh hands it to CMake).
"""

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

CUDA_SUCCESS = 0
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


def find_nvcc():
    """The nvcc CMake would take: $CUDACXX, else nvcc on PATH, else the toolkit's default place."""
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc_release(nvcc):
    """(major, minor) from `nvcc --version` ("release 13.0, V13.0.88"), or None."""
    try:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"release (\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else None


def cmake_version():
    cmake = shutil.which("cmake")
    if cmake is None:
        return None
    try:
        text = subprocess.run([cmake, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version (\S+)", text)
    return found[1] if found else "?"


def driver_version_string():
    """The kernel module's version (e.g. 580.159.04), for the record only."""
    proc = Path("/proc/driver/nvidia/version")
    if proc.is_file():
        found = re.search(r"Kernel Module\s+(\S+)", proc.read_text(errors="replace"))
        if found:
            return found[1]
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
            ).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            return None
        return text[0] if text else None
    return None


def probe_driver():
    """What libcuda.so.1 says: {'loaded', 'cuda' (major, minor) the driver supports,
    'init_error', 'devices' [(name, (cc major, cc minor))]}."""
    facts = dict(loaded=False, cuda=None, init_error=None, devices=[])
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        facts["load_error"] = str(err)
        return facts
    facts["loaded"] = True
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) == CUDA_SUCCESS:
        facts["cuda"] = (version.value // 1000, version.value % 1000 // 10)
    err = cuda.cuInit(0)
    if err != CUDA_SUCCESS:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(err, ctypes.byref(name))
        facts["init_error"] = f"{(name.value or b'?').decode()} ({err})"
        return facts
    count = ctypes.c_int(0)
    cuda.cuDeviceGetCount(ctypes.byref(count))
    for ordinal in range(count.value):
        device, buf = ctypes.c_int(0), ctypes.create_string_buffer(256)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        cuda.cuDeviceGet(ctypes.byref(device), ordinal)
        cuda.cuDeviceGetName(buf, len(buf), device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        facts["devices"].append((buf.value.decode(errors="replace"), (major.value, minor.value)))
    return facts


def gather():
    """Every fact the verdict needs, read from this machine."""
    include = os.environ.get("PYTHON_INCLUDE_DIR") or sysconfig.get_paths()["include"]
    nvcc = find_nvcc()
    return dict(
        python=sys.version.split()[0],
        python_exe=sys.executable,
        include=include,
        python_h=(Path(include) / "Python.h").is_file(),
        pybind11=importlib.util.find_spec("pybind11") is not None,
        cmake=cmake_version(),
        nvcc=nvcc,
        nvcc_release=nvcc_release(nvcc) if nvcc else None,
        driver_string=driver_version_string(),
        driver=probe_driver(),
        archs=os.environ.get("APPROXTRAIN_CUDA_ARCHS", "90"),
        pytest_timeout=importlib.util.find_spec("pytest_timeout") is not None,
    )


def version(pair):
    return f"{pair[0]}.{pair[1]}"


def archs_list(archs):
    return [int(a) for a in re.split(r"[;, ]+", archs) if a.strip().isdigit()]


def verdict(f):
    """(the PRE-FLIGHT line, the reasons the GPU check cannot pass: empty when it may)."""
    reasons = []
    parts = [f"python {f['python']} ({f['python_exe']})"]
    if f["python_h"]:
        parts.append(f"Python.h yes ({f['include']})")
    else:
        parts.append(f"Python.h MISSING under {f['include']}")
        reasons.append(
            f"no Python headers: Python.h not under {f['include']} (install the -dev package "
            f"of Python {f['python']}, set PYTHON to an interpreter that has them, or PYTHON_INCLUDE_DIR)"
        )
    parts.append("pybind11 " + ("yes" if f["pybind11"] else "MISSING"))
    if not f["pybind11"]:
        reasons.append(f"pybind11 is not importable by {f['python_exe']}")
    parts.append(f"cmake {f['cmake']}" if f["cmake"] else "cmake MISSING")
    if not f["cmake"]:
        reasons.append("cmake not found on PATH")

    nvcc = f["nvcc_release"]
    if f["nvcc"] is None:
        parts.append("nvcc MISSING")
        reasons.append("no CUDA compiler: nvcc not on PATH, not at /usr/local/cuda/bin/nvcc, CUDACXX unset")
    elif nvcc is None:
        parts.append(f"nvcc ? ({f['nvcc']})")
        reasons.append(f"{f['nvcc']} --version printed no release")
    else:
        parts.append(f"nvcc {version(nvcc)} ({f['nvcc']})")

    d = f["driver"]
    if not d["loaded"]:
        parts.append("driver none (libcuda.so.1 not loadable)")
        reasons.append("no NVIDIA driver: libcuda.so.1 cannot be loaded")
    else:
        supports = f"CUDA {version(d['cuda'])}" if d["cuda"] else "CUDA ?"
        parts.append(f"driver {f['driver_string'] or '?'} ({supports})")
        if d["cuda"] and nvcc and d["cuda"][0] < nvcc[0]:
            reasons.append(
                f"driver too old: it supports CUDA {version(d['cuda'])}, nvcc is {version(nvcc)} "
                f"(the runtime linked into _core needs a driver for CUDA {nvcc[0]}.x)"
            )
    if d["loaded"] and d["init_error"]:
        parts.append(f"devices none (cuInit: {d['init_error']})")
        reasons.append(f"no CUDA device: cuInit failed with {d['init_error']}")
    elif d["loaded"]:
        names = ", ".join(f"{name} (cc {version(cc)})" for name, cc in d["devices"])
        parts.append(f"devices {len(d['devices'])}" + (f": {names}" if names else ""))
        if not d["devices"]:
            reasons.append("no CUDA device visible (check CUDA_VISIBLE_DEVICES)")
        else:
            archs = archs_list(f["archs"])
            cc = d["devices"][0][1]
            if archs and min(archs) > cc[0] * 10 + cc[1]:
                reasons.append(f"APPROXTRAIN_CUDA_ARCHS={f['archs']} has no code device 0 (cc {version(cc)}) can run")
    parts.append(f"archs {f['archs']}")
    parts.append(
        "pytest-timeout " + ("yes" if f["pytest_timeout"] else "no (the outer timeout alone bounds the tests)")
    )
    return "PRE-FLIGHT: " + "; ".join(parts), reasons


def main():
    line, reasons = verdict(gather())
    print(line, flush=True)
    if reasons:
        print("FAIL: " + "; ".join(reasons), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
