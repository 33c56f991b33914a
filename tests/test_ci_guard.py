"""The CI guard of tests/conftest.py: on CI a skip fails the run unless the test is GPU-only."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SAMPLE = """
import pytest

def test_runs():
    assert True

@pytest.mark.cuda
def test_gpu_only():
    pytest.skip("no usable CUDA device")

def test_needs_dataset():
    {body}
"""


def _run(tmp_path, ci, body="assert True"):
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    shutil.copy(os.path.join(HERE, "conftest.py"), suite / "conftest.py")
    shutil.copy(os.path.join(HERE, "amsim_reference.py"), suite / "amsim_reference.py")
    (suite / "test_sample.py").write_text(SAMPLE.format(body=body))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    cuda: GPU only\naddopts = -rs\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "suite", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gpu_only_skips_pass_on_ci_and_are_listed(tmp_path):
    proc = _run(tmp_path, ci=True)
    assert proc.returncode == 0, proc.stdout
    assert "1 tests marked 'cuda': no usable CUDA device" in proc.stdout
    assert "suite/test_sample.py::test_gpu_only" in proc.stdout


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "not-ci"])
def test_any_other_skip_fails_on_ci_only(tmp_path, ci):
    proc = _run(tmp_path, ci, body='pytest.skip("dataset-fashion-mnist is not installed")')
    assert proc.returncode == (1 if ci else 0), proc.stdout
    assert "suite/test_sample.py::test_needs_dataset: dataset-fashion-mnist is not installed" in proc.stdout
    if ci:
        assert "SKIPS FAIL THIS RUN (CI=true)" in proc.stdout
        assert "error: 1 test(s) skipped outside the GPU-only tests" in proc.stdout
    else:
        assert "skipped tests (CI=true would fail on these)" in proc.stdout


def test_a_module_skipped_at_import_fails_on_ci(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_needs_tf.py").write_text('import pytest\npytest.importorskip("no_such_module_xyz")\n')
    proc = _run(tmp_path, ci=True)
    assert proc.returncode == 1, proc.stdout
    assert "suite/test_needs_tf.py: could not import 'no_such_module_xyz'" in proc.stdout


def test_the_store_is_a_temporary_directory():
    import tempfile
    from pathlib import Path

    from approxtrain.multipliers import registry

    home = registry.home()
    assert home.is_relative_to(tempfile.gettempdir()), home
    assert home != Path.home() / ".approxtrain"
