"""benchmarks/gpu_check.sh cannot pass without a GPU.

On a machine without a driver or device (this one, CI) the check must stop
at its pre-flight, in about a second, before anything is configured or built,
and end with `GPU CHECK: FAIL (pre-flight: ...)`.  The stages after the
pre-flight (build, device probe, tests/cuda under APPROXTRAIN_REQUIRE_CUDA=1,
bench, summary line) run here against a fake toolchain in a scratch tree.
Also: the skip -> failure switch of tests/cuda/conftest.py, the `cuda` marks,
the host-emulation test's nvcc rule, and -DAPPROXTRAIN_REQUIRE_CUDA=ON.
"""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
HAS_PYTEST_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None


def load_preflight():
    spec = importlib.util.spec_from_file_location("gpu_preflight", ROOT / "benchmarks" / "gpu_preflight.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The knobs of gpu_check.sh and of the tests it runs: each test sets its own.
KNOBS = (
    "APPROXTRAIN_REQUIRE_CUDA",
    "CI",
    "OUT",
    "BUILD_DIR",
    "BENCH_ARGS",
    "PYTEST_ADDOPTS",
    "PYTHON_INCLUDE_DIR",
    "APPROXTRAIN_CUDA_ARCHS",
    "GPU_CHECK_BUDGET",
    "BUILD_TIMEOUT",
    "TESTS_TIMEOUT",
    "TEST_TIMEOUT",
    "BENCH_TIMEOUT",
)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(extra)
    return env


def last_line(text):
    return text.rstrip("\n").splitlines()[-1]


# --- the real script on this machine: stops at the pre-flight ------------------------------------


def native_builds():
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (ROOT / "approxtrain").glob("*.so")}


def test_gpu_check_fails_at_the_preflight_without_a_gpu(tmp_path):
    """CUDA_VISIBLE_DEVICES="" hides any device, so this holds on a GPU machine too."""
    out, build = tmp_path / "out", tmp_path / "build"
    before = native_builds()
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(OUT=str(out), BUILD_DIR=str(build), PYTHON=sys.executable, CUDA_VISIBLE_DEVICES=""),
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    line = last_line(run.stdout)
    assert re.fullmatch(r"GPU CHECK: FAIL \(pre-flight: .+\)", line), line
    assert "no NVIDIA driver: libcuda.so.1 cannot be loaded" in line or "no CUDA device" in line, line
    preflight = [x for x in run.stdout.splitlines() if x.startswith("PRE-FLIGHT: ")]
    assert len(preflight) == 1, run.stdout
    for fact in (
        "Python.h ",
        "nvcc ",
        "driver ",
        "devices " if "no CUDA device" in line else "driver none",
        "pytest-timeout ",
    ):
        assert fact in preflight[0], preflight[0]
    assert elapsed < 10, f"the pre-flight took {elapsed:.1f}s"
    assert (out / "summary.txt").read_text() == line + "\n"
    assert (out / "env.txt").read_text() == preflight[0] + "\n" + run.stdout.splitlines()[-2] + "\n"
    # Nothing configured or built, the package's native modules untouched.
    assert not build.exists()
    assert not (out / "build.log").exists()
    assert native_builds() == before


def test_gpu_check_fails_when_python_is_missing(tmp_path):
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(OUT=str(tmp_path), PYTHON="no-such-python3"),
    )
    assert run.returncode == 1
    assert last_line(run.stdout) == "GPU CHECK: FAIL (pre-flight: no Python interpreter 'no-such-python3' (set PYTHON))"


# --- the pre-flight's verdicts ---------------------------------------------------------------------

GOOD = dict(
    python="3.12.3",
    python_exe="/usr/bin/python3",
    include="/usr/include/python3.12",
    python_h=True,
    pybind11=True,
    cmake="3.31.2",
    nvcc="/usr/local/cuda/bin/nvcc",
    nvcc_release=(13, 0),
    driver_string="580.159.04",
    driver=dict(loaded=True, cuda=(13, 0), init_error=None, devices=[("NVIDIA H100 80GB HBM3", (9, 0))]),
    archs="90",
    pytest_timeout=True,
)


def facts(**changes):
    f = {**GOOD, "driver": dict(GOOD["driver"])}
    f["driver"].update(changes.pop("driver", {}))
    f.update(changes)
    return f


def test_preflight_passes_a_usable_machine_and_names_what_it_saw():
    line, reasons = load_preflight().verdict(facts())
    assert reasons == []
    assert line == (
        "PRE-FLIGHT: python 3.12.3 (/usr/bin/python3); Python.h yes (/usr/include/python3.12); "
        "pybind11 yes; cmake 3.31.2; nvcc 13.0 (/usr/local/cuda/bin/nvcc); driver 580.159.04 (CUDA 13.0); "
        "devices 1: NVIDIA H100 80GB HBM3 (cc 9.0); archs 90; pytest-timeout yes"
    )


