#!/usr/bin/env bash
# Times `pymri dump --native PID` (mixed native and Python stacks) against `py-spy dump --native`
# and `pystack remote --native`, on the same live target, in one run.
#
# Target: the CPython 3.14 process bench/dump.sh uses: 10 threads, each parked on an Event at
# the bottom of a 30-frame recursion (`recurse_bench`), so each stack holds native frames (the
# lock wait in libc, the interpreter's calls) around 30 Python ones. Every tool is first checked
# to print those Python frames and native ones, then timed round-robin (wall clock per run,
# output to /dev/null). See bench/README.md.
#
# Usage: bench/native.sh [--runs N]      (N >= 10, default 20)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary to time (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache (default /var/cache/pymri/roots)
#   PYMRI_BENCH_VENV     virtualenv holding py-spy and pystack (default /var/cache/pymri/bench-venv,
#                        made by bench/dump.sh: run that once first)
#   PYMRI_BENCH_RESULTS  directory for the JSON results (default bench/results in the repository)
#
# Exit status: 0 when every tool ran and printed the expected frames (whether or not pymri meets
# the bar), 1 when a tool failed, 2 on a usage error.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=20
while (($#)); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 10)); then
    echo "bench: --runs must be a whole number >= 10 (got '$RUNS')" >&2
    exit 2
fi
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; the tools need ptrace rights)"

VENV=${PYMRI_BENCH_VENV:-/var/cache/pymri/bench-venv}
RESULTS=${PYMRI_BENCH_RESULTS:-$REPO/bench/results}
[[ -x $VENV/bin/py-spy && -x $VENV/bin/pystack ]] \
    || die "no py-spy and pystack in $VENV: run bench/dump.sh once, which makes it"

pymri_binary
load_interpreters
SPEC=$(lookup PYTHON314)
[[ -n $SPEC ]] || die "no PYTHON314 interpreter provisioned"
ROOT=${SPEC%%:*}
EXE=${SPEC#*:}
[[ -e $ROOT/proc/self ]] || die "/proc is not mounted in $ROOT"

# The target: bench/dump.sh's, ten threads parked 30 frames deep.
DIR=$(mktemp -d "$ROOT/tmp/pymri-bench.XXXXXX")
CLEAN_DIRS+=("$DIR")
INNER=/tmp/${DIR##*/}
cat >"$DIR/target.py" <<'EOF'
import sys
import threading

DEPTH = 30
WORKERS = 9
forever = threading.Event()
parked = threading.Semaphore(0)


def recurse_bench(n, at_bottom):
    if n > 1:
        return recurse_bench(n - 1, at_bottom)
    at_bottom()
    forever.wait()


def announce():
    for _ in range(WORKERS):
        parked.acquire()
    with open(sys.argv[1], "w") as fifo:
        fifo.write("ready\n")


for i in range(WORKERS):
    threading.Thread(
        target=recurse_bench, args=(DEPTH, parked.release), name=f"worker-{i}", daemon=True
    ).start()
recurse_bench(DEPTH, announce)
EOF
mkfifo "$DIR/ready"
setpriv --pdeathsig KILL chroot "$ROOT" "$EXE" "$INNER/target.py" "$INNER/ready" \
    </dev/null >"$DIR/log" 2>&1 &
PID=$!
PIDS+=("$PID")
exec {FD}<>"$DIR/ready"
LINE=""
for ((i = 0; i < 240; i++)); do
    if read -r -t 0.5 -u "$FD" LINE; then break; fi
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/log" >&2; die "target exited before ready"; }
done
exec {FD}<&-
[[ $LINE == ready ]] || die "target did not get ready within 120 s"
say "3.14 target ready: pid $PID"

DRIVER_DIR=$(mktemp -d)
CLEAN_DIRS+=("$DRIVER_DIR")
cat >"$DRIVER_DIR/driver.py" <<'EOF'
"""Checks each tool's output, times the tools round-robin, prints the report and writes the raw
numbers as JSON. Configuration arrives in BENCH_* environment variables."""
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

E = os.environ
RUNS = int(E["BENCH_RUNS"])
PYMRI, VENV, PID = E["BENCH_PYMRI"], E["BENCH_VENV"], E["BENCH_PID"]
PYTHON_FRAME = re.compile(r"recurse_bench(?!\()")
MIN_FRAMES = 250  # 10 threads x 30 frames = 300 expected
# A native frame in the C library, where every thread waits for its lock: each tool names the
# library on the frame's line. pymri must show them; a peer that shows none (it could not
# unwind or merge this target) is still timed, with its count in the table.
NATIVE = re.compile(r"libc\.so|libpthread")

TOOLS = [
    {"name": "pymri dump --native", "argv": [PYMRI, "dump", "--native", PID], "ref": True, "must": True},
    {"name": "py-spy dump --native", "argv": [f"{VENV}/bin/py-spy", "dump", "--native", "--pid", PID]},
    {"name": "pystack remote --native", "argv": [f"{VENV}/bin/pystack", "remote", "--native", PID]},
    {"name": "pymri dump --native --blocking", "argv": [PYMRI, "dump", "--native", "--blocking", PID],
     "must": True},
    {"name": "pymri dump (Python only)", "argv": [PYMRI, "dump", PID], "python_only": True},
    {"name": "spawn floor (true)", "argv": [shutil.which("true") or "/bin/true"], "floor": True},
]
for t in TOOLS:
    t.update(ok=True, error=None, frames=None, native=None, runs_ms=[])


def verify(t):
    try:
        p = subprocess.run(t["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        t["ok"], t["error"] = False, f"could not run: {e}"
        return
    out = p.stdout.decode(errors="replace")
    if t.get("floor"):
        t["ok"] = p.returncode == 0
        return
    t["frames"] = len(PYTHON_FRAME.findall(out))
    t["native"] = len(NATIVE.findall(out))
    want_native = 10 if t.get("must") else 0
    if p.returncode != 0 or t["frames"] < MIN_FRAMES or t["native"] < want_native:
        tail = "\n".join("      | " + line for line in out.splitlines()[-25:])
        t["ok"] = False
        t["error"] = (f"exit {p.returncode}, {t['frames']} recurse_bench frames (want >= {MIN_FRAMES}), "
                      f"{t['native']} libc frames (want >= {want_native}); output ends:\n{tail}")


def ms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def main():
    for t in TOOLS:
        verify(t)
        if not t.get("floor"):
            state = f"{t['frames']} Python frames, {t['native']} libc frames" if t["ok"] else "FAILED"
            print(f"bench: check {t['name']}: {state}", file=sys.stderr)
    print(f"bench: timing {RUNS} runs per tool", file=sys.stderr)
    for _ in range(RUNS):
        for t in TOOLS:
            if not t["ok"]:
                continue
            t0 = time.perf_counter()
            rc = subprocess.run(t["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode
            t["runs_ms"].append((time.perf_counter() - t0) * 1e3)
            if rc != 0:
                t["ok"], t["error"] = False, f"exit {rc} during timed run {len(t['runs_ms'])}"
    ref = next(t for t in TOOLS if t.get("ref"))
    ref_med = statistics.median(ref["runs_ms"]) if ref["ok"] else None
    print(f"\n== CPython 3.14 target (pid {PID}), 10 threads x 30 frames: native stacks")
    print(f"   {RUNS} runs per tool, round-robin, wall clock, output to /dev/null")
    print(f"   {'tool':<34} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'x pymri':>8} {'libc frames':>12}")
    for t in TOOLS:
        if not t["ok"]:
            print(f"   {t['name']:<34} {'FAILED':>10}")
            continue
        med, lo, hi = statistics.median(t["runs_ms"]), min(t["runs_ms"]), max(t["runs_ms"])
        ratio = f"{med / ref_med:.2f}x" if ref_med and not t.get("floor") else "-"
        native = "-" if t.get("floor") else str(t["native"])
        print(f"   {t['name']:<34} {ms(med):>10} {ms(lo):>9} {ms(hi):>9} {ratio:>8} {native:>12}")
    print()
    for t in TOOLS:
        if not t["ok"]:
            print(f"   {t['name']}: FAILED: {t['error']}")
    spy = next(t for t in TOOLS if t["name"] == "py-spy dump --native")
    if ref_med and spy["ok"]:
        limit = statistics.median(spy["runs_ms"]) / 2
        verdict = "PASS" if ref_med <= limit else "MISS"
        print(f"   bar: pymri --native median {ms(ref_med)} ms <= py-spy --native median / 2 = "
              f"{ms(limit)} ms -> {verdict}")
    else:
        print("   bar: cannot check (pymri or py-spy failed)")
    now = datetime.datetime.now(datetime.timezone.utc)
    os.makedirs(E["BENCH_RESULTS"], exist_ok=True)
    path = os.path.join(E["BENCH_RESULTS"], f"native-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w") as f:
        json.dump({"date": now.isoformat(timespec="seconds"), "runs": RUNS, "pid": int(PID),
                   "tools": [{k: t.get(k) for k in ("name", "argv", "ok", "error", "frames", "native",
                                                     "runs_ms")} for t in TOOLS]}, f, indent=1)
        f.write("\n")
    print(f"\nraw numbers: {path}")
    return 1 if any(not t["ok"] for t in TOOLS) else 0


sys.exit(main())
EOF

BENCH_RUNS=$RUNS BENCH_PYMRI=$PYMRI BENCH_VENV=$VENV BENCH_PID=$PID BENCH_RESULTS=$RESULTS \
    "$VENV/bin/python" "$DRIVER_DIR/driver.py"
