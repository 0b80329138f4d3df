#!/usr/bin/env bash
# Create bench/.mlserver-venv/ for the MLServer baseline of the benchmark and install
# bench/mlserver-requirements.txt into it. Idempotent: does nothing until that file changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=bench/.mlserver-venv
requirements=bench/mlserver-requirements.txt
stamp="$venv/.setup-requirements.sha256"

if [[ ! -x "$venv/bin/python" ]]; then
    python=$(command -v python3.11 || command -v python3 || true)
    if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup-mlserver.sh: needs Python 3.11 or newer on PATH as python3.11 or python3" >&2
        exit 1
    fi
    echo "setup-mlserver.sh: creating $venv with $python"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        echo "setup-mlserver.sh: '$python -m venv' failed; on Debian/Ubuntu install python3.11-venv" >&2
        exit 1
    fi
fi

wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
    exit 0
fi

echo "setup-mlserver.sh: installing $requirements into $venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$requirements"
echo "$wanted" >"$stamp"
