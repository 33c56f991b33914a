#!/usr/bin/env bash
# Sets up approxtrain on a fresh Debian/Ubuntu machine: the offline dataset, a Python
# environment (scripts/python_env.sh: the active venv/conda env, else .venv in the repo),
# TensorFlow + build tools in it, then the package itself (CMake builds _core, the CUDA
# kernels when nvcc is found, and the TF op library against the TensorFlow installed
# there -- hence --no-build-isolation).
# Idempotent: a second run reinstalls (the build takes 2-3 minutes, mostly CUDA).
# Under CI=true every missing piece is an error; elsewhere a missing dataset is a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
APT_UPDATED=0
apt_install() {  # apt_install PACKAGE...: installs Debian packages, updating the lists once
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        echo "setup: need root (or sudo) to install $*" >&2
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -qq && APT_UPDATED=1 || return 1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}
fail() { echo "setup: error: $*" >&2; exit 1; }

DATASET=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$DATASET" ]; then
    echo "== installing the offline Fashion-MNIST (Debian package dataset-fashion-mnist)"
    if ! apt_install dataset-fashion-mnist || [ ! -f "$DATASET" ]; then
        msg="could not install the Debian package dataset-fashion-mnist (run as root: apt-get update && apt-get install dataset-fashion-mnist); without it fashion_mnist needs --data-dir or a download"
        [ "${CI:-}" = true ] && fail "$msg"
        echo "setup: warning: $msg" >&2
    fi
fi

if [ "$APPROXTRAIN_ENV_KIND" = "repository .venv" ] && [ ! -x "$PYTHON" ]; then
    BASE="${APPROXTRAIN_BASE_PYTHON:-python3}"
    command -v "$BASE" >/dev/null || fail "no $BASE on PATH: install Python >= 3.10 (apt-get install python3)"
    echo "== creating $APPROXTRAIN_VENV from $(command -v "$BASE") ($("$BASE" --version 2>&1))"
    if ! "$BASE" -c "import ensurepip, venv" 2>/dev/null; then
        ver=$("$BASE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        echo "== $BASE has no venv/ensurepip module: installing python3-venv"
        apt_install python3-venv "python$ver-venv" || fail "$BASE cannot create virtual environments; install python3-venv (apt-get install python3-venv python$ver-venv) or activate an environment of your own"
    fi
    # A venv records its own path in its scripts, so it is made in place; a failed one is removed
    # (the check above is for its python, so a half-made .venv would be made again).
    "$BASE" -m venv "$APPROXTRAIN_VENV" || { rm -rf "$APPROXTRAIN_VENV"; fail "$BASE -m venv failed"; }
fi
echo "== Python: $PYTHON ($APPROXTRAIN_ENV_KIND, $("$PYTHON" --version 2>&1))"

# The pybind11 module and the op library need the interpreter's C headers (python3-dev on Debian).
PY_INCLUDE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ ! -f "$PY_INCLUDE/Python.h" ]; then
    ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "== $PY_INCLUDE/Python.h is missing: installing python3-dev"
    apt_install python3-dev "python$ver-dev" || fail "Python headers missing ($PY_INCLUDE/Python.h): install python3-dev"
fi

echo "== installing TensorFlow, Keras and the build tools"
"$PYTHON" -m pip install -q --disable-pip-version-check -r requirements.txt

echo "== building and installing approxtrain (editable)"
"$PYTHON" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
"$PYTHON" -c "import approxtrain as at, json; print(json.dumps(at.build_info(), indent=1))"
if [ "$APPROXTRAIN_ENV_KIND" = "repository .venv" ]; then
    echo "== approxtrain is installed in $APPROXTRAIN_VENV: 'source .venv/bin/activate' to use it in a shell"
fi
