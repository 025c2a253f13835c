#!/usr/bin/env bash
# Sampling speed: leaf stacks per second that `pymri record` collects at its highest rate,
# beside CPython 3.15's own profiler (`python3.15 -m profiling.sampling attach -a`) on a 3.15
# target and py-spy (`py-spy record --nonblocking`) on a 3.14 target, in the same run.
#
# Target: bench/workloads/deep_busy.py, 4 threads spinning in `leaf` about 35 frames deep.
# Each tool records the target for --seconds of wall time at its highest rate (pymri 100 kHz,
# CPython's profiler 100 kHz, py-spy 10 kHz) into collapsed stacks; a leaf stack is a stack whose
# innermost frame is `leaf`. Reported: leaf stacks per second, and each tool against pymri.
#
# Usage: bench/record.sh [--seconds N]   (default 5)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache, holding interpreters.env
#                        (default /var/cache/pymri/roots; provisioned if missing)
#   PYMRI_RECORD_VENV    virtualenv holding py-spy (default /var/cache/pymri/record-venv)
#
# Exit status: 0 when every tool ran and recorded leaf stacks, 1 when one failed, 2 on a usage
# error. Figures, not a test: nothing here fails because pymri is slower.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=5
while (($#)); do
    case $1 in
        --seconds) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; SECONDS_EACH=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && ((SECONDS_EACH >= 1 && SECONDS_EACH <= 600)) \
    || { echo "bench: --seconds must be a whole number from 1 to 600" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; the tools need ptrace rights)"

VENV=${PYMRI_RECORD_VENV:-/var/cache/pymri/record-venv}


pymri_binary

load_interpreters
SPEC314=$(lookup PYTHON314)
SPEC315=$(lookup PYTHON315)
[[ -n $SPEC314 && -n $SPEC315 ]] || die "no PYTHON314 or PYTHON315 among the interpreters"

if ! [[ -x $VENV/bin/py-spy ]]; then
    say "creating $VENV and installing py-spy"
    rm -rf -- "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check py-spy
    [[ -x $VENV/bin/py-spy ]] || die "py-spy did not install into $VENV"
fi

# Starts deep_busy.py under the interpreter SPEC (ROOT:EXE); sets TARGET_PID and TARGET_DIR
# (the scratch directory as seen from here) and TARGET_INSIDE (as the target sees it).
start_target() {
    local root=${1%%:*} exe=${1#*:}
    TARGET_INSIDE=/tmp/pymri-record-bench-$$-$RANDOM
    TARGET_DIR=$root$TARGET_INSIDE
    mkdir -p "$TARGET_DIR"
    CLEAN_DIRS+=("$TARGET_DIR")
    cp "$REPO/bench/workloads/deep_busy.py" "$TARGET_DIR/"
    mkfifo "$TARGET_DIR/ready"
    chroot "$root" "$exe" "$TARGET_INSIDE/deep_busy.py" "$TARGET_INSIDE/ready" >/dev/null 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    local line
    read -r -t 30 line <"$TARGET_DIR/ready" || die "the target under $exe did not become ready"
    [[ $line == ready ]] || die "the target said '$line'"
}

# Leaf stacks in a collapsed file: the counts of lines whose innermost frame is `leaf`.
leaf_stacks() {
    awk '{ n = $NF; $NF = ""; k = split($0, f, ";"); if (f[k] ~ /(^|[^A-Za-z_])leaf[ (:]/) s += n } END { print s + 0 }' "$1"
}

ROWS=()
row() { ROWS+=("$1|$2|$3"); }

run_pymri() {
    local out=$TARGET_DIR/pymri.txt
    "$PYMRI" record "$TARGET_PID" -r 100000 -d "$SECONDS_EACH" -f collapsed -o "$out" 2>"$TARGET_DIR/pymri.err" \
        || die "pymri record failed: $(cat "$TARGET_DIR/pymri.err")"
    leaf_stacks "$out"
}

say "3.15 target: pymri record, then python3.15 -m profiling.sampling"
start_target "$SPEC315"
ROOT315=${SPEC315%%:*}
EXE315=${SPEC315#*:}
P=$(run_pymri)
row "pymri record -r 100000" "3.15" "$P"
chroot "$ROOT315" "$EXE315" -m profiling.sampling attach -a -r 100khz -d "$SECONDS_EACH" --collapsed \
    -o "$TARGET_INSIDE/cpython.txt" "$TARGET_PID" >/dev/null 2>"$TARGET_DIR/cpython.err" \
    || die "profiling.sampling failed: $(cat "$TARGET_DIR/cpython.err")"
row "python3.15 -m profiling.sampling -r 100khz" "3.15" "$(leaf_stacks "$TARGET_DIR/cpython.txt")"

say "3.14 target: pymri record, then py-spy record --nonblocking"
start_target "$SPEC314"
row "pymri record -r 100000" "3.14" "$(run_pymri)"
# py-spy's --duration counts samples (duration x rate), not time: it is stopped after the same
# wall time as the others instead, with SIGINT, on which it writes what it has.
status=0
timeout -s INT "$SECONDS_EACH" "$VENV/bin/py-spy" record --nonblocking -r 10000 -f raw \
    -o "$TARGET_DIR/pyspy.txt" -p "$TARGET_PID" >/dev/null 2>"$TARGET_DIR/pyspy.err" || status=$?
((status == 0 || status == 124)) && [[ -s $TARGET_DIR/pyspy.txt ]] \
    || die "py-spy failed: $(cat "$TARGET_DIR/pyspy.err")"
row "py-spy record --nonblocking -r 10000" "3.14" "$(leaf_stacks "$TARGET_DIR/pyspy.txt")"

printf '\n%-44s %-7s %18s %10s\n' "tool" "target" "leaf stacks/s" "vs pymri"
declare -A BASE
for r in "${ROWS[@]}"; do
    IFS='|' read -r tool target stacks <<<"$r"
    ((stacks > 0)) || die "$tool recorded no leaf stack"
    [[ $tool == pymri* ]] && BASE[$target]=$stacks
    printf '%-44s %-7s %18.0f %9.2fx\n' "$tool" "$target" "$(bc -l <<<"$stacks / $SECONDS_EACH")" \
        "$(bc -l <<<"$stacks / ${BASE[$target]}")"
done
