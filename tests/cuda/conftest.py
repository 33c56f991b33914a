"""APPROXTRAIN_REQUIRE_CUDA=1 (set by benchmarks/gpu_check.sh): a skipped
GPU test (marked `cuda`) is a failure, so a GPU check cannot pass on a
machine where no GPU test ran.  Without it the GPU tests skip where no GPU is
usable, as everywhere else."""

import os

import pytest

REQUIRE_CUDA = "APPROXTRAIN_REQUIRE_CUDA"


def cuda_required():
    return os.environ.get(REQUIRE_CUDA, "") not in ("", "0")


# trylast: the innermost wrapper, so every other wrapper (tests/conftest.py's
# skip summary) sees the failure, not the skip.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and cuda_required()
        and item.get_closest_marker("cuda") is not None
    ):
        longrepr = report.longrepr
        reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (
            f"{REQUIRE_CUDA}={os.environ[REQUIRE_CUDA]}: this GPU test must run, but it was skipped ({reason})"
        )
