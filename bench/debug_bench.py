"""Debugger overhead and attach latency: pymri against pdb, in one run, on the same workload.

Run by bench/debug.sh, which builds pymri and provisions the interpreters. Scenarios, each on
bench/workloads/cpu.py, whose `work()` times itself:

  never-hit    a breakpoint in the file that is never reached
  hot-cond     a conditional breakpoint on the hottest line, never true
  next         `next` over the call that does all the work

Each tool runs the same commands through its `-c` option (pdb's rc lines), stdin closed, so
the debugger quits by itself at the end. Ratios are the workload's own elapsed time under the
debugger over its elapsed time without one, medians of interleaved runs; the verdict uses those.
The ratio of the fastest runs is shown too: on a machine shared with other work, a run is either
undisturbed or slowed by tens of percent, which moves medians of a few runs by more than the 5%
the bars allow, while the fastest runs stay close to the undisturbed cost.

  attach       time from starting the command to its first prompt, attaching to a 3.14
               target idling in 50 ms sleeps: `pymri attach PID` against `python3.14 -m pdb -p`.
"""

import argparse
import json
import os
import pty
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "workloads", "cpu.py")
IDLE = os.path.join(HERE, "workloads", "idle.py")

# Bars from the product design: (applies to versions >= 3.12, applies to older versions).
BARS = {"never-hit": (1.05, 1.5), "hot-cond": (3.0, 3.0), "next": (1.05, None)}
OVERHEAD_PYTHONS = ("3.9", "3.11", "3.13", "3.14", "3.15")


def marks(path):
    found = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"# @(\w+)$", line.rstrip())
            if m:
                found[m.group(1)] = number
    return found


class Interpreter:
    def __init__(self, key, root, exe):
        self.key, self.root, self.exe = key, root, exe
        digits = key[len("PYTHON3"):]
        self.name = "3." + digits
        self.minor = int(digits)

    def inside(self, host_path):
        return host_path if self.root == "/" else "/" + os.path.relpath(host_path, self.root)

    def python(self, *args):
        prefix = [] if self.root == "/" else ["chroot", self.root]
        return prefix + [self.exe, *args]


def interpreters(wanted):
    text = os.environ.get("PYMRI_INTERPRETERS", "")
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        root, _, exe = value.partition(":")
        if key in wanted:
            found[key] = Interpreter(key, root, exe)
    missing = [k for k in wanted if k not in found]
    if missing:
        sys.exit(f"bench: interpreters missing: {missing} (run scripts/provision-interpreters.sh)")
    return [found[k] for k in wanted]


def stage(interp, scratch):
    """Copies the workloads into the interpreter's root; returns their paths inside it."""
    target = os.path.join(interp.root, scratch.lstrip("/"))
    os.makedirs(target, exist_ok=True)
    for src in (WORKLOAD, IDLE):
        shutil.copy(src, target)
    return {name: os.path.join(scratch, os.path.basename(src)) for name, src in (("cpu", WORKLOAD), ("idle", IDLE))}


def elapsed_of(cmd, timeout):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True, env=clean_env())
    m = re.search(r"elapsed (\d+\.\d+) result", proc.stdout)
    if not m:
        raise RuntimeError(f"{cmd[:6]}... printed no timing (exit {proc.returncode}):\n{proc.stdout[-800:]}\n{proc.stderr[-800:]}")
    return float(m.group(1))


def scenario_commands(name, script, m):
    if name == "never-hit":
        return [f"b {script}:{m['never']}", "c"]
    if name == "hot-cond":
        return [f"b {script}:{m['hot']}, i < 0", "c"]
    return [f"b {script}:{m['call']}", "c", "n", "c"]


def tool_command(tool, interp, pymri, script, n, commands):
    if tool == "plain":
        return interp.python(script, str(n))
    flags = [x for c in commands for x in ("-c", c)]
    if tool == "pdb":
        return interp.python("-m", "pdb", *flags, script, str(n))
    root = [] if interp.root == "/" else ["--root", interp.root]
    return [pymri, "run", *root, "--python", interp.exe, *flags, script, str(n)]