@pytest.mark.parametrize(
    "changes, reason",
    [
        (
            dict(python_h=False),
            "no Python headers: Python.h not under /usr/include/python3.12 (install the -dev package of Python 3.12.3, "
            "set PYTHON to an interpreter that has them, or PYTHON_INCLUDE_DIR)",
        ),
        (dict(pybind11=False), "pybind11 is not importable by /usr/bin/python3"),
        (dict(cmake=None), "cmake not found on PATH"),
        (
            dict(nvcc=None, nvcc_release=None),
            "no CUDA compiler: nvcc not on PATH, not at /usr/local/cuda/bin/nvcc, CUDACXX unset",
        ),
        (dict(driver=dict(loaded=False, cuda=None, devices=[])), "no NVIDIA driver: libcuda.so.1 cannot be loaded"),
        (
            dict(driver=dict(cuda=(12, 4))),
            "driver too old: it supports CUDA 12.4, nvcc is 13.0 "
            "(the runtime linked into _core needs a driver for CUDA 13.x)",
        ),
        (
            dict(driver=dict(init_error="CUDA_ERROR_NO_DEVICE (100)", devices=[])),
            "no CUDA device: cuInit failed with CUDA_ERROR_NO_DEVICE (100)",
        ),
        (dict(driver=dict(devices=[])), "no CUDA device visible (check CUDA_VISIBLE_DEVICES)"),
        (
            dict(driver=dict(devices=[("NVIDIA A100", (8, 0))])),
            "APPROXTRAIN_CUDA_ARCHS=90 has no code device 0 (cc 8.0) can run",
        ),
    ],
)
def test_preflight_names_each_reason_the_check_cannot_pass(changes, reason):
    _, reasons = load_preflight().verdict(facts(**changes))
    assert reasons == [reason]


def test_preflight_accepts_a_newer_driver_and_says_when_pytest_timeout_is_missing():
    line, reasons = load_preflight().verdict(facts(driver=dict(cuda=(13, 2)), pytest_timeout=False))
    assert reasons == []
    assert line.endswith("; pytest-timeout no (the outer timeout alone bounds the tests)")


def test_preflight_script_reads_this_machine(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_preflight.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(CUDA_VISIBLE_DEVICES=""),
    )
    lines = run.stdout.splitlines()
    assert run.returncode == 1 and len(lines) == 2, run.stdout + run.stderr
    assert lines[0].startswith("PRE-FLIGHT: python ")
    assert lines[1].startswith("FAIL: ")
    expected_headers = (Path(__import__("sysconfig").get_paths()["include"]) / "Python.h").is_file()
    assert ("Python.h yes" in lines[0]) == expected_headers
    # PYTHON_INCLUDE_DIR points the pre-flight elsewhere: an empty folder has no headers.
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_preflight.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(PYTHON_INCLUDE_DIR=str(tmp_path)),
    )
    assert f"Python.h MISSING under {tmp_path};" in run.stdout
    assert f"FAIL: no Python headers: Python.h not under {tmp_path} " in run.stdout
    assert ("pytest-timeout yes" in lines[0]) == HAS_PYTEST_TIMEOUT


# --- the stages after the pre-flight, on a fake toolchain -----------------------------------------

FAKE_FILES = {
    "benchmarks/gpu_preflight.py": 'print("PRE-FLIGHT: fake machine")\n',
    "benchmarks/cuda_bench.py": """
        import json, os, sys, time
        mode = os.environ.get("FAKE_BENCH", "ok")
        if mode == "nodevice":
            print("no usable CUDA device: nothing to benchmark", file=sys.stderr)
            sys.exit(2)
        out = sys.argv[sys.argv.index("--out") + 1]
        open(out, "w").write(json.dumps({"rows": []}))
        print("bench done", sys.argv[3:])
        """,
    "approxtrain/__init__.py": "",
    "approxtrain/_core.py": """
        import os
        build_info = {"cuda": os.environ.get("FAKE_CUDA_BUILD", "1") == "1", "cuda_archs": "90"}
        def cuda_available():
            return os.environ.get("FAKE_DEVICE", "1") == "1"
        def cuda_device():
            return {"name": "Fake GPU"} if cuda_available() else None
        """,
    "pytest.ini": """
        [pytest]
        markers =
            cuda: needs an NVIDIA GPU
        """,
    "tests/cuda/test_fake_gpu.py": """
        import os, time
        import pytest
        from approxtrain import _core
        pytestmark = [pytest.mark.cuda, pytest.mark.skipif(os.environ.get("FAKE_SKIP") == "1",
                                                            reason="no usable CUDA device")]
        def test_device_is_usable():
            assert _core.cuda_available()
        def test_env_is_set_by_the_check():
            assert os.environ["APPROXTRAIN_REQUIRE_CUDA"] == "1"
            assert os.environ["PYTHONUNBUFFERED"] == "1"
        def test_kernel_may_hang():
            if os.environ.get("FAKE_HANG") == "1":
                time.sleep(120)
        """,
    "bin/cmake": """
        #!/bin/sh
        if [ "$1" = --version ]; then echo "cmake version 3.31.2"; exit 0; fi
        echo "fake cmake $*"
        exit "${FAKE_CMAKE_RC:-0}"
        """,
}


