"""Build approxtrain: setup.py drives CMake, and CMake builds everything native.

The native parts are approxtrain/_core (pybind11; CPU and, when nvcc is found,
CUDA kernels) and approxtrain/_approxtrain_ops.so (the TensorFlow op library,
compiled against the TensorFlow installed in the build environment).

Environment knobs:
  APPROXTRAIN_CUDA=0            skip the CUDA kernels even when nvcc is found
  APPROXTRAIN_TF=0              skip the TensorFlow op library
  APPROXTRAIN_CUDA_ARCHS="80;90"  CUDA architectures
  CMAKE_ARGS="..."              extra CMake arguments
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _version():
    """__version__ from approxtrain/_version.py, read as text: the package cannot be imported before it is built."""
    text = (ROOT / "approxtrain" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if match is None:
        raise RuntimeError(f'no __version__ = "..." line in {ROOT / "approxtrain" / "_version.py"}')
    return match.group(1)


VERSION = _version()


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def run(self):
        super().run()
        in_source = self.inplace or getattr(self, "editable_mode", False)
        tables = (ROOT if in_source else Path(self.build_lib).resolve()) / "approxtrain" / "tables"
        _build_shipped_tables(tables)

    def build_extension(self, ext):
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DAPPROXTRAIN_OUTPUT_DIR={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DAPPROXTRAIN_VERSION={VERSION}",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DAPPROXTRAIN_CUDA=" + ("OFF" if os.environ.get("APPROXTRAIN_CUDA") == "0" else "ON"),
            "-DAPPROXTRAIN_TF=" + ("OFF" if os.environ.get("APPROXTRAIN_TF") == "0" else "ON"),
        ]
        if os.environ.get("APPROXTRAIN_CUDA_ARCHS"):
            args.append(f"-DAPPROXTRAIN_CUDA_ARCHS={os.environ['APPROXTRAIN_CUDA_ARCHS']}")
        try:
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        args += os.environ.get("CMAKE_ARGS", "").split()
        generator = ["-G", "Ninja"] if _have("ninja") else []
        subprocess.run(["cmake", str(ROOT), *generator, *args], cwd=build_temp, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp, check=True)

    # CMake also writes the TF op library and its TF-version stamp next to
    # _core; in-place and editable builds copy them into the package too.
    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        package_dir = Path(self.get_finalized_command("build_py").get_package_dir("approxtrain"))
        for name in ("_approxtrain_ops.so", "_approxtrain_ops.tf_version"):
            built = Path(self.build_lib) / "approxtrain" / name
            if built.exists():
                self.copy_file(str(built), str(package_dir / name), level=self.verbose)


def _build_shipped_tables(out_dir):
    """Builds approxtrain/tables/*.amlut from multipliers/*.c.

    approxtrain.multipliers is loaded on its own (approxtrain/__init__ needs
    the built _core, which a non-inplace build has not put in the source tree).
    """
    import importlib.util

    pkg_dir = ROOT / "approxtrain" / "multipliers"
    spec = importlib.util.spec_from_file_location(
        "_approxtrain_multipliers_build", pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    written = module.build_shipped_tables(ROOT / "multipliers", out_dir)
    print(f"built {len(written)} multiplier tables into {out_dir}")


def _have(program):
    from shutil import which

    return which(program) is not None


setup(
    name="approxtrain",
    version=VERSION,
    description="Train Keras models with simulated approximate floating-point multipliers (AMSim), CPU and CUDA",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["approxtrain", "approxtrain.*"]),
    package_data={"approxtrain": ["tables/*.amlut", "py.typed"]},
    ext_modules=[CMakeExtension("approxtrain._core")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy>=1.24", "matplotlib>=3.7"],
    extras_require={
        "tf": ["tensorflow==2.21.0", "keras>=3.10"],
        "test": ["pytest>=8"],
    },
    entry_points={"console_scripts": ["approxtrain=approxtrain.cli:main"]},
    zip_safe=False,
)
