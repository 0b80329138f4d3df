# Sourced (not run) by scripts/setup.sh, setup-mlserver.sh and lock.sh: make a virtual
# environment once, and install into it again only when the files its packages come from
# change (their SHA-256 is kept in a stamp file inside the environment).
# Messages start with the name of the script that sourced this.

# ensure_venv DIR: create the virtual environment DIR with Python 3.11 or newer (python3.11
# or python3 on PATH), unless DIR/bin/python is already there.
ensure_venv() {
    local venv=$1 me python
    me=${0##*/}
    [[ -x "$venv/bin/python" ]] && return 0
    python=$(command -v python3.11 || command -v python3 || true)
    if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "$me: needs Python 3.11 or newer on PATH as python3.11 or python3" >&2
        exit 1
    fi
    echo "$me: creating $venv with $python"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"  # a half-made venv would pass the check above next time
        echo "$me: '$python -m venv' failed; on Debian/Ubuntu install python3.11-venv" >&2
        exit 1
    fi
}

# run_when_changed DIR STAMP WHAT SOURCES... -- COMMAND...: unless STAMP holds the SHA-256 of
# SOURCES (their bytes one after another), run COMMAND (WHAT names what it installs into DIR)
# and record that SHA-256 in STAMP. A COMMAND that fails records nothing, so the next run
# tries again.
run_when_changed() {
    local venv=$1 stamp=$2 what=$3 me wanted
    shift 3
    local sources=()
    while [[ $1 != -- ]]; do
        sources+=("$1")
        shift
    done
    shift
    me=${0##*/}
    wanted=$("$venv/bin/python" -c '
import hashlib, sys
digest = hashlib.sha256()
for path in sys.argv[1:]:
    with open(path, "rb") as source:
        digest.update(source.read())
print(digest.hexdigest())' "${sources[@]}")
    if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
        return 0
    fi
    echo "$me: installing $what into $venv"
    "$@"
    echo "$wanted" >"$stamp"
}

# install_when_changed DIR STAMP SOURCE WHAT PIP_ARGS...: unless STAMP holds SOURCE's
# SHA-256, upgrade pip in DIR, `pip install PIP_ARGS...` (WHAT names it in the message), and
# record SOURCE's SHA-256 in STAMP.
install_when_changed() {
    local venv=$1 stamp=$2 source=$3 what=$4
    shift 4
    run_when_changed "$venv" "$stamp" "$what" "$source" -- pip_install "$venv" "$@"
}

# pip_install DIR PIP_ARGS...: upgrade pip in DIR, then `pip install --quiet PIP_ARGS...`.
pip_install() {
    local venv=$1
    shift
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$@"
}
