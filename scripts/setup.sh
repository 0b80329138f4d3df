#!/usr/bin/env bash
# Create .venv/ at the project root and install into it the locked dependencies of the
# project and of its cpu, training and dev extras (requirements/dev.txt, every package pinned
# with its hashes; ./scripts/lock.sh refreshes it), then the project itself, editable.
# Idempotent: once the SHA-256 of the lock and pyproject.toml is recorded in the stamp file,
# a second run does nothing until one of them changes.
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

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv .venv
install_locked() {
    pip_install .venv --require-hashes -r requirements/dev.txt
    # The lock holds every dependency, so the project brings none of its own.
    .venv/bin/python -m pip install --quiet --no-deps -e .
}
run_when_changed .venv .venv/.setup-lock.sha256 \
    "the locked dependencies (requirements/dev.txt) and the project" \
    requirements/dev.txt pyproject.toml -- install_locked
