#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: `./scripts/lock.sh`, then commit requirements/.
# Run it after changing any dependency in pyproject.toml (tests/test_lock.py fails until the
# lock is in step). Arguments go to both `uv pip compile` runs, e.g. `--upgrade` to move every
# pin to the newest release pyproject.toml allows, or `--upgrade-package numpy`.
#
#   requirements/dev.txt      the base dependencies with the cpu, training and dev extras:
#                             what scripts/setup.sh installs into .venv/
#   requirements/service.txt  the base dependencies alone, for the GPU image, whose base
#                             image brings TensorFlow; resolved with dev.txt as constraints, so
#                             each package it shares with dev.txt (numpy, protobuf, ...) has
#                             the version tested here beside TensorFlow 2.21
#   requirements/training.txt the base dependencies with the training extra, for the training
#                             image (deploy/kubernetes/training.Dockerfile), likewise
#                             constrained by dev.txt and without TensorFlow
#
# Both pin every package, transitively, with the SHA-256 of each of its files on PyPI, for
# CPython 3.11 on x86_64 Linux (glibc 2.28 or newer), the Python of the GPU base image. uv
# (pinned below) runs from its own virtual environment outside the project.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

uv_version=0.13.9
tools=${XDG_CACHE_HOME:-$HOME/.cache}/wbc-explain/lock-tools

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv "$tools"
if [[ "$("$tools/bin/python" -m uv --version 2>/dev/null)" != "uv $uv_version"* ]]; then
    echo "lock.sh: installing uv $uv_version into $tools"
    "$tools/bin/python" -m pip install --quiet "uv==$uv_version"
fi

compile() {
    "$tools/bin/python" -m uv pip compile --quiet --generate-hashes \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --index-url https://pypi.org/simple --no-config \
        --custom-compile-command ./scripts/lock.sh "$@"
}

mkdir -p requirements
compile pyproject.toml --extra cpu --extra training --extra dev \
    --output-file requirements/dev.txt "$@"
compile pyproject.toml --constraint requirements/dev.txt \
    --output-file requirements/service.txt "$@"
compile pyproject.toml --extra training --constraint requirements/dev.txt \
    --output-file requirements/training.txt "$@"
echo "lock.sh: wrote requirements/dev.txt, requirements/service.txt and requirements/training.txt"
