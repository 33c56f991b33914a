#!/usr/bin/env bash
# The test command: set up (scripts/setup.sh), then the fast suite in approxtrain's environment
# (scripts/python_env.sh). Slow training tests are marked `slow` and run with:  scripts/test.sh -m slow
# SKIP_SETUP=1 skips the setup (the package must then be built already).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh
fi
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
exec "$PYTHON" -m pytest tests --durations=15 "$@"
