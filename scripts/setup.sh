#!/usr/bin/env bash
# Sets up approxtrain on a fresh Debian/Ubuntu machine: the offline dataset,
# TensorFlow + build tools, then the package itself (CMake builds _core, the
# CUDA kernels when nvcc is found, and the TF op library against the
# TensorFlow installed here -- hence --no-build-isolation).
# Idempotent: a second run reinstalls (the build takes 2-3 minutes, mostly CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "== installing the offline Fashion-MNIST (Debian package dataset-fashion-mnist)"
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; }; then
    echo "warning: could not install dataset-fashion-mnist; fashion_mnist will need --data-dir or a download" >&2
  fi
fi

echo "== installing TensorFlow, Keras and the build tools"
$PYTHON -m pip install -q --disable-pip-version-check -r requirements.txt

echo "== building and installing approxtrain (editable)"
$PYTHON -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
$PYTHON -c "import approxtrain as at, json; print(json.dumps(at.build_info(), indent=1))"
