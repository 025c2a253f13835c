"""`pymri trace` overhead on a running target, measured inside the target (bench/trace.sh).

The target prints the CPU time of each chunk of fixed work (its main thread's). In one process, phases alternate:
untraced chunks, chunks while `pymri trace PID ...` runs (from its "Tracing" note on), untraced
again after Ctrl-C, for --cycles cycles. The ratio is the median traced chunk over the median
untraced one; for the raising workload, the extra time per exception as well.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "workloads", "trace_target.py")


def interpreters():
    out = {}
    for line in os.environ.get("PYMRI_INTERPRETERS", "").splitlines():
        key, _, value = line.partition("=")
        root, _, exe = value.partition(":")
        m = re.match(r"PYTHON3(\d+)(D?)$", key)
        if m and exe:
            out["3.%s%s" % (m.group(1), m.group(2).lower())] = (root, exe)
    return out


def mark(name):
    with open(WORKLOAD) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith("# @mark " + name):
                return i
    raise SystemExit("no mark %s" % name)


class Target(object):
    def __init__(self, root, exe, mode, size):
        self.dir = tempfile.mkdtemp(prefix="pymri-bench-", dir=os.path.join(root, "tmp"))
        shutil.copy(WORKLOAD, self.dir)
        inside = "/" + os.path.relpath(os.path.join(self.dir, "trace_target.py"), root)
        self.script = inside if root != "/" else os.path.join(self.dir, "trace_target.py")
        cmd = ([exe] if root == "/" else ["chroot", root, exe]) + [self.script, mode, str(size)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.chunks = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == "chunk":
                self.chunks.put((time.monotonic(), float(parts[1]), int(parts[2])))

    def take(self, n, after=0.0):
        """`n` chunks that started after `after` (monotonic seconds)."""
        got = []
        while len(got) < n:
            done, secs, exc = self.chunks.get(timeout=60)
            # `secs` is CPU time: the chunk started no later than `done - secs`; the one chunk
            # in flight at `after` is dropped by the caller's margin below.
            if done - secs >= after:
                got.append((secs, exc))
        return got

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def traced(pymri, pid, args):
    proc = subprocess.Popen([pymri, "trace", str(pid), "--max-rate", "0"] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("Tracing"):
            return proc, time.monotonic()
        if line.startswith("error"):
            raise SystemExit("pymri trace failed: " + line + proc.stderr.read())
    raise SystemExit("pymri trace ended before tracing")


def run(pymri, root, exe, mode, size, args, cycles, per_phase):
    target = Target(root, exe, mode, size)
    try:
        target.take(5)  # warm-up
        plain, hooked = [], []
        for _ in range(cycles):
            plain += target.take(per_phase)
            args_ = [a.replace("{script}", target.script) for a in args]
            proc, since = traced(pymri, target.proc.pid, args_)
            target.take(1, after=since)  # may have started before the hooks were in
            hooked += target.take(per_phase, after=since)
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
            after = time.monotonic()
            target.take(1, after=after)
            plain += target.take(per_phase, after=after)
        base = statistics.median(s for s, _ in plain)
        with_hooks = statistics.median(s for s, _ in hooked)
        exc = statistics.median(e for _, e in hooked)
        return {"untraced_s": base, "traced_s": with_hooks, "ratio": with_hooks / base,
                "exceptions_per_chunk": exc,
                "us_per_exception": (with_hooks - base) / exc * 1e6 if exc else None,
                "untraced_exceptions_per_s": exc / base if exc else None}
    finally:
        target.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pymri", required=True)
    ap.add_argument("--python", action="append", default=[])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--per-phase", type=int, default=15)
    ap.add_argument("--json")
    a = ap.parse_args()
    found = interpreters()
    wanted = a.python or ["3.14", "3.11"]
    never = mark("never")
    scenarios = [
        ("exceptions, CPU work raising nothing", "cpu", 40000, ["--exceptions"]),
        ("exceptions, 10k raised+handled/s", "raise", 1000, ["--exceptions"]),
        ("logpoint on a line never reached", "cpu", 40000, ["--log", "{script}:%d" % never, "{x}"]),
    ]
    results = []
    print("%-7s %-40s %10s %10s %7s %12s" % ("python", "scenario", "untraced", "traced", "ratio", "us/exception"))
    for version in wanted:
        if version not in found:
            raise SystemExit("interpreter %s not provisioned" % version)
        root, exe = found[version]
        for name, mode, size, args in scenarios:
            r = run(a.pymri, root, exe, mode, size, args, a.cycles, a.per_phase)
            r.update({"python": version, "scenario": name})
            results.append(r)
            per = "%12.2f" % r["us_per_exception"] if r["us_per_exception"] is not None else "%12s" % "-"
            print("%-7s %-40s %9.1fms %9.1fms %6.3fx %s" % (version, name, r["untraced_s"] * 1e3,
                                                          r["traced_s"] * 1e3, r["ratio"], per))
            sys.stdout.flush()
    print("bars: exceptions on code raising nothing <= 1.05x on 3.12+, <= 1.5x on 3.9-3.11; "
          "logpoint never reached 1.0x on 3.12+")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
