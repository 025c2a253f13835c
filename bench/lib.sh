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
