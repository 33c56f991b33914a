"""The GPU integer GEMM's device-table cache (src/amsim/int_table_cache.h): host logic, checked
without a GPU by tests/cpp/int_table_cache_check.cpp (a fake device records the uploads): one
upload per (device, table content), the 16/32-bit width, least-recently-used eviction, failed
uploads not cached, one upload under concurrent callers."""

import shutil
from pathlib import Path

from native_build import build_and_run

ROOT = Path(__file__).resolve().parents[1]


def test_int_table_cache_host_checks(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    assert compiler, "a C++ compiler (c++ or g++) is needed to build the native parts and this check"
    exe = tmp_path / "int_table_cache_check"
    stdout = build_and_run(
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
        exe,
    )
    assert stdout.strip() == "all int table cache checks passed"
