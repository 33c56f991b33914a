# Sourced by setup.sh, test.sh and main_job.sh: picks the Python environment approxtrain lives in,
# the same way in all three, and sets PYTHON to its interpreter.
#   1. PYTHON set by the caller: that interpreter, as it is (the caller knows where it installs).
#   2. An active virtual environment ($VIRTUAL_ENV) or conda environment ($CONDA_PREFIX): its python.
#   3. Otherwise .venv in the repository (setup.sh creates it), so a stock system Python that refuses
#      pip installs (PEP 668, "externally-managed-environment") is never touched.
# shellcheck shell=bash
APPROXTRAIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APPROXTRAIN_VENV="$APPROXTRAIN_ROOT/.venv"
if [ -n "${PYTHON:-}" ]; then
    APPROXTRAIN_ENV_KIND="given"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python"; APPROXTRAIN_ENV_KIND="active virtual environment"
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
    PYTHON="$CONDA_PREFIX/bin/python"; APPROXTRAIN_ENV_KIND="conda environment"
else
    PYTHON="$APPROXTRAIN_VENV/bin/python"; APPROXTRAIN_ENV_KIND="repository .venv"
fi
export PYTHON
