#!/usr/bin/env bash
# Create .venv/ at the project root and install the project with every extra into it.
# Idempotent: once pyproject.toml's SHA-256 is recorded in the stamp file, a second run
# does nothing until pyproject.toml changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv
stamp="$venv/.setup-pyproject.sha256"

if [[ ! -x "$venv/bin/python" ]]; then
    python=$(command -v python3.11 || command -v python3 || true)
    if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup.sh: needs Python 3.11 or newer on PATH as python3.11 or python3" >&2
        exit 1
    fi
    echo "setup.sh: creating $venv with $python"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"  # a half-made venv would pass the check above next time
        echo "setup.sh: '$python -m venv' failed; on Debian/Ubuntu install python3.11-venv" >&2
        exit 1
    fi
fi

wanted=$("$venv/bin/python" -c \
    'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
    exit 0
fi

echo "setup.sh: installing the project and its cpu, training and dev extras into $venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[cpu,training,dev]"
echo "$wanted" >"$stamp"
