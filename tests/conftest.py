"""Shared test setup.  Must not import TensorFlow: tests/cuda and the core
tests run on GPU machines that have no TF.

Two rules hold for every test here:

- Isolation: APPROXTRAIN_HOME (the user's multiplier store and table cache) points at a
  temporary directory for the whole run, set before any test module is imported, so a
  damaged or odd table in the user's own store cannot change what the suite sees, and
  nothing the suite registers reaches it.  Tests that need an empty store of their own
  still set one with monkeypatch.
- No silent skips on CI: with CI=true (which .ci/run exports) a skipped test fails the
  run unless it is a GPU-only test (marked ``cuda``): a missing TensorFlow, op library,
  dataset or compiler must not pass as "skipped".  The skip summary is always printed.
"""

import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests import amsim_reference directly

ON_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
# Skips allowed on CI: tests that need a usable GPU, which CI machines do not have.
GPU_ONLY_MARKER = "cuda"

_HOME = tempfile.mkdtemp(prefix="approxtrain-test-home-")
os.environ["APPROXTRAIN_HOME"] = _HOME


@pytest.fixture(autouse=True)
def isolated_approxtrain_home(monkeypatch):
    """Every test sees a temporary store: the run's own, or one a fixture made under the temp dir
    (the multiplier tests' module fixtures do); anything else is pointed back at the run's."""
    if not os.environ.get("APPROXTRAIN_HOME", "").startswith(tempfile.gettempdir() + os.sep):
        monkeypatch.setenv("APPROXTRAIN_HOME", _HOME)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty store of the test's own: APPROXTRAIN_HOME = tmp_path/home (created on first write)."""
    home = tmp_path / "home"
    monkeypatch.setenv("APPROXTRAIN_HOME", str(home))
    return home


_skipped = []  # (nodeid, reason, allowed)


def _reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((item.nodeid, _reason(report), item.get_closest_marker(GPU_ONLY_MARKER) is not None))


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped at import (importorskip, pytest.skip(allow_module_level))
        _skipped.append((report.nodeid, _reason(report), False))


def _forbidden():
    return [(nodeid, reason) for nodeid, reason, allowed in _skipped if not allowed]


def pytest_sessionfinish(session, exitstatus):
    if ON_CI and _forbidden() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    allowed = [(nodeid, reason) for nodeid, reason, ok in _skipped if ok]
    if allowed:
        terminalreporter.section("GPU-only tests skipped (allowed: no usable GPU here)")
        reasons = sorted({reason for _, reason in allowed})
        terminalreporter.write_line(f"{len(allowed)} tests marked '{GPU_ONLY_MARKER}': {'; '.join(reasons)}")
        for nodeid, _ in allowed:
            terminalreporter.write_line(f"  {nodeid}")
    forbidden = _forbidden()
    if forbidden:
        title = "SKIPS FAIL THIS RUN (CI=true)" if ON_CI else "skipped tests (CI=true would fail on these)"
        terminalreporter.section(title, red=ON_CI)
        for nodeid, reason in forbidden:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        if ON_CI:
            terminalreporter.write_line(
                f"error: {len(forbidden)} test(s) skipped outside the GPU-only tests; on CI every "
                "other test must run (install what the reasons above name: scripts/setup.sh does it)",
                red=True,
                bold=True,
            )
