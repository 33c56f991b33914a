"""The version has one source, approxtrain/_version.py: the package, setup.py and the binaries agree."""

import subprocess
import sys
from pathlib import Path

import approxtrain
from approxtrain import _version

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_everywhere():
    assert approxtrain.__version__ == _version.__version__
    setup = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert setup.stdout.strip().splitlines()[-1] == approxtrain.__version__
    # setup.py hands it to CMake (-DAPPROXTRAIN_VERSION), which bakes it into _core.
    assert approxtrain.build_info()["version"] == approxtrain.__version__


def test_package_declares_its_type_hints():
    assert (Path(approxtrain.__file__).parent / "py.typed").is_file()
