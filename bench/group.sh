#!/usr/bin/env bash
# Times `pymri dump --group` over the workers of a training job (fixtures/ml_job.py: every rank
# but one waits in `all_reduce`, one spins in `backward`) against today's advice for a hung
# job: `py-spy dump` on every worker, one after another, and the diff by eye left to the user.
# Both are first checked to show the odd rank's `backward` frame. Times are wall clock per run
# (output to /dev/null), round-robin; the report gives medians and the ratio.
#
# Usage: bench/group.sh [--runs N] [--workers N]   (runs >= 5, default 10; workers default 32)
#
# Environment (all optional): PYMRI_BIN, PYMRI_ROOTS, PYMRI_BENCH_VENV, PYMRI_BENCH_PYTHON as
# for bench/dump.sh.
#
# Exit status: 0 when both tools ran and showed the odd rank, 1 when one failed, 2 on a usage
# error.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=10
WORKERS=32
while (($#)); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
        --workers) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; WORKERS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 5)) || { echo "bench: --runs must be >= 5" >&2; exit 2; }
[[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 2 && WORKERS <= 256)) \
    || { echo "bench: --workers must be 2 to 256" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (the tools need ptrace rights)"

pymri_binary
load_interpreters
peer_venv
SPEC=$(lookup PYTHON311)
[[ -n $SPEC ]] || die "provision-interpreters.sh printed no PYTHON311 line"
[[ ${SPEC%%:*} == / ]] || die "the 3.11 interpreter is expected on the host (root /)"
PYTHON=${SPEC#*:}

# --- the job -------------------------------------------------------------------------------------
DIR=$(mktemp -d)
CLEAN_DIRS+=("$DIR")
mkfifo "$DIR/ready"
ODD=$((WORKERS / 2))
TAG=bench-$$
setpriv --pdeathsig KILL "$PYTHON" "$REPO/fixtures/ml_job.py" "$DIR/ready" "$WORKERS" "$ODD" "$TAG" \
    </dev/null >"$DIR/log" 2>&1 &
PIDS+=("$!")
read -r -t 120 READY <"$DIR/ready" || die "the job did not get ready"
mapfile -t WORKER_PIDS < <("$PYTHON" -c 'import json, sys; print("\n".join(str(p) for p in json.loads(sys.argv[1])["workers"].values()))' "$READY")
((${#WORKER_PIDS[@]} == WORKERS)) || die "expected $WORKERS workers, got ${#WORKER_PIDS[@]}"
say "job ready: $WORKERS workers, rank $ODD spins"

pymri_group() { "$PYMRI" dump --group "${WORKER_PIDS[@]}"; }
py_spy_each() {
    local pid
    for pid in "${WORKER_PIDS[@]}"; do "$VENV/bin/py-spy" dump --pid "$pid" || return 1; done
}

# --- both show the odd rank --------------------------------------------------------------------
pymri_group >"$DIR/pymri.txt" || die "pymri dump --group failed"
grep -q "^1 process (pid ${WORKER_PIDS[$ODD]}, rank $ODD), 1 thread: in backward (" "$DIR/pymri.txt" \
    || { cat "$DIR/pymri.txt" >&2; die "pymri did not name rank $ODD first"; }
py_spy_each >"$DIR/py-spy.txt" 2>&1 || { cat "$DIR/py-spy.txt" >&2; die "py-spy dump failed"; }
[[ $(grep -c 'backward' "$DIR/py-spy.txt") -ge 1 ]] || die "py-spy did not show backward"

# --- timing, round-robin -------------------------------------------------------------------------
now() { date +%s%N; }
declare -a T_PYMRI T_SPY
for ((i = 0; i < RUNS; i++)); do
    t=$(now); pymri_group >/dev/null; T_PYMRI+=($(($(now) - t)))
    t=$(now); py_spy_each >/dev/null 2>&1; T_SPY+=($(($(now) - t)))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
MP=$(median "${T_PYMRI[@]}")
MS=$(median "${T_SPY[@]}")
awk -v p="$MP" -v s="$MS" -v w="$WORKERS" -v r="$RUNS" 'BEGIN {
    printf "grouped dump of %d worker processes, %d runs each (medians):\n", w, r
    printf "  pymri dump --group PID...      %8.1f ms\n", p / 1e6
    printf "  py-spy dump, once per worker   %8.1f ms\n", s / 1e6
    printf "  ratio pymri / py-spy           %8.2f\n", p / s
}'
