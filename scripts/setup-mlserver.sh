#!/usr/bin/env bash
# Create bench/.mlserver-venv/ for the MLServer baseline of the benchmark and install
# bench/mlserver-requirements.txt into it. Idempotent: does nothing until that file changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv bench/.mlserver-venv
install_when_changed bench/.mlserver-venv bench/.mlserver-venv/.setup-requirements.sha256 \
    bench/mlserver-requirements.txt bench/mlserver-requirements.txt \
    -r bench/mlserver-requirements.txt
