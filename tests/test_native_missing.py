"""A tree whose compiled parts are missing still imports, and the first use says what to rebuild.

A copy of the package without its compiled files stands for a source checkout after `git clean`
(or an install without a compiler): `import approxtrain` and the multiplier registry must work,
and the first call into the native core must raise one error naming the missing file and the
command that rebuilds it -- not the "partially initialized module" ImportError Python gives for an
import circle.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import approxtrain

PACKAGE = os.path.dirname(approxtrain.__file__)


def _copy_without_native(dst):
    """dst/approxtrain: the Python sources and tables of the package, none of its compiled files."""
    shutil.copytree(
        PACKAGE,
        dst / "approxtrain",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "_approxtrain_ops.tf_version"),
    )
    (dst / "setup.py").write_text("# stands for a source checkout\n")
    return dst


# An editable install of the real package adds a finder that would supply approxtrain._core from the
# checkout when the copy lacks it: the copy is run without it, as a tree on its own.
_WITHOUT_EDITABLE_FINDER = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in getattr(f, '__name__', type(f).__name__).lower()]\n"
)


def _run(tree, code, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["APPROXTRAIN_HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_EDITABLE_FINDER + textwrap.dedent(code)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_core_imports_and_first_use_names_file_and_command(tmp_path):
    tree = _copy_without_native(tmp_path / "tree")
    proc = _run(
        tree,
        """
        import numpy as np
        import approxtrain as at
        assert at.__file__.startswith(%r), at.__file__   # the copy, not the installed package
        assert "mbm7" in at.multipliers.names()
        m = at.multipliers.get("mbm7")                    # tables are data: no compiled code needed
        assert m.lut.shape == (1 << 14,)
        try:
            at.core.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), m)
        except ImportError as e:
            print(type(e).__name__ + ": " + str(e))
        """  # noqa: UP031 - the script's own braces stay literal
        % str(tree),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    expected = (
        f"NativeCoreError: approxtrain's native core cannot be used: {tree}/approxtrain/_core.*.so "
        "does not exist (never built, or the build was cleaned). Rebuild it by running "
        f"`pip install --no-build-isolation -e .` in the repository ({tree})."
    )
    assert proc.stdout.strip() == expected


def test_build_info_names_the_missing_core_too(tmp_path):
    tree = _copy_without_native(tmp_path / "tree")
    proc = _run(tree, "import approxtrain as at; at.build_info()", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"approxtrain._native.NativeCoreError: approxtrain's native core cannot be used: "
        f"{tree}/approxtrain/_core.*.so does not exist (never built, or the build was cleaned). Rebuild it by "
        f"running `pip install --no-build-isolation -e .` in the repository ({tree})."
    )


def test_a_core_that_does_not_import_is_named_with_the_reason(tmp_path):
    tree = _copy_without_native(tmp_path / "tree")
    broken = tree / "approxtrain" / ("_core" + __import__("sysconfig").get_config_var("EXT_SUFFIX"))
    broken.write_bytes(b"not a shared object")
    proc = _run(
        tree,
        """
        import approxtrain as at
        try:
            at.core.num_threads()
        except ImportError as e:
            print(str(e))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"approxtrain's native core cannot be used: {broken} exists but does not import (")
    assert proc.stdout.strip().endswith(f"`pip install --no-build-isolation -e .` in the repository ({tree}).")
