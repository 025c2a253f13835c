#!/usr/bin/env bash
# What the lock patterns add to a `pymri doctor` report: the wall time of `pymri doctor PID -d 1`
# looking for deadlock and orphaned_lock (two lock readings: a sample, the objects every frame
# refers to, each waiting thread's futex read twice) beside the same command looking for
# spiking_thread only (the window alone), interleaved, on two CPython 3.14 targets in one run:
#
# - fixtures/doctor/deadlock.py: two threads deadlocked on two Locks (the finding is checked);
# - bench/workloads/many_threads.py 200: 200 threads parked 20 frames deep in Event.wait, each
#   asleep on a lock of its own (200 waits to match, no finding).
#
# Reported per target: the median of --runs runs of each command, the difference (what the
# lock readings cost) and the ratio.
#
# Usage: bench/doctor_locks.sh [--runs N]   (default 10, at least 3)
#
# Environment (all optional):
#   PYMRI_BIN     pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS   interpreter roots cache, holding interpreters.env
#                 (default /var/cache/pymri/roots; provisioned if missing)
#
# Exit status: 0 when every command ran, 1 when one failed, 2 on a usage error. Figures, not a
# test.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=10
while (($#)); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 3 && RUNS <= 1000)) \
    || { echo "bench: --runs must be a whole number from 3 to 1000" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; pymri needs ptrace rights)"

pymri_binary
load_interpreters
SPEC=$(lookup PYTHON314)
[[ -n $SPEC ]] || die "no PYTHON314 among the interpreters"
ROOT=${SPEC%%:*}
EXE=${SPEC#*:}
INSIDE=/tmp/pymri-doctor-locks-bench-$$-$RANDOM
DIR=$ROOT$INSIDE
mkdir -p "$DIR"
CLEAN_DIRS+=("$DIR")
cp "$REPO/fixtures/doctor/deadlock.py" "$REPO/bench/workloads/many_threads.py" "$DIR/"

# Starts SCRIPT ARGS... in the root; sets TARGET once it wrote its readiness line.
start() {
    local script=$1
    shift
    rm -f "$DIR/ready"
    mkfifo "$DIR/ready"
    chroot "$ROOT" "$EXE" "$INSIDE/$script" "$INSIDE/ready" "$@" >/dev/null 2>"$DIR/target.err" &
    TARGET=$!
    PIDS+=("$TARGET")
    read -r -t 60 _ <"$DIR/ready" || die "$script did not become ready: $(cat "$DIR/target.err")"
}

# Times the two commands round-robin against TARGET; prints "window-only locks" medians.
measure() {
    local expect=$1
    "$PYMRI" doctor "$TARGET" -d 1 --json --only deadlock,orphaned_lock >"$DIR/check.json" 2>"$DIR/check.err" \
        || die "pymri doctor failed: $(cat "$DIR/check.err")"
    grep -q "\"pattern\": \"$expect\"" "$DIR/check.json" || [[ $expect == none && $(grep -c '"pattern"' "$DIR/check.json") == 0 ]] \
        || die "pymri doctor did not find '$expect': $(cat "$DIR/check.json")"
    python3 - "$RUNS" "$PYMRI" "$TARGET" <<'PY'
import statistics, subprocess, sys, time
runs, pymri, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
commands = {
    "window": [pymri, "doctor", pid, "-d", "1", "--json", "--only", "spiking_thread"],
    "locks": [pymri, "doctor", pid, "-d", "1", "--json", "--only", "deadlock,orphaned_lock"],
}
times = {name: [] for name in commands}
for _ in range(runs):
    for name, argv in commands.items():
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times[name].append(time.perf_counter() - start)
print(statistics.median(times["window"]), statistics.median(times["locks"]))
PY
}

ROWS=()
say "deadlock.py (2 threads deadlocked): $RUNS runs of each command"
start deadlock.py lock
ROWS+=("deadlock.py|$(measure deadlock)")
kill -KILL "$TARGET"
wait "$TARGET" 2>/dev/null || true
say "many_threads.py 200 (200 threads asleep on locks of their own): $RUNS runs of each command"
start many_threads.py 200
ROWS+=("many_threads.py 200|$(measure none)")

printf '\n%-22s %14s %14s %12s %8s\n' "target" "window only s" "with locks s" "locks ms" "ratio"
for r in "${ROWS[@]}"; do
    IFS='|' read -r target times <<<"$r"
    read -r window locks <<<"$times"
    printf '%-22s %14.3f %14.3f %12.1f %7.3fx\n' "$target" "$window" "$locks" \
        "$(bc -l <<<"($locks - $window) * 1000")" "$(bc -l <<<"$locks / $window")"
done
