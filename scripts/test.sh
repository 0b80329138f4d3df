#!/usr/bin/env bash
# Set up .venv/ (and Chromium for the browser tests) if needed, then run the test suite;
# arguments go to pytest. pytest's exit status is kept, so "no tests ran" (5) fails like any
# other failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh --browser
exec .venv/bin/python -m pytest "$@"
