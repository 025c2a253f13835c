"""`pymri exec` round trip against `sys.remote_exec` driven from Python, in one run.

Run by bench/exec.sh, which builds pymri. Each timed run asks an idle CPython 3.14 process to
compute 6 * 7 and waits until the answer is back:

  pymri exec              `pymri exec PID -c '6 * 7'`, whole command, until it exits with "42"
  remote_exec driver      `python3.14 remote_exec_driver.py PID DIR`, whole command: writes a
                          script, sys.remote_exec(PID, script), polls for the result file
  remote_exec in-process  the same round trip in a driver already running (no interpreter
                          start): what sys.remote_exec costs at best

The tools run round-robin, `--runs` times each. A target idling in sleeps takes a request when
its sleep ends, so before each run the harness waits a random fraction of one sleep: the phase
of the request against the target's sleeps is then the same for every tool, not tied to how
long the previous tool took. Two targets: one in 50 ms sleeps (the bar's idle target, as in the
attach benchmark), one in 1 ms sleeps (where that wait almost vanishes and the tools' own costs
show).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from debug_bench import IDLE, clean_env, interpreters  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "workloads", "remote_exec_driver.py")
TOOLS = ("pymri exec", "remote_exec driver", "remote_exec in-process")
BAR = 0.5


def start_idle(interp, script, sleep):
    read, write = os.pipe()
    proc = subprocess.Popen(interp.python(script, str(write), str(sleep)), pass_fds=(write,), env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as r:
        if r.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError("idle target did not start")
    return proc


def timed(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60, text=True, env=clean_env())
    took = time.perf_counter() - start
    if proc.returncode != 0 or proc.stdout != "42\n":
        raise RuntimeError(f"{cmd[:4]}... exit {proc.returncode}, stdout {proc.stdout[-200:]!r}, "
                           f"stderr {proc.stderr[-500:]!r}")
    return took


def measure(interp, pymri, runs, sleep, inside_dir):
    target = start_idle(interp, interp.inside(os.path.join(interp.root, inside_dir.lstrip("/"), "idle.py")), sleep)
    server = subprocess.Popen(interp.python(os.path.join(inside_dir, "remote_exec_driver.py"), "--serve",
                                            str(target.pid), inside_dir),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
    commands = {
        "pymri exec": [pymri, "exec", str(target.pid), "-c", "6 * 7"],
        "remote_exec driver": interp.python(os.path.join(inside_dir, "remote_exec_driver.py"), str(target.pid),
                                            inside_dir),
    }
    times = {tool: [] for tool in TOOLS}
    try:
        # One untimed round of each: warm caches (the agent's bytecode, the driver's imports).
        for tool in TOOLS:
            run_one(tool, commands, server)
        for _ in range(runs):
            for tool in TOOLS:
                time.sleep(random.uniform(0, sleep))
                times[tool].append(run_one(tool, commands, server))
    finally:
        server.kill()
        server.wait()
        target.kill()
        target.wait()
    return times, commands


def run_one(tool, commands, server):
    if tool == "remote_exec in-process":
        server.stdin.write("go\n")
        server.stdin.flush()
        line = server.stdout.readline()
        if not line:
            raise RuntimeError("the in-process remote_exec driver died")
        return float(line)
    return timed(commands[tool])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pymri", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs: at least 5")
    (interp,) = interpreters(["PYTHON314"])
    inside_dir = f"/tmp/pymri-bench-exec-{os.getpid()}"
    host_dir = os.path.join(interp.root, inside_dir.lstrip("/"))
    os.makedirs(host_dir)
    results = {}
    failed = False
    try:
        shutil.copy(IDLE, host_dir)
        shutil.copy(DRIVER, host_dir)
        for sleep in (0.05, 0.001):
            label = f"{sleep * 1000:g} ms sleeps"
            print(f"\n== CPython 3.14 target idling in {label}: {args.runs} runs per tool, round-robin")
            times, commands = measure(interp, args.pymri, args.runs, sleep, inside_dir)
            medians = {t: statistics.median(v) for t, v in times.items()}
            print(f"   {'tool':24} {'median ms':>10} {'min ms':>8} {'max ms':>8}  x pymri")
            for tool in TOOLS:
                v = times[tool]
                print(f"   {tool:24} {medians[tool] * 1000:10.1f} {min(v) * 1000:8.1f} {max(v) * 1000:8.1f}"
                      f"  {medians[tool] / medians['pymri exec']:5.2f}x")
            ratio = medians["pymri exec"] / medians["remote_exec driver"]
            ratio_inproc = medians["pymri exec"] / medians["remote_exec in-process"]
            print(f"   pymri exec / remote_exec driver: {ratio:.2f}x; / remote_exec in-process: {ratio_inproc:.2f}x")
            if sleep == 0.05:
                verdict = "PASS" if ratio <= BAR else "MISS"
                print(f"   bar: pymri exec at most {BAR}x of sys.remote_exec driven from Python: {ratio:.2f}x -> {verdict}")
            results[label] = {"runs": times, "medians": medians, "ratio": ratio,
                              "ratio_in_process": ratio_inproc,
                              "commands": {k: list(v) for k, v in commands.items()}}
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        failed = True
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    if args.json and results:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nraw numbers: {args.json}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
