#!/usr/bin/env bash
# The test command: set up (scripts/setup.sh), then the fast suite.
# Slow training tests are marked `slow` and run with:  scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
if [ "$#" -eq 0 ]; then
  set -- -m "not slow"
fi
exec "${PYTHON:-python3}" -m pytest tests "$@"
