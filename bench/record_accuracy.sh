#!/usr/bin/env bash
# Accuracy: how close the share of samples per function that `pymri record` collects is to the
# share of wall time the target itself measured in each function, per interpreter.
#
# Target: bench/workloads/accuracy.py, three threads moving among `hot`, `warm` (Python
# spinning, contending for the GIL) and `io` (asleep), each adding up its own wall time per
# function. For each interpreter: the target's totals are read, `pymri record` records it in wall
# mode (every thread, every sample) for --seconds, the totals are read again, and each
# function's share of the samples (among samples in one of the three) is set beside its share
# of the time measured over the same window. The bar: every function within 5 percentage
# points.
#
# Usage: bench/record_accuracy.sh [--seconds N] [--rate HZ]   (defaults 5 and 100)
#
# Environment (all optional):
#   PYMRI_BIN     pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS   interpreter roots cache, holding interpreters.env (default /var/cache/pymri/roots)
#
# Exit status: 0 when every interpreter was recorded (whatever the figures), 1 when one failed,
# 2 on a usage error. Figures, not a test.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=5
RATE=100
while (($#)); do
    case $1 in
        --seconds) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; SECONDS_EACH=$2; shift 2 ;;
        --rate) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RATE=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && ((SECONDS_EACH >= 1 && SECONDS_EACH <= 600)) \
    || { echo "bench: --seconds must be a whole number from 1 to 600" >&2; exit 2; }
[[ $RATE =~ ^[0-9]+$ ]] && ((RATE >= 1 && RATE <= 100000)) \
    || { echo "bench: --rate must be a whole number from 1 to 100000" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; pymri needs ptrace rights)"

pymri_binary
load_interpreters

# Starts the workload under SPEC (ROOT:EXE): sets TARGET_PID, TARGET_DIR (seen from here), and
# opens fd 7 to read its answers, fd 8 to ask.
start_target() {
    local root=${1%%:*} exe=${1#*:} inside
    inside=/tmp/pymri-accuracy-$$-$RANDOM
    TARGET_DIR=$root$inside
    mkdir -p "$TARGET_DIR"
    CLEAN_DIRS+=("$TARGET_DIR")
    cp "$REPO/bench/workloads/accuracy.py" "$TARGET_DIR/"
    mkfifo "$TARGET_DIR/ready" "$TARGET_DIR/control"
    chroot "$root" "$exe" "$inside/accuracy.py" "$inside/ready" "$inside/control" >/dev/null 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    exec 7<>"$TARGET_DIR/ready" 8>"$TARGET_DIR/control"
    local line
    read -r -t 30 line <&7 || die "the target under $exe did not become ready"
    [[ $line == ready ]] || die "the target said '$line'"
}

truth() {
    echo >&8
    local line
    read -r -t 10 line <&7 || die "no truth from the target"
    echo "$line"
}

printf '%-8s %-6s %8s %8s %8s   %s\n' "python" "func" "samples" "truth" "diff" "within 5 points"
for v in 39 311 313 314 315; do
    spec=$(lookup "PYTHON$v")
    [[ -n $spec ]] || die "no PYTHON$v among the interpreters"
    start_target "$spec"
    before=$(truth)
    "$PYMRI" record "$TARGET_PID" -r "$RATE" -d "$SECONDS_EACH" -f collapsed -o "$TARGET_DIR/out.txt" \
        2>"$TARGET_DIR/pymri.err" || die "pymri record failed: $(cat "$TARGET_DIR/pymri.err")"
    after=$(truth)
    python3 - "$v" "$before" "$after" "$TARGET_DIR/out.txt" <<'PY'
import json, sys
version, before, after, path = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
names = ("hot", "warm", "io")
spent = {n: after[n] - before[n] for n in names}
counts = dict.fromkeys(names, 0)
for line in open(path):
    stack, n = line.rsplit(" ", 1)
    leaf = stack.split(";")[-1]
    for name in names:
        if leaf.startswith(name + " ("):
            counts[name] += int(n)
total_s, total_t = sum(counts.values()), sum(spent.values())
label = f"3.{version[1:]}"
for name in names:
    share, truth = counts[name] / total_s, spent[name] / total_t
    diff = (share - truth) * 100
    print(f"{label:<8} {name:<6} {share * 100:7.1f}% {truth * 100:7.1f}% {diff:+7.1f}   {'yes' if abs(diff) <= 5 else 'NO'}")
PY
    exec 7<&- 8>&-
    kill -KILL "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
done
