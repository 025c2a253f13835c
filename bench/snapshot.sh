#!/usr/bin/env bash
# Times `pymri snapshot PID -o FILE` against gdb's `gcore` on the same live target, and measures
# from inside the target how long each kept it from running.
#
# Target: fixtures/snapshot_target.py on CPython 3.14 (the sid root), with a heap of --heap MiB
# of non-zero bytes (default 500) and five threads, one of which ticks every millisecond and
# records the longest time between two ticks: the stop as the target lived it. Before each run
# the driver resets that record through the target's control FIFO, and reads it after.
#
# Each tool first writes one core that is checked (`pymri dump --core` must show every thread,
# and `pystack core` too when pystack is in the peers' virtualenv); then the tools run
# round-robin, --runs times each, every core deleted after its run. See bench/README.md.
#
# Usage: bench/snapshot.sh [--runs N] [--heap MIB]     (N >= 3, default 5; MIB >= 1)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary to time (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache (default /var/cache/pymri/roots)
#   PYMRI_BENCH_VENV     virtualenv where pystack is looked for (default /var/cache/pymri/bench-venv;
#                        bench/dump.sh creates it); without it the pystack check is skipped, said so
#   PYMRI_BENCH_RESULTS  directory for the JSON results (default bench/results in the repository)
#
# Exit status: 0 when both tools wrote cores that read back (whether or not pymri meets the
# bars), 1 when a tool failed, 2 on a usage error.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=5
HEAP=500
while (($#)); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --heap) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; HEAP=$2; shift 2 ;;
        --heap=*) HEAP=${1#--heap=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 3)); then
    echo "bench: --runs must be a whole number >= 3 (got '$RUNS')" >&2
    exit 2
fi
if ! [[ $HEAP =~ ^[0-9]+$ ]] || ((HEAP < 1)); then
    echo "bench: --heap must be a whole number of MiB >= 1 (got '$HEAP')" >&2
    exit 2
fi
[[ $EUID -eq 0 ]] || die "run as root (the target runs under chroot; both tools need ptrace rights)"
command -v gcore >/dev/null || die "gcore is missing (Debian package gdb)"

VENV=${PYMRI_BENCH_VENV:-/var/cache/pymri/bench-venv}
RESULTS=${PYMRI_BENCH_RESULTS:-$REPO/bench/results}

pymri_binary
load_interpreters
SPEC=$(lookup PYTHON314)
[[ -n $SPEC ]] || die "provision-interpreters.sh printed no PYTHON314 line"
ROOT=${SPEC%%:*}
EXE=${SPEC#*:}
[[ -e $ROOT/proc/self ]] || die "/proc is not mounted in $ROOT"

# The target's files inside its root; the cores beside them, on the same file system for both.
WORK=$(mktemp -d "$ROOT/tmp/pymri-bench.XXXXXX")
CLEAN_DIRS+=("$WORK")
cp "$REPO/fixtures/snapshot_target.py" "$WORK/"
mkfifo "$WORK/ready" "$WORK/control"

PYSTACK=""
if [[ -x $VENV/bin/pystack ]]; then
    PYSTACK=$VENV/bin/pystack
else
    say "no pystack in $VENV (bench/dump.sh creates it): the pystack check is skipped"
fi

BENCH_RUNS=$RUNS BENCH_HEAP=$HEAP BENCH_PYMRI=$PYMRI BENCH_ROOT=$ROOT BENCH_EXE=$EXE \
    BENCH_WORK=$WORK BENCH_INNER=/tmp/${WORK##*/} BENCH_PYSTACK=$PYSTACK BENCH_REPO=$REPO \
    BENCH_RESULTS=$RESULTS /usr/bin/python3 "$REPO/bench/snapshot_bench.py"
