"""`pymri snapshot` against `gcore`, on one live target, in one run.

Run by bench/snapshot.sh, which builds pymri, finds the 3.14 root and prepares a directory
inside it (the fixture and its two FIFOs). Configuration arrives in BENCH_* variables.

For each tool and run: the target's longest pause between ticks is reset (control FIFO,
"gap"), the tool writes a core of the target, the wall time of the whole command is taken,
then the longest pause since the reset is read back: how long the target could not run, as
the target saw it. The core is deleted. The tools run round-robin so that drift on the
machine (page cache, other load) falls on both.

Before timing, each tool's core is read back: `pymri dump --core` must show the five threads
with the fixture's frames, and `pystack core` (when BENCH_PYSTACK names it) must show them too.
"""

import ctypes
import datetime
import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import time

E = os.environ
RUNS = int(E["BENCH_RUNS"])
HEAP = int(E["BENCH_HEAP"])
PYMRI = E["BENCH_PYMRI"]
ROOT, EXE = E["BENCH_ROOT"], E["BENCH_EXE"]
WORK, INNER = E["BENCH_WORK"], E["BENCH_INNER"]
PYSTACK = E.get("BENCH_PYSTACK") or None
THREADS = 5
# Bars from the issue: at most half of gcore's time, a stop at most a tenth of gcore's.
TIME_BAR, STOP_BAR = 0.5, 0.1
FIXTURE = "snapshot_target.py"


