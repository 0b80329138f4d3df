# Sourced (not run) by scripts/setup.sh and scripts/setup-mlserver.sh: make a virtual
# environment once, and install into it again only when the file its packages come from
# changes (that file's SHA-256 is kept in a stamp file inside the environment).
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

# install_when_changed DIR STAMP SOURCE WHAT PIP_ARGS...: unless STAMP holds SOURCE's
# SHA-256, upgrade pip in DIR, `pip install PIP_ARGS...` (WHAT names it in the message), and
# record SOURCE's SHA-256 in STAMP.
install_when_changed() {
    local venv=$1 stamp=$2 source=$3 what=$4 me wanted
    shift 4
    me=${0##*/}
    wanted=$("$venv/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$source")
    if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
        return 0
    fi
    echo "$me: installing $what into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$@"
    echo "$wanted" >"$stamp"
}
