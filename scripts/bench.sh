#!/usr/bin/env bash
# Set up .venv/ and the MLServer baseline's bench/.mlserver-venv/ if needed, then run the
# benchmark (the service vs MLServer and a naive baseline); arguments go to bench.run
# (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
./scripts/setup-mlserver.sh
exec .venv/bin/python -m bench.run "$@"
