#!/usr/bin/env bash
# What a `pymri doctor` window costs the target, and how long a report takes.
#
# Slowdown: bench/workloads/overhead.py (one thread doing a fixed unit of Python work without
# pause and counting units by its own clocks; four more wait) on 3.14 and 3.11. Each of --reps
# rounds measures, in alternating order, the target's units per second over --seconds without
# pymri, and during a doctor window of the same length (default rate, 100 Hz; measured from the
# window's start until a second before its end). Two rates as in record_overhead.sh: per second
# of wall time, and per second of the working thread's own CPU time (what is left once CPU
# taken by other processes, pymri included, is out of the picture). The bar: at most 2% slower.
#
# Time to a report: --reps runs of `pymri doctor PID -d 1 --json` on the same target, wall
# time from start to exit, and that time less the 1 s window (opening the target, the closing
# sample, the analyses, the output). For reference, `py-spy dump --pid PID` on the same target
# (the one-shot look a user would otherwise take), when the benchmark virtualenv has py-spy.
#
# Usage: bench/doctor.sh [--seconds N] [--reps N]   (defaults 5 and 5)
#
# Environment (all optional):
#   PYMRI_BIN         pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS       interpreter roots cache, holding interpreters.env (default /var/cache/pymri/roots)
#   PYMRI_BENCH_VENV  virtualenv holding py-spy (default /var/cache/pymri/bench-venv; no py-spy row without it)
#
# Exit status: 0 when every round ran, 1 when one failed, 2 on a usage error. Figures, not a
# test: other load on the machine moves every figure; compare rows of one run.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=5
REPS=5
while (($#)); do
    case $1 in
        --seconds) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; SECONDS_EACH=$2; shift 2 ;;
        --reps) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; REPS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && ((SECONDS_EACH >= 2 && SECONDS_EACH <= 600)) \
    || { echo "bench: --seconds must be a whole number from 2 to 600" >&2; exit 2; }
[[ $REPS =~ ^[0-9]+$ ]] && ((REPS >= 1 && REPS <= 100)) \
    || { echo "bench: --reps must be a whole number from 1 to 100" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; pymri needs ptrace rights)"

pymri_binary
load_interpreters
VENV=${PYMRI_BENCH_VENV:-/var/cache/pymri/bench-venv}
PYSPY=
[[ -x $VENV/bin/py-spy ]] && PYSPY=$VENV/bin/py-spy

