#!/usr/bin/env bash
# Overhead: how much slower the target's own work runs while `pymri record` samples it, at
# 100 Hz and 1 kHz, against the same target unsampled, in one run.
#
# Target: bench/workloads/overhead.py, one thread doing a fixed unit of Python work without
# pause (four more wait), counting units by its own clocks. For each interpreter (3.14, 3.11),
# --reps rounds; each round measures, in a rotating order, the target's units per second over
# --seconds unsampled, sampled at 100 Hz and sampled at 1 kHz (measured inside the recording:
# from pymri's first sample until a second before it ends). Two rates: per second of wall time,
# and per second of the working thread's own CPU time (which leaves out CPU that other
# processes, pymri included, took from it: on a machine with a free core for pymri, the two
# agree). Reported: the median of each, the spread of the rounds, and how much slower the
# sampled medians are than the unsampled one. The bars: at most 1% at 100 Hz, at most 5% at
# 1 kHz. Other load on the machine moves every figure: compare rows of one run, and rerun with
# more --reps when the unsampled rounds spread widely.
#
# Usage: bench/record_overhead.sh [--seconds N] [--reps N]   (defaults 4 and 7)
#
# Environment (all optional):
#   PYMRI_BIN     pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS   interpreter roots cache, holding interpreters.env (default /var/cache/pymri/roots)
#
# Exit status: 0 when every round ran, 1 when one failed, 2 on a usage error. Figures, not a
# test.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=4
REPS=7
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

start_target() {
    local root=${1%%:*} exe=${1#*:} inside
    inside=/tmp/pymri-overhead-$$-$RANDOM
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

# Units a second over SECONDS_EACH - 1 seconds, sampled at RATE (0: not sampled).
measure() {
    local rate=$1 first last pid=
    if ((rate > 0)); then
        : >"$TARGET_DIR/pymri.err"
        "$PYMRI" record "$TARGET_PID" -r "$rate" -d "$SECONDS_EACH" -f collapsed -o "$TARGET_DIR/out.txt" \
            2>"$TARGET_DIR/pymri.err" &
        pid=$!
        PIDS+=("$pid")
        local tries=0
        until grep -q "sampling process" "$TARGET_DIR/pymri.err"; do
            ((++tries < 2000)) || die "pymri record did not start: $(cat "$TARGET_DIR/pymri.err")"
            sleep 0.005
        done
    fi
    first=$(ask)
    sleep $((SECONDS_EACH - 1))
    last=$(ask)
    if [[ -n $pid ]]; then
        wait "$pid" || die "pymri record failed: $(cat "$TARGET_DIR/pymri.err")"
    fi
    python3 -c 'import sys; (u0, t0, c0), (u1, t1, c1) = (map(float, a.split()) for a in sys.argv[1:]); print((u1 - u0) / (t1 - t0), (u1 - u0) / (c1 - c0))' \
        "$first" "$last"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-7s %-9s %13s %8s %9s   %13s %8s %9s\n' "python" "sampling" "units/wall s" "spread" "slower" \
    "units/CPU s" "spread" "slower"
for v in 314 311; do
    spec=$(lookup "PYTHON$v")
    [[ -n $spec ]] || die "no PYTHON$v among the interpreters"
    start_target "$spec"
    declare -A WALL=([0]="" [100]="" [1000]="") CPU=([0]="" [100]="" [1000]="")
    order=(0 100 1000)
    for ((rep = 0; rep < REPS; rep++)); do
        for ((i = 0; i < 3; i++)); do
            rate=${order[(i + rep) % 3]}
            read -r wall cpu <<<"$(measure "$rate")"
            WALL[$rate]+="$wall "
            CPU[$rate]+="$cpu "
        done
        say "3.${v:1}: round $((rep + 1)) of $REPS"
    done
    # "MEDIAN SPREAD% SLOWER%" of the values $1 against the median BASE $2 (empty: itself).
    stats() {
        local values med lo hi
        values=$(tr ' ' '\n' <<<"$1" | grep .)
        med=$(median <<<"$values")
        lo=$(sort -g <<<"$values" | head -n1)
        hi=$(sort -g <<<"$values" | tail -n1)
        echo "$med $(bc -l <<<"($hi - $lo) / $med * 100") $(bc -l <<<"(1 - $med / ${2:-$med}) * 100")"
    }
    read -r wall_base _ _ <<<"$(stats "${WALL[0]}")"
    read -r cpu_base _ _ <<<"$(stats "${CPU[0]}")"
    for rate in 0 100 1000; do
        label=$([[ $rate == 0 ]] && echo "none" || echo "$rate Hz")
        read -r wm ws wd <<<"$(stats "${WALL[$rate]}" "$wall_base")"
        read -r cm cs cd <<<"$(stats "${CPU[$rate]}" "$cpu_base")"
        printf '%-7s %-9s %13.0f %7.1f%% %8.2f%%   %13.0f %7.1f%% %8.2f%%\n' "3.${v:1}" "$label" \
            "$wm" "$ws" "$wd" "$cm" "$cs" "$cd"
    done
    exec 7<&- 8>&-
    kill -KILL "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
done
