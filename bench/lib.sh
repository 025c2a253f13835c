# Shared by the benchmark scripts (sourced, not run): messages, and the processes and
# directories a run starts, killed and removed however the script ends.

die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

PIDS=()
CLEAN_DIRS=()
cleanup() {
    local pid dir
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for dir in "${CLEAN_DIRS[@]}"; do rm -rf -- "$dir"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}

# Sets PYMRI: $PYMRI_BIN, or a release build of this checkout.
pymri_binary() {
    if [[ -n ${PYMRI_BIN:-} ]]; then
        PYMRI=$PYMRI_BIN
    else
        say "building pymri (cargo build --release)"
        (cd "$REPO" && cargo build --release --quiet -p pymri)
        PYMRI=$REPO/target/release/pymri
    fi
    [[ -x $PYMRI ]] || die "no pymri binary at $PYMRI"
}

# Sets INTERPRETERS (NAME=ROOT:EXE lines) from the roots cache, provisioning it if missing.
load_interpreters() {
    if [[ -r $ROOTS/interpreters.env ]]; then
        INTERPRETERS=$(cat "$ROOTS/interpreters.env")
    else
        say "provisioning interpreters (scripts/provision-interpreters.sh)"
        INTERPRETERS=$(bash "$REPO/scripts/provision-interpreters.sh")
    fi
}

# The ROOT:EXE of interpreter NAME (PYTHON314, ...), empty if there is none.
lookup() { sed -n "s/^$1=//p" <<<"$INTERPRETERS" | head -n1; }

# Makes sure $VENV (default /var/cache/pymri/bench-venv) holds py-spy and pystack on a real
# interpreter (not a version-manager shim: tens of ms per start), creating it if needed.
peer_venv() {
    VENV=${PYMRI_BENCH_VENV:-/var/cache/pymri/bench-venv}
    is_shim() { [[ $(readlink -f "$1") == */shims/* ]]; }
    venv_ok() {
        [[ -x $VENV/bin/python && -x $VENV/bin/py-spy && -x $VENV/bin/pystack ]] \
            && ! is_shim "$VENV/bin/python" \
            && "$VENV/bin/python" -c 'import pystack' 2>/dev/null
    }
    if ! venv_ok; then
        if [[ -n ${PYMRI_BENCH_PYTHON:-} ]]; then
            BASE_PY=$PYMRI_BENCH_PYTHON
        else
            # `python3` may be a version-manager shim (tens of ms per start): ask it for the real
            # interpreter once and build the virtualenv on that.
            BASE_PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
        fi
        is_shim "$BASE_PY" && die "$BASE_PY is a version-manager shim; set PYMRI_BENCH_PYTHON"
        say "creating $VENV with $BASE_PY and installing py-spy, pystack"
        rm -rf -- "$VENV"
        "$BASE_PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check py-spy pystack
        venv_ok || die "py-spy or pystack did not install into $VENV"
    fi
    # pystack's console script runs through its shebang: make sure that is the venv's real python.
    PYSTACK_SHEBANG=$(head -n1 "$VENV/bin/pystack")
    PYSTACK_SHEBANG=${PYSTACK_SHEBANG#\#!}
    PYSTACK_SHEBANG=${PYSTACK_SHEBANG%% *}
    if is_shim "$PYSTACK_SHEBANG"; then
        die "$VENV/bin/pystack starts through a shim ($PYSTACK_SHEBANG)"
    fi
}
