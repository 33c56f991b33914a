"""The CUDA kernels' building blocks (staged operands, the product formulas
for shared and global tables, the GEMM problems' index math, the depthwise
element functions), compiled as host code by nvcc and checked bit for bit
against a naive canonical-order reference on am_multiply.  Needs nvcc, not a
GPU: it guards the GPU arithmetic on machines that cannot run it.  Without
nvcc it skips, except under CI=true or APPROXTRAIN_REQUIRE_CUDA=1, where a
missing compiler is a broken machine and the test fails saying so."""

import os
import shutil
from pathlib import Path

import pytest
from native_build import build_and_run

ROOT = Path(__file__).resolve().parents[2]
NVCC = shutil.which("nvcc")


def nvcc_is_required():
    """CI must run this test; so must the GPU check (APPROXTRAIN_REQUIRE_CUDA=1)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get(
        "APPROXTRAIN_REQUIRE_CUDA", ""
    ) not in ("", "0")


def test_kernel_building_blocks_match_am_multiply_on_the_host(tmp_path):
    if NVCC is None:
        message = "nvcc not found on PATH"
        if nvcc_is_required():
            pytest.fail(
                f"{message}: CI=true or APPROXTRAIN_REQUIRE_CUDA=1 needs the CUDA compiler "
                f"to build tests/cuda/host_emulation.cu (install the CUDA toolkit, put nvcc on PATH)"
            )
        pytest.skip(message)
    exe = tmp_path / "host_emulation"
    stdout = build_and_run(
        [
            NVCC,
            "-std=c++17",
            "-O2",
            "--expt-relaxed-constexpr",
            "-diag-suppress",
            "20013",
            f"-I{ROOT}",
            f"-I{ROOT / 'src'}",
            str(ROOT / "tests/cuda/host_emulation.cu"),
            "-o",
            str(exe),
        ],
        exe,
    )
    assert "all host emulation checks passed" in stdout
