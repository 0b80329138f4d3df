#!/usr/bin/env bash
# Set up .venv/ and the MLServer baseline's bench/.mlserver-venv/ if needed, then run the
# benchmarks (see docs/benchmarks.md). With no suite named, every suite runs in turn:
#   run        the service vs MLServer and a naive baseline, the floor, the forward curve
#   stability  first explanation per method after ready; RSS over a 10,000-request soak
#   overload   an /explain flood with a /predict stream and probes
#   page       the web page's time to results against the two API calls
# `./scripts/bench.sh SUITE ARGS...` runs one suite with its own arguments;
# `./scripts/bench.sh --flag ...` passes the flags to `run` (as before).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

suites=(run stability overload page)
suite=all
if [[ $# -gt 0 && " ${suites[*]} " == *" $1 "* ]]; then
    suite=$1
    shift
elif [[ $# -gt 0 ]]; then
    suite=run
fi

./scripts/setup.sh
[[ $suite == run || $suite == all ]] && ./scripts/setup-mlserver.sh
# The run suite's C client (wrk, HTTP/1.1 keep-alive): Debian's package, installed when this
# runs as root with apt-get; otherwise `python -m bench.run` says how to get it.
if [[ ($suite == run || $suite == all) && -z "$(command -v wrk)" && $EUID -eq 0 ]] &&
    command -v apt-get >/dev/null; then
    echo "bench.sh: installing wrk with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
if [[ $suite == page || $suite == all ]]; then
    ./scripts/setup.sh --browser
fi

if [[ $suite != all ]]; then
    exec .venv/bin/python -m "bench.$suite" "$@"
fi
for name in "${suites[@]}"; do
    echo "bench.sh: suite $name" >&2
    .venv/bin/python -m "bench.$name"
done
