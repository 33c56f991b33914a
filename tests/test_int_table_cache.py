"""The GPU integer GEMM's device-table cache (src/amsim/int_table_cache.h): host logic, checked
without a GPU by tests/cpp/int_table_cache_check.cpp (a fake device records the uploads): one
upload per (device, table content), the 16/32-bit width, least-recently-used eviction, failed
uploads not cached, one upload under concurrent callers."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_int_table_cache_host_checks(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    assert compiler, "a C++ compiler (c++ or g++) is needed to build the native parts and this check"
    exe = tmp_path / "int_table_cache_check"
    build = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
            f"-I{ROOT / 'src'}",
            str(ROOT / "tests/cpp/int_table_cache_check.cpp"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:]
    assert run.stdout.strip() == "all int table cache checks passed"
