#!/usr/bin/env bash
# Set up .venv/ (and Chromium for the browser tests) if needed, check the code (ruff's lint,
# ruff's formatting, mypy; all configured in pyproject.toml), then run the test suite;
# arguments go to pytest. The first check that fails stops the run before the tests, with its
# own exit status. pytest's exit status is kept, so "no tests ran" (5) fails like any other
# failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh --browser

check() {
    local name=$1
    shift
    echo "test.sh: $name" >&2
    local status=0
    "$@" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "test.sh: $name failed (exit status $status); fix it, then run ./scripts/test.sh" \
            "again (the tests did not run)" >&2
        exit "$status"
    fi
}

check "lint (ruff check .)" .venv/bin/ruff check .
check "format (ruff format --check .; 'ruff format .' fixes it)" .venv/bin/ruff format --check .
check "types (mypy)" .venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
