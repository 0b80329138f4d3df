#!/usr/bin/env bash
# Create .venv/ at the project root and install the project with every extra into it.
# Idempotent: once pyproject.toml's SHA-256 is recorded in the stamp file, a second run
# does nothing until pyproject.toml changes.
# With --browser it also makes sure Chromium is there for the browser tests (Playwright
# drives Debian's package; its own browser download is not used): when it is missing and
# this runs as root with apt-get, it is installed quietly; otherwise those tests skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

install_browser() {
    if command -v chromium >/dev/null || command -v chromium-headless-shell >/dev/null; then
        return 0
    fi
    if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "setup.sh: chromium is missing and only root with apt-get can install it here;" \
            "the browser tests will skip" >&2
        return 0
    fi
    echo "setup.sh: installing chromium with apt-get for the browser tests"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
        echo "setup.sh: 'apt-get install chromium' failed" >&2
        [[ "${CI:-}" == true ]] && exit 1  # CI must not quietly skip the browser tests
    fi
    return 0
}

if [[ "${1:-}" == --browser ]]; then
    install_browser
fi

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