@pytest.fixture
def fake_tree(tmp_path):
    """A scratch checkout: the real script, tests/cuda/conftest.py and ptxas report, fakes for the rest."""
    tree = tmp_path / "tree"
    for rel in ("benchmarks/gpu_check.sh", "benchmarks/ptxas_report.py", "tests/cuda/conftest.py"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tree / rel)
    for rel, text in FAKE_FILES.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(textwrap.dedent(text).lstrip())
    cmake = tree / "bin" / "cmake"
    cmake.chmod(cmake.stat().st_mode | stat.S_IXUSR)
    return tree


def run_fake(tree, **env):
    out = tree / "out"
    run = subprocess.run(
        ["bash", str(tree / "benchmarks/gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(
            OUT=str(out), PYTHON=sys.executable, PATH=f"{tree / 'bin'}{os.pathsep}{os.environ['PATH']}", **env
        ),
    )
    assert (out / "summary.txt").read_text() == last_line(run.stdout) + "\n"
    return run, out


def test_check_passes_only_with_every_gpu_test_run_and_the_bench_done(fake_tree):
    run, out = run_fake(fake_tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert last_line(run.stdout) == "GPU CHECK: PASS (3 passed, 0 failed, 0 skipped; bench ok)"
    # Eight files: the device tool brings back no more.
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.log",
        "build.log",
        "cuda_bench.json",
        "env.txt",
        "ptxas.txt",
        "pytest.log",
        "pytest.xml",
        "summary.txt",
    ]
    env_txt = (out / "env.txt").read_text()
    assert env_txt.startswith("PRE-FLIGHT: fake machine\n") and "cuda_device: {'name': 'Fake GPU'}" in env_txt
    build_log = (out / "build.log").read_text()
    assert "-DAPPROXTRAIN_REQUIRE_CUDA=ON" in build_log and "-DAPPROXTRAIN_TF=OFF" in build_log
    assert f"-B {fake_tree / 'build-gpu'}" in build_log
    notice = (
        "pytest-timeout: 120s per test" if HAS_PYTEST_TIMEOUT else "pytest-timeout not installed: no per-test limit"
    )
    assert notice in run.stdout and notice in (out / "pytest.log").read_text()


def test_a_skipped_gpu_test_fails_the_check(fake_tree):
    run, out = run_fake(fake_tree, FAKE_SKIP="1")
    assert run.returncode == 1
    assert last_line(run.stdout) == "GPU CHECK: FAIL (0 passed, 3 failed, 0 skipped, pytest exit 1; bench ok)"
    assert (
        "APPROXTRAIN_REQUIRE_CUDA=1: this GPU test must run, but it was skipped (no usable CUDA device)"
        in (out / "pytest.log").read_text()
    )


def test_a_hung_test_still_ends_in_a_summary(fake_tree):
    started = time.monotonic()
    run, out = run_fake(fake_tree, FAKE_HANG="1", TESTS_TIMEOUT="6", TEST_TIMEOUT="3")
    assert run.returncode == 1
    line = last_line(run.stdout)
    if HAS_PYTEST_TIMEOUT:  # the per-test timeout ends pytest first
        assert line == (
            f"GPU CHECK: FAIL (pytest exited 1 without writing pytest.xml (a per-test timeout ends "
            f"the run), see {out}/pytest.log; bench ok)"
        )
    else:  # faulthandler dumps the stacks, the outer timeout stops pytest
        assert line == f"GPU CHECK: FAIL (tests timed out after 6s, see {out}/pytest.log; bench ok)"
        assert "Timeout (0:00:03)!" in (out / "pytest.log").read_text()
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "env, line",
    [
        (dict(FAKE_DEVICE="0"), "GPU CHECK: FAIL (no usable CUDA device: _core.cuda_available() is False)"),
        (
            dict(FAKE_CUDA_BUILD="0"),
            "GPU CHECK: FAIL (_core was built without its CUDA kernels (build_info cuda=False))",
        ),
        (dict(FAKE_CMAKE_RC="1"), "GPU CHECK: FAIL (build: configure or compile failed (exit 1), see {out}/build.log)"),
        (dict(GPU_CHECK_BUDGET="5"), "GPU CHECK: FAIL (build not run: GPU_CHECK_BUDGET=5s spent)"),
        (
            dict(FAKE_BENCH="nodevice"),
            "GPU CHECK: FAIL (3 passed, 0 failed, 0 skipped; bench: no usable CUDA device (exit 2))",
        ),
    ],
)
def test_each_stage_failure_fails_the_check(fake_tree, env, line):
    run, out = run_fake(fake_tree, **env)
    assert run.returncode == 1
    assert last_line(run.stdout) == line.format(out=out)


