#!/usr/bin/env bash
# Sampling cost against the number of threads: `pymri record` at its highest rate on targets of
# 1, 100 and 1,000 threads (besides the main thread), each parked 20 frames deep, with py-spy
# (`py-spy record --nonblocking --idle`) beside it on the same targets, in the same run.
#
# Target: bench/workloads/many_threads.py under CPython 3.14 (which both tools read). Each tool
# records each target for --seconds of wall time at 100,000 samples a second, which neither
# reaches: the samples it took in that time give its cost per sample. Reported per tool and
# thread count: samples a second, microseconds a sample and a thread, and how often a thread of
# the target was seen stopped (state T or t in /proc) while the tool ran: with neither tool
# stopping threads in these modes, it should be 0.
#
# Usage: bench/record_scale.sh [--seconds N]   (default 5)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache, holding interpreters.env
#                        (default /var/cache/pymri/roots; provisioned if missing)
#   PYMRI_RECORD_VENV    virtualenv holding py-spy (default /var/cache/pymri/record-venv)
#
# A tool that took no sample in the time (py-spy starting on 1,000 threads) is shown as such.
#
# Exit status: 0 when every tool ran, 1 when one failed, 2 on a usage error. Figures, not a
# test: nothing here fails because a cost is not linear.
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
SPEC=$(sed -n 's/^PYTHON314=//p' <<<"$INTERPRETERS" | head -n1)
[[ -n $SPEC ]] || die "no PYTHON314 among the interpreters"
ROOT=${SPEC%%:*}
EXE=${SPEC#*:}

if ! [[ -x $VENV/bin/py-spy ]]; then
    say "creating $VENV and installing py-spy"
    rm -rf -- "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check py-spy
    [[ -x $VENV/bin/py-spy ]] || die "py-spy did not install into $VENV"
fi

# Starts many_threads.py with $1 threads; sets TARGET_PID and TARGET_DIR.
start_target() {
    local inside=/tmp/pymri-scale-bench-$$-$RANDOM
    TARGET_DIR=$ROOT$inside
    mkdir -p "$TARGET_DIR"
    CLEAN_DIRS+=("$TARGET_DIR")
    cp "$REPO/bench/workloads/many_threads.py" "$TARGET_DIR/"
    mkfifo "$TARGET_DIR/ready"
    chroot "$ROOT" "$EXE" "$inside/many_threads.py" "$inside/ready" "$1" >/dev/null 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    local line
    read -r -t 120 line <"$TARGET_DIR/ready" || die "the target with $1 threads did not become ready"
    [[ $line == ready ]] || die "the target said '$line'"
}

# Until $TARGET_DIR/watching is removed, counts the looks at the target's threads that found
# one stopped (T) or traced (t), into $TARGET_DIR/stops.
watch_stops() {
    local stops=0 stat
    while [[ -e $TARGET_DIR/watching ]]; do
        for stat in /proc/"$TARGET_PID"/task/*/stat; do
            stat=$(cat "$stat" 2>/dev/null) || continue
            stat=${stat##*) }
            [[ ${stat:0:1} == [tT] ]] && { stops=$((stops + 1)); break; }
        done
    done
    echo "$stops" >"$TARGET_DIR/stops"
}

# Runs "$@" (in the foreground: a background job would ignore SIGINT) while watch_stops looks.
watched() {
    touch "$TARGET_DIR/watching"
    watch_stops &
    local watcher=$! status=0
    "$@" || status=$?
    rm -f "$TARGET_DIR/watching"
    wait "$watcher"
    return "$status"
}

ROWS=()
for threads in 1 100 1000; do
    say "$threads threads: pymri record, then py-spy record --nonblocking --idle"
    start_target "$threads"
    watched "$PYMRI" record "$TARGET_PID" -r 100000 -d "$SECONDS_EACH" -f collapsed \
        -o "$TARGET_DIR/pymri.txt" 2>"$TARGET_DIR/pymri.err" || true
    stops=$(cat "$TARGET_DIR/stops")
    summary=$(grep ' samples in ' "$TARGET_DIR/pymri.err") || die "pymri record failed: $(cat "$TARGET_DIR/pymri.err")"
    samples=$(sed -E 's/.*: ([0-9]+) samples in ([0-9.]+) s.*/\1/' <<<"$summary")
    took=$(sed -E 's/.*: ([0-9]+) samples in ([0-9.]+) s.*/\2/' <<<"$summary")
    ROWS+=("pymri record|$threads|$samples|$took|$stops")

    # py-spy's --duration counts samples (duration x rate), not time: it is stopped after the
    # same wall time instead, with SIGINT, on which it reports its samples (on stdout).
    watched timeout -s INT "$SECONDS_EACH" "$VENV/bin/py-spy" record --nonblocking --idle \
        -r 100000 -f raw -o "$TARGET_DIR/pyspy.txt" -p "$TARGET_PID" >"$TARGET_DIR/pyspy.err" 2>&1 || true
    stops=$(cat "$TARGET_DIR/stops")
    # py-spy killed by the SIGINT before it reported anything has taken no sample in that time.
    samples=$(sed -nE 's/.*Samples: ([0-9]+).*/\1/p' "$TARGET_DIR/pyspy.err" | tail -n1)
    [[ -n $samples || ! -s $TARGET_DIR/pyspy.err ]] || die "py-spy failed: $(cat "$TARGET_DIR/pyspy.err")"
    samples=${samples:-0}
    ROWS+=("py-spy record --nonblocking|$threads|$samples|$SECONDS_EACH|$stops")
    kill -KILL "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
done

printf '\n%-28s %8s %12s %14s %18s %8s\n' "tool" "threads" "samples/s" "us a sample" "us a thread" "stopped"
for r in "${ROWS[@]}"; do
    IFS='|' read -r tool threads samples took stops <<<"$r"
    if ((samples == 0)); then
        printf '%-28s %8d %12s %14s %18s %8d\n' "$tool" "$threads" "none in ${took}s" "-" "-" "$stops"
        continue
    fi
    # The main thread is sampled too.
    printf '%-28s %8d %12.0f %14.1f %18.2f %8d\n' "$tool" "$threads" "$(bc -l <<<"$samples / $took")" \
        "$(bc -l <<<"$took * 1000000 / $samples")" "$(bc -l <<<"$took * 1000000 / $samples / ($threads + 1)")" \
        "$stops"
done
