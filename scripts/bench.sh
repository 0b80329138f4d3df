#!/usr/bin/env bash
# Set up .venv/ if needed, then run the benchmark (real service vs a naive baseline);
# arguments go to bench.run (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
exec .venv/bin/python -m bench.run "$@"