def die_with_parent():
    # PR_SET_PDEATHSIG: the target dies with this driver, however the driver ends.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Target:
    def __init__(self):
        args = [f"{INNER}/{FIXTURE}", f"{INNER}/ready", f"{INNER}/control", str(HEAP)]
        self.proc = subprocess.Popen(["chroot", ROOT, EXE] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/stderr", "w"),
                                     preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        # Non-blocking opens: the fixture opens the ready FIFO for writing once its heap is built.
        self.ready = os.open(f"{WORK}/ready", os.O_RDONLY | os.O_NONBLOCK)
        self.buf = b""
        self.threads = json.loads(self.line(120))["threads"]
        self.control = open(os.open(f"{WORK}/control", os.O_WRONLY), "w", buffering=1)

    def line(self, timeout=30):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"target: no answer (exit {self.proc.poll()}); "
                                   f"stderr: {open(f'{WORK}/stderr').read()[-2000:]}")
            if select.select([self.ready], [], [], left)[0]:
                self.buf += os.read(self.ready, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def ask(self, command):
        self.control.write(command + "\n")
        return self.line()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def pymri_cmd(pid, core):
    return [PYMRI, "snapshot", str(pid), "-o", core]


def gcore_cmd(pid, core):
    return ["gcore", "-o", core, str(pid)]


def gcore_file(core, pid):
    return f"{core}.{pid}"


TOOLS = {
    "pymri snapshot": (pymri_cmd, lambda core, pid: core),
    "gcore": (gcore_cmd, gcore_file),
}


def run_tool(name, target, core):
    cmd, written = TOOLS[name]
    target.ask("gap")
    start = time.perf_counter()
    proc = subprocess.run(cmd(target.pid, core), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    took = time.perf_counter() - start
    stop_ms = float(target.ask("gap"))
    path = written(core, target.pid)
    if proc.returncode != 0 or not os.path.exists(path):
        raise RuntimeError(f"{name}: exit {proc.returncode}: {proc.stderr[-1000:]}")
    said = re.search(r"stopped for ([0-9.]+) ms", proc.stderr)
    return {"seconds": took, "target_stop_ms": stop_ms, "size": os.path.getsize(path),
            "disk": os.stat(path).st_blocks * 512,
            "own_stop_ms": float(said.group(1)) if said else None}, path


def check(name, target, path):
    """The core reads back: every thread, the fixture's frames (pymri; pystack if present)."""
    out = subprocess.run([PYMRI, "dump", "--json", "--core", path], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"pymri dump --core of {name}'s core: {out.stderr[-1000:]}")
    dump = json.loads(out.stdout)
    tids = {t["tid"] for t in dump["threads"]}
    if tids != set(target.threads.values()):
        raise RuntimeError(f"{name}'s core: threads {sorted(tids)}, expected {target.threads}")
    frames = sum(f["function"].endswith("wait_here") for t in dump["threads"] for f in t["frames"])
    if frames != 4 + 6:
        raise RuntimeError(f"{name}'s core: {frames} wait_here frames, expected 10")
    print(f"bench: {name}: pymri dump --core reads {len(tids)} threads, {frames} wait_here frames",
          file=sys.stderr)
    if PYSTACK:
        exe = os.path.join(ROOT, EXE.lstrip("/"))
        # The core names its libraries with the root in front (as gcore does): pystack finds
        # them as they are. (--lib-search-root would walk the root's /proc too.)
        out = subprocess.run([PYSTACK, "core", path, exe],
                             capture_output=True, text=True, timeout=300)
        seen = out.stdout.count("wait_here")
        if out.returncode != 0 or seen < 10:
            raise RuntimeError(f"pystack core of {name}'s core: exit {out.returncode}, {seen} wait_here "
                               f"frames\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
        print(f"bench: {name}: pystack core reads {seen} wait_here frames", file=sys.stderr)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    target = Target()
    try:
        return bench(target)
    finally:
        target.stop()


def bench(target):
    print(f"bench: target pid {target.pid}: CPython 3.14, {HEAP} MiB heap, {THREADS} threads",
          file=sys.stderr)
    core = os.path.join(WORK, "bench.core")
    for name in TOOLS:
        _, path = run_tool(name, target, core)
        try:
            check(name, target, path)
        finally:
            os.unlink(path)
    results = {name: [] for name in TOOLS}
    for i in range(RUNS):
        for name in TOOLS:
            result, path = run_tool(name, target, core)
            os.unlink(path)
            results[name].append(result)
        print(f"bench: run {i + 1}/{RUNS} done", file=sys.stderr)
    if not target.ask("ping").startswith("pong"):
        raise RuntimeError("the target stopped answering")

    ours, theirs = results["pymri snapshot"], results["gcore"]
    med = {n: {k: median([r[k] for r in rs if r[k] is not None])
               for k in ("seconds", "target_stop_ms", "own_stop_ms", "size", "disk")}
           for n, rs in results.items()}
    print()
    print(f"== pymri snapshot vs gcore: CPython 3.14 target, {HEAP} MiB heap, {THREADS} threads")
    print(f"   {RUNS} runs per tool, round-robin; medians (min-max)")
    print(f"   {'tool':<16} {'wall s':>16} {'target stopped ms':>22} {'core MiB':>9} {'on disk MiB':>12}")
    for name, rs in results.items():
        secs = [r["seconds"] for r in rs]
        stops = [r["target_stop_ms"] for r in rs]
        print(f"   {name:<16} {med[name]['seconds']:>6.3f} ({min(secs):.3f}-{max(secs):.3f})"
              f" {med[name]['target_stop_ms']:>9.1f} ({min(stops):.1f}-{max(stops):.1f})"
              f" {med[name]['size'] / 2**20:>9.1f} {med[name]['disk'] / 2**20:>12.1f}")
    own = med["pymri snapshot"]["own_stop_ms"]
    print(f"   pymri's own measure of its stop (first seize to last detach): {own:.1f} ms median")
    time_ratio = med["pymri snapshot"]["seconds"] / med["gcore"]["seconds"]
    stop_ratio = med["pymri snapshot"]["target_stop_ms"] / med["gcore"]["target_stop_ms"]
    print(f"   time: pymri / gcore = {time_ratio:.3f} (bar <= {TIME_BAR}) -> "
          f"{'PASS' if time_ratio <= TIME_BAR else 'MISS'}")
    print(f"   stop: pymri / gcore = {stop_ratio:.3f} (bar <= {STOP_BAR}) -> "
          f"{'PASS' if stop_ratio <= STOP_BAR else 'MISS'}")

    now = datetime.datetime.now(datetime.timezone.utc)
    git = subprocess.run(["git", "-C", E["BENCH_REPO"], "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    doc = {
        "date": now.isoformat(timespec="seconds"),
        "runs": RUNS,
        "heap_mib": HEAP,
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "load": os.getloadavg()},
        "versions": {"pymri_git": git,
                     "gdb": subprocess.run(["gdb", "--version"], capture_output=True,
                                           text=True).stdout.splitlines()[0]},
        "results": results,
        "ratios": {"time": time_ratio, "stop": stop_ratio},
    }
    os.makedirs(E["BENCH_RESULTS"], exist_ok=True)
    path = os.path.join(E["BENCH_RESULTS"], f"snapshot-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"raw numbers: {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