def measure_overhead(interps, pymri, runs, n, scratch, tools):
    m = marks(WORKLOAD)
    rows = []
    for interp in interps:
        paths = stage(interp, scratch)
        script = paths["cpu"]
        for scenario in ("never-hit", "hot-cond", "next"):
            commands = scenario_commands(scenario, script, m)
            times = {tool: [] for tool in tools}
            for _ in range(runs):
                for tool in tools:
                    cmd = tool_command(tool, interp, pymri, script, n, commands)
                    times[tool].append(elapsed_of(cmd, timeout=1800))
            plain = statistics.median(times["plain"])
            row = {"python": interp.name, "scenario": scenario, "plain_s": plain, "runs": times}
            for tool in tools:
                if tool != "plain":
                    row[tool] = statistics.median(times[tool]) / plain
                    row[tool + "_fastest"] = min(times[tool]) / min(times["plain"])
            new, old = BARS[scenario]
            row["bar"] = new if interp.minor >= 12 else old
            rows.append(row)
            shown = "  ".join(f"{t} {row[t]:6.2f}x (fastest {row[t + '_fastest']:.2f}x)"
                              for t in tools if t != "plain")
            print(f"   {interp.name:5} {scenario:10} plain {plain * 1000:8.1f} ms  {shown}", flush=True)
    return rows


def time_to_prompt(cmd, prompt, timeout=30.0):
    """Starts `cmd` in a pseudo-terminal; seconds until `prompt` appears on its screen."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    seen = b""
    try:
        while True:
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                raise RuntimeError(f"no prompt from {cmd[:4]}... within {timeout}s:\n{seen[-500:]!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise RuntimeError(f"{cmd[:4]}... exited before its prompt:\n{seen[-500:]!r}")
                seen += chunk
                if prompt in seen:
                    return time.perf_counter() - start
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                os.waitpid(pid, 0)
                break
            except (ProcessLookupError, ChildProcessError):
                break
        os.close(fd)


def clean_env():
    """The environment of a service started normally: none of this shell's Python settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def start_idle(interp, script):
    """A target idling in 50 ms sleeps; returns the process once it said it is ready."""
    read, write = os.pipe()
    proc = subprocess.Popen(interp.python(script, str(write)), pass_fds=(write,), env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as r:
        if r.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError("idle target did not start")
    return proc


def measure_attach(interp, pymri, runs, scratch):
    paths = stage(interp, scratch)
    times = {"pymri attach": [], "pdb -p": []}
    for _ in range(runs):
        for tool in times:
            target = start_idle(interp, paths["idle"])
            try:
                if tool == "pdb -p":
                    cmd = interp.python("-m", "pdb", "-p", str(target.pid))
                else:
                    cmd = [pymri, "attach", str(target.pid)]
                times[tool].append(time_to_prompt(cmd, b"(Pdb) "))
            finally:
                target.kill()
                target.wait()
    medians = {t: statistics.median(v) for t, v in times.items()}
    ratio = medians["pymri attach"] / medians["pdb -p"]
    for tool, value in medians.items():
        print(f"   {tool:14} {value * 1000:8.1f} ms median  (min {min(times[tool]) * 1000:.1f}, max {max(times[tool]) * 1000:.1f})")
    verdict = "PASS" if ratio <= 0.5 else "MISS"
    print(f"   bar: pymri attach at most half of pdb -p's time: {ratio:.2f}x -> {verdict}")
    return {"runs": times, "medians": medians, "ratio": ratio}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pymri", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attach-runs", type=int, default=10)
    parser.add_argument("--n", type=int, default=300000, help="workload size (about 0.15 s plain)")
    parser.add_argument("--only", choices=("overhead", "attach"))
    parser.add_argument("--python", action="append", choices=OVERHEAD_PYTHONS,
                        help="overhead on this interpreter only (repeatable; default: all)")
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args()
    scratch = f"/tmp/pymri-bench-{os.getpid()}"
    results = {}
    if args.only != "attach":
        wanted = args.python or OVERHEAD_PYTHONS
        interps = interpreters(["PYTHON" + v.replace(".", "") for v in OVERHEAD_PYTHONS if v in wanted])
        print("== overhead: workload time under the debugger / without (median of interleaved runs)")
        rows = measure_overhead(interps, args.pymri, args.runs, args.n, scratch, ["plain", "pdb", "pymri"])
        print("\n   python scenario    pdb      pymri    bar     verdict  (pymri fastest/fastest)")
        for row in rows:
            bar = row["bar"]
            verdict = "-" if bar is None else ("PASS" if row["pymri"] <= bar else "MISS")
            shown_bar = "-" if bar is None else f"{bar:.2f}x"
            print(f"   {row['python']:6} {row['scenario']:10} {row['pdb']:7.2f}x {row['pymri']:7.2f}x  {shown_bar:6}  {verdict:7}  "
                  f"({row['pymri_fastest']:.2f}x)")
        results["overhead"] = rows
    if args.only != "overhead":
        (interp,) = interpreters(["PYTHON314"])
        print("\n== attach to first prompt, 3.14 target idling in 50 ms sleeps")
        results["attach"] = measure_attach(interp, args.pymri, args.attach_runs, scratch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nraw numbers: {args.json}")


if __name__ == "__main__":
    main()
