#!/usr/bin/env bash
# asyncio tasks from memory: `pymri dump --tasks=table PID` beside CPython's own
# `python3.N -m asyncio ps PID` on the same 3.14 target, and on a 3.15 one, in one run.
#
# Target: bench/workloads/asyncio_tasks.py, one event loop with --groups "group-N" tasks, each
# gathering three "leaf-N-M" tasks parked five coroutines deep (4 * groups + 1 tasks). Each tool
# must list every leaf task before it is timed (a broken tool never shows up as a fast one); then
# the tools run round-robin --runs times each, wall-clock time of the whole command (start,
# read, print, exit) with output to /dev/null, and 5 more times under /usr/bin/time for the peak
# resident set size. CPython's tool runs inside the target's root (`chroot ROOT python3.N -m
# asyncio ps`), which shares our pid namespace; it reads only targets of its own minor version.
#
# Usage: bench/tasks.sh [--runs N] [--groups N]   (defaults 20 and 50)
#
# Environment (all optional):
#   PYMRI_BIN     pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS   interpreter roots cache, holding interpreters.env (default /var/cache/pymri/roots)
#
# Exit status: 0 when every tool listed every task and pymri's median was at most a fifth of
# `asyncio ps`'s on each target, 1 otherwise, 2 on a usage error.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=20
GROUPS_N=50
while (($#)); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
        --groups) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; GROUPS_N=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 5 && RUNS <= 1000)) \
    || { echo "bench: --runs must be a whole number from 5 to 1000" >&2; exit 2; }
[[ $GROUPS_N =~ ^[0-9]+$ ]] && ((GROUPS_N >= 1 && GROUPS_N <= 5000)) \
    || { echo "bench: --groups must be a whole number from 1 to 5000" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; the tools need ptrace rights)"

pymri_binary
load_interpreters
SPEC314=$(lookup PYTHON314)
SPEC315=$(lookup PYTHON315)
[[ -n $SPEC314 ]] || die "no PYTHON314 among the interpreters"

# start_target ROOT EXE: starts the workload under chroot, waits for "ready", sets TARGET_PID.
start_target() {
    local root=$1 exe=$2 dir inner fd line="" pid i
    [[ -e $root/proc/self ]] || die "/proc is not mounted in $root"
    dir=$(mktemp -d "$root/tmp/pymri-bench.XXXXXX")
    CLEAN_DIRS+=("$dir")
    inner=/tmp/${dir##*/}
    cp "$REPO/bench/workloads/asyncio_tasks.py" "$dir/target.py"
    mkfifo "$dir/ready"
    setpriv --pdeathsig KILL chroot "$root" "$exe" "$inner/target.py" "$inner/ready" "$GROUPS_N" \
        </dev/null >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    exec {fd}<>"$dir/ready"
    for ((i = 0; i < 240; i++)); do
        if read -r -t 0.5 -u "$fd" line; then break; fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; die "target $exe exited before ready"; }
    done
    exec {fd}<&-
    [[ $line == ready ]] || die "target $exe did not get ready within 120 s"
    TARGET_PID=$pid
}

TARGETS=()
for spec in "$SPEC314" ${SPEC315:+"$SPEC315"}; do
    start_target "${spec%%:*}" "${spec#*:}"
    TARGETS+=("${spec%%:*}:${spec#*:}:$TARGET_PID")
    say "target ${spec#*:} ready: pid $TARGET_PID"
done
[[ -n $SPEC315 ]] || say "no PYTHON315 interpreter provisioned: 3.14 only"

BENCH_PYMRI=$PYMRI BENCH_RUNS=$RUNS BENCH_GROUPS=$GROUPS_N BENCH_TARGETS="${TARGETS[*]}" \
    python3 - <<'PYEOF'
import os
import shutil
import statistics
import subprocess
import sys
import time

E = os.environ
RUNS, GROUPS, PYMRI = int(E["BENCH_RUNS"]), int(E["BENCH_GROUPS"]), E["BENCH_PYMRI"]
TIME = shutil.which("time", path="/usr/bin")
failed = False
for spec in E["BENCH_TARGETS"].split():
    root, exe, pid = spec.split(":")
    tools = {
        "pymri dump --tasks=table": [PYMRI, "dump", "--tasks=table", pid],
        f"{os.path.basename(exe)} -m asyncio ps": ["chroot", root, exe, "-m", "asyncio", "ps", pid],
    }
    print(f"== {os.path.basename(exe)} target (pid {pid}, {4 * GROUPS + 1} tasks)")
    ok = {}
    for name, cmd in tools.items():
        out = subprocess.run(cmd, capture_output=True, text=True)
        leaves = sum(1 for line in out.stdout.splitlines() if " leaf-" in line)
        ok[name] = out.returncode == 0 and leaves == 3 * GROUPS
        if not ok[name]:
            failed = True
            print(f"   {name}: FAILED (status {out.returncode}, {leaves} of {3 * GROUPS} leaf tasks)")
            print("   " + "\n   ".join((out.stdout + out.stderr).splitlines()[-5:]))
    live = {n: c for n, c in tools.items() if ok[n]}
    times = {n: [] for n in live}
    for _ in range(RUNS):
        for name, cmd in live.items():
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
    rss = {}
    if TIME:
        for name, cmd in live.items():
            peaks = []
            for _ in range(5):
                out = subprocess.run([TIME, "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                peaks.append(int(out.stderr.strip().splitlines()[-1]))
            rss[name] = max(peaks)
    ours = "pymri dump --tasks=table"
    print(f"   {'tool':<36}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'peak RSS KiB':>14}{'x pymri':>9}")
    for name, ts in times.items():
        ratio = statistics.median(ts) / statistics.median(times[ours]) if ours in times else float("nan")
        print(f"   {name:<36}{statistics.median(ts):>10.2f}{min(ts):>9.2f}{max(ts):>9.2f}"
              f"{rss.get(name, 0):>14}{ratio:>8.1f}x")
    if len(times) == 2:
        theirs = [n for n in times if n != ours][0]
        bar = statistics.median(times[theirs]) / 5
        verdict = "PASS" if statistics.median(times[ours]) <= bar else "FAIL"
        failed |= verdict == "FAIL"
        print(f"   bar: pymri median {statistics.median(times[ours]):.2f} ms <= {theirs} median / 5 = {bar:.2f} ms -> {verdict}")
sys.exit(1 if failed else 0)
PYEOF
