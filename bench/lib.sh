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