# --- tests/cuda: the cuda marks and the APPROXTRAIN_REQUIRE_CUDA switch --------------------------


def pytest_run(args, tmp_path, **env):
    xml = tmp_path / "report.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(**env),
    )
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    return run, counts


def test_gpu_tests_skip_without_a_gpu(tmp_path):
    run, counts = pytest_run(["tests/cuda/test_cuda_conv.py"], tmp_path, CUDA_VISIBLE_DEVICES="")
    assert run.returncode == 0, run.stdout[-3000:]
    assert counts["tests"] > 100
    assert counts == dict(tests=counts["tests"], failures=0, errors=0, skipped=counts["tests"])


def test_require_cuda_turns_gpu_skips_into_failures(tmp_path):
    run, counts = pytest_run(
        ["tests/cuda/test_cuda_conv.py"], tmp_path, CUDA_VISIBLE_DEVICES="", APPROXTRAIN_REQUIRE_CUDA="1"
    )
    assert run.returncode == 1, run.stdout[-3000:]
    assert counts["tests"] > 100
    assert counts == dict(tests=counts["tests"], failures=0, errors=counts["tests"], skipped=0)
    assert (
        "APPROXTRAIN_REQUIRE_CUDA=1: this GPU test must run, but it was skipped (no usable CUDA device)" in run.stdout
    )


def test_every_test_in_tests_cuda_but_host_emulation_is_marked_cuda():
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/cuda",
            "-m",
            "not cuda",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    collected = [line for line in run.stdout.splitlines() if "::" in line]
    assert collected == ["tests/cuda/test_host_emulation.py::test_kernel_building_blocks_match_am_multiply_on_the_host"]


def path_without_nvcc():
    return os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if d and not os.access(os.path.join(d, "nvcc"), os.X_OK)
    )


@pytest.mark.parametrize("env", [dict(CI="true"), dict(APPROXTRAIN_REQUIRE_CUDA="1")])
def test_host_emulation_fails_without_nvcc_where_it_must_run(tmp_path, env):
    run, counts = pytest_run(["tests/cuda/test_host_emulation.py"], tmp_path, PATH=path_without_nvcc(), **env)
    assert run.returncode == 1, run.stdout[-3000:]
    assert counts["failures"] == 1
    assert (
        "nvcc not found on PATH: CI=true or APPROXTRAIN_REQUIRE_CUDA=1 needs the CUDA compiler to build "
        "tests/cuda/host_emulation.cu (install the CUDA toolkit, put nvcc on PATH)"
    ) in run.stdout


def test_host_emulation_skips_without_nvcc_elsewhere(tmp_path):
    run, counts = pytest_run(["tests/cuda/test_host_emulation.py", "-rs"], tmp_path, PATH=path_without_nvcc())
    assert run.returncode == 0, run.stdout[-3000:]
    assert counts == dict(tests=1, failures=0, errors=0, skipped=1)
    assert "nvcc not found on PATH" in run.stdout


# --- CMake: -DAPPROXTRAIN_REQUIRE_CUDA=ON ------------------------------------------------------------


def test_configure_fails_when_cuda_is_required_but_not_built(tmp_path):
    cmake = shutil.which("cmake")
    assert cmake is not None, "cmake is needed to build approxtrain"
    run = subprocess.run(
        [
            cmake,
            "-S",
            str(ROOT),
            "-B",
            str(tmp_path / "build"),
            "-DAPPROXTRAIN_CUDA=OFF",
            "-DAPPROXTRAIN_REQUIRE_CUDA=ON",
            "-DAPPROXTRAIN_TF=OFF",
            f"-DAPPROXTRAIN_OUTPUT_DIR={tmp_path / 'out'}",
            f"-DPython_EXECUTABLE={sys.executable}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    message = " ".join(run.stderr.split())
    assert (
        "approxtrain: APPROXTRAIN_REQUIRE_CUDA is ON but the CUDA kernels would not be built "
        "(APPROXTRAIN_CUDA=OFF, CUDA compiler: '')"
    ) in message
    assert not (tmp_path / "out").exists()
