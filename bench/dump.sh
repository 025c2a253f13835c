#!/usr/bin/env bash
# Times `pymri dump PID` against other tools that print every thread's Python stack of a live
# process: py-spy (`py-spy dump`), pystack (`pystack remote`) and, when a 3.15 interpreter is
# provisioned, CPython 3.15's own `python3.15 -m profiling.sampling dump -a`.
#
# Targets: a CPython 3.14 process (and a 3.15 one) with 10 threads, each parked on an Event at
# the bottom of a 30-frame recursion. Every tool is first checked to print those frames, then
# timed round-robin (wall clock per run, output to /dev/null). See bench/README.md.
#
# Usage: bench/dump.sh [--runs N]        (N >= 10, default 20)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary to time (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache (default /var/cache/pymri/roots)
#   PYMRI_BENCH_VENV     virtualenv holding py-spy and pystack (default /var/cache/pymri/bench-venv)
#   PYMRI_BENCH_PYTHON   interpreter that creates that virtualenv (default: the real executable
#                        behind `python3`, resolved so that no version-manager shim is involved)
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


apt_install() {
    say "installing $* from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

# --- pymri -------------------------------------------------------------------------------------
pymri_binary

# --- /usr/bin/time for peak RSS ------------------------------------------------------------------
[[ -x /usr/bin/time ]] || apt_install time

# --- interpreters --------------------------------------------------------------------------------
load_interpreters
SPEC314=$(lookup PYTHON314)
SPEC315=$(lookup PYTHON315)
[[ -n $SPEC314 ]] || die "provision-interpreters.sh printed no PYTHON314 line"

# --- peers: py-spy and pystack in a cached virtualenv --------------------------------------------
peer_venv

# --- targets -------------------------------------------------------------------------------------
# Ten threads (main + 9 workers), each parked in Event.wait under 30 frames of recurse_bench.
# The main thread writes "ready" to the FIFO from the bottom of its own recursion, after every
# worker has reached the bottom of its recursion.
read -r -d '' TARGET_PY <<'EOF' || true
import sys
import threading

DEPTH = 30
WORKERS = 9
forever = threading.Event()


def recurse_bench(n, at_bottom):
    if n > 1:
        return recurse_bench(n - 1, at_bottom)
    at_bottom()
    forever.wait()


parked = threading.Semaphore(0)


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

# start_target ROOT EXE: starts the target under chroot, waits for "ready", sets TARGET_PID.
start_target() {
    local root=$1 exe=$2 dir inner fd line="" pid i
    [[ -e $root/proc/self ]] || die "/proc is not mounted in $root"
    dir=$(mktemp -d "$root/tmp/pymri-bench.XXXXXX")
    CLEAN_DIRS+=("$dir")
    inner=/tmp/${dir##*/}
    printf '%s\n' "$TARGET_PY" >"$dir/target.py"
    mkfifo "$dir/ready"
    # pdeathsig: should this script die without running its trap, the target dies with it.
    setpriv --pdeathsig KILL chroot "$root" "$exe" "$inner/target.py" "$inner/ready" \
        </dev/null >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Read-write open never blocks, so a target that dies before opening the FIFO is noticed.
    exec {fd}<>"$dir/ready"
    for ((i = 0; i < 240; i++)); do
        if read -r -t 0.5 -u "$fd" line; then break; fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; die "target $exe exited before ready"; }
    done
    exec {fd}<&-
    [[ $line == ready ]] || die "target $exe did not get ready within 120 s"
    TARGET_PID=$pid
}

ROOT314=${SPEC314%%:*}
EXE314=${SPEC314#*:}
start_target "$ROOT314" "$EXE314"
PID314=$TARGET_PID
say "3.14 target ready: pid $PID314"

ROOT315="" EXE315="" PID315=""
if [[ -n $SPEC315 ]]; then
    ROOT315=${SPEC315%%:*}
    EXE315=${SPEC315#*:}
    start_target "$ROOT315" "$EXE315"
    PID315=$TARGET_PID
    say "3.15 target ready: pid $PID315"
else
    say "no PYTHON315 interpreter provisioned: skipping the profiling.sampling comparison"
fi

# --- verification, timing, RSS, report (Python driver) ------------------------------------------
DRIVER_DIR=$(mktemp -d)
CLEAN_DIRS+=("$DRIVER_DIR")
cat >"$DRIVER_DIR/driver.py" <<'EOF'
"""Checks each tool's output, times the tools round-robin, measures peak RSS, prints the report
and writes the raw numbers as JSON. Configuration arrives in BENCH_* environment variables."""
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

E = os.environ
RUNS = int(E["BENCH_RUNS"])
RSS_RUNS = 5
FUNC = "recurse_bench"
# A frame line names the function; a source-code line (CPython 3.15's tool prints those) calls it.
FRAME_RE = re.compile(FUNC + r"(?!\()")
MIN_FRAMES = 250  # 10 threads x 30 frames = 300 expected
PYMRI, VENV = E["BENCH_PYMRI"], E["BENCH_VENV"]


def tool(name, argv, rss=False, ref=False, floor=False):
    return {"name": name, "argv": argv, "rss": rss, "ref": ref, "floor": floor,
            "ok": True, "error": None, "frames": None, "runs_ms": [], "rss_kib": []}


blocks = []
pid = E["BENCH_PID314"]
blocks.append({
    "title": f"CPython 3.14 target (pid {pid}): pymri vs py-spy vs pystack",
    "target": {"root": E["BENCH_ROOT314"], "exe": E["BENCH_EXE314"], "pid": int(pid)},
    "bar": True,
    "tools": [
        tool("pymri dump", [PYMRI, "dump", pid], rss=True, ref=True),
        tool("py-spy dump", [f"{VENV}/bin/py-spy", "dump", "--pid", pid], rss=True),
        tool("pystack remote", [f"{VENV}/bin/pystack", "remote", pid], rss=True),
        tool("pymri dump --blocking", [PYMRI, "dump", "--blocking", pid]),
        tool("py-spy dump --nonblocking", [f"{VENV}/bin/py-spy", "dump", "--nonblocking", "--pid", pid]),
        tool("spawn floor (true)", [shutil.which("true") or "/bin/true"], floor=True),
    ],
})
if E.get("BENCH_PID315"):
    pid, root, exe = E["BENCH_PID315"], E["BENCH_ROOT315"], E["BENCH_EXE315"]
    blocks.append({
        "title": f"CPython 3.15 target (pid {pid}): pymri vs python3.15 -m profiling.sampling",
        "target": {"root": root, "exe": exe, "pid": int(pid)},
        "bar": False,
        "tools": [
            tool("pymri dump", [PYMRI, "dump", pid], rss=True, ref=True),
            # The module lives inside the root, so the tool runs there (same pid namespace).
            tool("python3.15 -m profiling.sampling dump -a",
                 ["chroot", root, exe, "-m", "profiling.sampling", "dump", "-a", pid], rss=True),
        ],
    })


def verify(t):
    try:
        p = subprocess.run(t["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        t["ok"], t["error"] = False, f"could not run: {e}"
        return
    out = p.stdout.decode(errors="replace")
    if t["floor"]:
        t["ok"] = p.returncode == 0
        t["error"] = None if t["ok"] else f"exit {p.returncode}"
        return
    t["frames"] = len(FRAME_RE.findall(out))
    if p.returncode != 0 or t["frames"] < MIN_FRAMES:
        tail = "\n".join("      | " + line for line in out.splitlines()[-25:])
        t["ok"] = False
        t["error"] = (f"exit {p.returncode}, {t['frames']} {FUNC} frames (want >= {MIN_FRAMES}); "
                      f"output ends:\n{tail}")


def time_round_robin(tools):
    for _ in range(RUNS):
        for t in tools:
            if not t["ok"]:
                continue
            t0 = time.perf_counter()
            rc = subprocess.run(t["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode
            t["runs_ms"].append((time.perf_counter() - t0) * 1e3)
            if rc != 0:
                t["ok"], t["error"] = False, f"exit {rc} during timed run {len(t['runs_ms'])}"


def measure_rss(tools):
    with tempfile.NamedTemporaryFile("r") as f:
        for _ in range(RSS_RUNS):
            for t in tools:
                if not (t["ok"] and t["rss"]):
                    continue
                rc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name] + t["argv"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode
                f.seek(0)
                lines = f.read().split()
                if rc != 0 or not lines:
                    t["ok"], t["error"] = False, f"exit {rc} under /usr/bin/time"
                    continue
                t["rss_kib"].append(int(lines[-1]))


def ms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def report(block):
    tools = block["tools"]
    ref = next(t for t in tools if t["ref"])
    ref_med = statistics.median(ref["runs_ms"]) if ref["ok"] and ref["runs_ms"] else None
    print(f"== {block['title']}")
    print(f"   {RUNS} runs per tool, round-robin, wall clock, output to /dev/null")
    print(f"   {'tool':<42} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'x pymri':>8}")
    for t in tools:
        if not t["ok"]:
            print(f"   {t['name']:<42} {'FAILED':>10}")
            continue
        med, lo, hi = (statistics.median(t["runs_ms"]), min(t["runs_ms"]), max(t["runs_ms"]))
        ratio = f"{med / ref_med:.1f}x" if ref_med and not t["floor"] else "-"
        print(f"   {t['name']:<42} {ms(med):>10} {ms(lo):>9} {ms(hi):>9} {ratio:>8}")
    print()
    for t in tools:
        if t["ok"] and not t["ref"] and not t["floor"] and ref_med:
            med = statistics.median(t["runs_ms"])
            print(f"   {t['name']}: {ms(med)} ms median, {med / ref_med:.1f}x pymri's time")
    for t in tools:
        if not t["ok"]:
            print(f"   {t['name']}: FAILED: {t['error']}")
    if block["bar"]:
        spy = next(t for t in tools if t["name"] == "py-spy dump")
        if ref_med and spy["ok"]:
            limit = statistics.median(spy["runs_ms"]) / 5
            verdict = "PASS" if ref_med <= limit else "MISS"
            print(f"   bar: pymri median {ms(ref_med)} ms <= py-spy median / 5 = {ms(limit)} ms"
                  f" -> {verdict}")
        else:
            print("   bar: cannot check (pymri or py-spy failed)")
    print()


def rss_report():
    print(f"== peak RSS (/usr/bin/time -f %M), {RSS_RUNS} runs per tool")
    print(f"   {'tool':<42} {'target':>6} {'median MiB':>11} {'max MiB':>8}")
    for b in blocks:
        ver = "3.15" if "3.15" in b["title"] else "3.14"
        for t in b["tools"]:
            if t["rss"] and t["rss_kib"]:
                med, hi = statistics.median(t["rss_kib"]) / 1024, max(t["rss_kib"]) / 1024
                print(f"   {t['name']:<42} {ver:>6} {med:>11.1f} {hi:>8.1f}")
    print()


def version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        return None


def main():
    for b in blocks:
        for t in b["tools"]:
            verify(t)
            if not t["floor"]:
                state = f"{t['frames']} {FUNC} frames" if t["ok"] else "FAILED"
                print(f"bench: check {t['name']} on pid {b['target']['pid']}: {state}",
                      file=sys.stderr)
    for b in blocks:
        print(f"bench: timing: {b['title']}", file=sys.stderr)
        time_round_robin(b["tools"])
    for b in blocks:
        measure_rss(b["tools"])
    print()
    for b in blocks:
        report(b)
    rss_report()

    now = datetime.datetime.now(datetime.timezone.utc)
    git = version(["git", "-C", E["BENCH_REPO"], "describe", "--always", "--dirty"])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), None)
    doc = {
        "date": now.isoformat(timespec="seconds"),
        "runs": RUNS,
        "method": "round-robin, time.perf_counter around subprocess.run, output to /dev/null",
        "min_frames": MIN_FRAMES,
        "machine": {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count()},
        "versions": {
            "pymri": version([PYMRI, "--version"]),
            "pymri_git": git,
            "py-spy": version([f"{VENV}/bin/py-spy", "--version"]),
            "pystack": importlib.metadata.version("pystack"),
        },
        "blocks": [{
            "title": b["title"],
            "target": dict(b["target"], threads=10, depth=30,
                           version=version(["chroot", b["target"]["root"], b["target"]["exe"],
                                            "--version"])),
            "tools": [{k: t[k] for k in ("name", "argv", "ok", "error", "frames", "runs_ms",
                                         "rss_kib")} for t in b["tools"]],
        } for b in blocks],
    }
    os.makedirs(E["BENCH_RESULTS"], exist_ok=True)
    path = os.path.join(E["BENCH_RESULTS"], f"dump-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"raw numbers: {path}")
    failed = [t["name"] for b in blocks for t in b["tools"] if not t["ok"]]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
EOF

BENCH_RUNS=$RUNS BENCH_PYMRI=$PYMRI BENCH_VENV=$VENV BENCH_REPO=$REPO BENCH_RESULTS=$RESULTS \
    BENCH_ROOT314=$ROOT314 BENCH_EXE314=$EXE314 BENCH_PID314=$PID314 \
    BENCH_ROOT315=$ROOT315 BENCH_EXE315=$EXE315 BENCH_PID315=$PID315 \
    "$VENV/bin/python" "$DRIVER_DIR/driver.py"
