#!/usr/bin/env bash
# Set up .venv/ if needed, then serve the model store's default model with uvicorn at
# http://${HOST:-127.0.0.1}:${PORT:-8000}. WBC_* variables configure the service.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
exec .venv/bin/uvicorn app.main:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