start_target() {
    local root=${1%%:*} exe=${1#*:} inside
    inside=/tmp/pymri-doctor-bench-$$-$RANDOM
    TARGET_DIR=$root$inside
    mkdir -p "$TARGET_DIR"
    CLEAN_DIRS+=("$TARGET_DIR")
    cp "$REPO/bench/workloads/overhead.py" "$TARGET_DIR/"
    mkfifo "$TARGET_DIR/ready" "$TARGET_DIR/control"
    chroot "$root" "$exe" "$inside/overhead.py" "$inside/ready" "$inside/control" >/dev/null 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    exec 7<>"$TARGET_DIR/ready" 8>"$TARGET_DIR/control"
    local line
    read -r -t 30 line <&7 || die "the target under $exe did not become ready"
    [[ $line == ready ]] || die "the target said '$line'"
}

# "UNITS CLOCK CPU" from the target.
ask() {
    echo >&8
    local line
    read -r -t 10 line <&7 || die "no answer from the target"
    echo "$line"
}

# Units a second (wall, CPU) over SECONDS_EACH - 1 seconds, with a doctor window or without.
measure() {
    local watched=$1 first last pid=
    if ((watched)); then
        : >"$TARGET_DIR/pymri.err"
        "$PYMRI" doctor "$TARGET_PID" -d "$SECONDS_EACH" --json >/dev/null 2>"$TARGET_DIR/pymri.err" &
        pid=$!
        PIDS+=("$pid")
        local tries=0
        until grep -q "watching process" "$TARGET_DIR/pymri.err"; do
            ((++tries < 2000)) || die "pymri doctor did not start: $(cat "$TARGET_DIR/pymri.err")"
            sleep 0.005
        done
    fi
    first=$(ask)
    sleep $((SECONDS_EACH - 1))
    last=$(ask)
    if [[ -n $pid ]]; then
        wait "$pid" || die "pymri doctor failed: $(cat "$TARGET_DIR/pymri.err")"
    fi
    python3 -c 'import sys; (u0, t0, c0), (u1, t1, c1) = (map(float, a.split()) for a in sys.argv[1:]); print((u1 - u0) / (t1 - t0), (u1 - u0) / (c1 - c0))' \
        "$first" "$last"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# "MEDIAN SPREAD% SLOWER%" of the values $1 against the median BASE $2 (empty: itself).
stats() {
    local values med lo hi
    values=$(tr ' ' '\n' <<<"$1" | grep .)
    med=$(median <<<"$values")
    lo=$(sort -g <<<"$values" | head -n1)
    hi=$(sort -g <<<"$values" | tail -n1)
    echo "$med $(bc -l <<<"($hi - $lo) / $med * 100") $(bc -l <<<"(1 - $med / ${2:-$med}) * 100")"
}

# Wall seconds of one command, its output discarded.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || die "failed: $*"
    t1=$(date +%s.%N)
    bc -l <<<"$t1 - $t0"
}

printf '%-7s %-9s %13s %8s %9s   %13s %8s %9s\n' "python" "watched" "units/wall s" "spread" "slower" \
    "units/CPU s" "spread" "slower"
TIMES=()
for v in 314 311; do
    spec=$(lookup "PYTHON$v")
    [[ -n $spec ]] || die "no PYTHON$v among the interpreters"
    start_target "$spec"
    WALL=("" "") CPU=("" "")
    for ((rep = 0; rep < REPS; rep++)); do
        for i in 0 1; do
            watched=$(((i + rep) % 2))
            read -r wall cpu <<<"$(measure "$watched")"
            WALL[watched]+="$wall "
            CPU[watched]+="$cpu "
        done
        say "3.${v:1}: round $((rep + 1)) of $REPS"
    done
    read -r wall_base _ _ <<<"$(stats "${WALL[0]}")"
    read -r cpu_base _ _ <<<"$(stats "${CPU[0]}")"
    for watched in 0 1; do
        label=$([[ $watched == 0 ]] && echo "no" || echo "doctor")
        read -r wm ws wd <<<"$(stats "${WALL[watched]}" "$wall_base")"
        read -r cm cs cd <<<"$(stats "${CPU[watched]}" "$cpu_base")"
        printf '%-7s %-9s %13.0f %7.1f%% %8.2f%%   %13.0f %7.1f%% %8.2f%%\n' "3.${v:1}" "$label" \
            "$wm" "$ws" "$wd" "$cm" "$cs" "$cd"
    done
    doctor_times="" spy_times=""
    for ((rep = 0; rep < REPS; rep++)); do
        doctor_times+="$(timed "$PYMRI" doctor "$TARGET_PID" -d 1 --json) "
        [[ -n $PYSPY ]] && spy_times+="$(timed "$PYSPY" dump --pid "$TARGET_PID") "
    done
    read -r dm _ _ <<<"$(stats "$doctor_times")"
    line=$(printf '3.%s: pymri doctor -d 1: %.2f s to a report (%.2f s after the window)' "${v:1}" "$dm" \
        "$(bc -l <<<"$dm - 1")")
    if [[ -n $spy_times ]]; then
        read -r sm _ _ <<<"$(stats "$spy_times")"
        line+=$(printf '; py-spy dump: %.2f s' "$sm")
    fi
    TIMES+=("$line (medians of $REPS)")
    exec 7<&- 8>&-
    kill -KILL "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
done
printf '%s\n' "${TIMES[@]}"
