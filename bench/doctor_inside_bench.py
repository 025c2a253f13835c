"""What a `pymri doctor` window costs the program it watches, measured inside the program
(bench/doctor_inside.sh).

The target is trace.sh's workload (`workloads/trace_target.py cpu`): chunks of fixed work,
each reported with its main thread's CPU time. In one process, for --cycles cycles: a span
without pymri as long as the last doctor run took, then a whole `pymri doctor PID --duration D`
run (agent injected, or `--no-inject`), alternating. Figures: chunks completed per second of
wall-clock time (what the census's hold of the GIL takes away, with the sampling's reads), and
the median CPU time of a chunk (what hooks cost the code itself), each as watched over
unwatched; and the time to a report (the run's wall-clock time less the window).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from trace_bench import Target, interpreters


def chunks_between(target, start, end):
    """Chunks that started at or after `start` and ended by `end` (monotonic seconds)."""
    got = []
    while True:
        done, secs, _ = target.chunks.get(timeout=60)
        if done - secs >= start and done <= end:
            got.append((done, secs))
        if done > end:
            return got


def doctor(pymri, pid, duration, extra):
    began = time.monotonic()
    out = subprocess.run([pymri, "doctor", str(pid), "--duration", str(duration), "--json"] + extra,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    ended = time.monotonic()
    if out.returncode != 0:
        raise SystemExit("pymri doctor failed: " + out.stderr)
    report = json.loads(out.stdout)
    return began, ended, report


def run(pymri, root, exe, duration, extra, cycles):
    target = Target(root, exe, "cpu", 20000)
    try:
        target.take(5)
        plain, watched, reports, skipped = [], [], [], set()
        span = duration + 1.0
        for _ in range(cycles):
            start = time.monotonic()
            while target.chunks.qsize():
                target.chunks.get()
            got = chunks_between(target, start, start + span)
            plain.append((len(got) / span, [s for _, s in got]))
            began, ended, report = doctor(pymri, target.proc.pid, duration, extra)
            got = chunks_between(target, began, ended)
            watched.append((len(got) / (ended - began), [s for _, s in got]))
            reports.append(ended - began - report["window_seconds"])
            skipped.update(report.get("skipped", []))
            span = ended - began
        rate = statistics.median(w[0] for w in watched) / statistics.median(p[0] for p in plain)
        cpu_plain = statistics.median(s for p in plain for s in p[1])
        cpu_watched = statistics.median(s for w in watched for s in w[1])
        return {"throughput_ratio": rate, "chunk_cpu_ratio": cpu_watched / cpu_plain,
                "chunk_cpu_ms": cpu_plain * 1e3, "report_after_s": statistics.median(reports),
                "skipped": sorted(skipped)}
    finally:
        target.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pymri", required=True)
    ap.add_argument("--python", action="append", default=[])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    found = interpreters()
    results = []
    print("%-7s %-28s %11s %10s %12s" % ("python", "doctor", "throughput", "chunk CPU", "report after"))
    for version in a.python or ["3.14", "3.11"]:
        if version not in found:
            raise SystemExit("interpreter %s not provisioned" % version)
        root, exe = found[version]
        for name, extra in (("outside only (--no-inject)", ["--no-inject"]), ("with the agent", [])):
            r = run(a.pymri, root, exe, a.duration, extra, a.cycles)
            r.update({"python": version, "doctor": name})
            results.append(r)
            print("%-7s %-28s %10.3fx %9.3fx %11.2fs" % (version, name, r["throughput_ratio"],
                                                          r["chunk_cpu_ratio"], r["report_after_s"]))
            sys.stdout.flush()
    print("bar (issue 11): a 5 s window makes the target at most 2% slower")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
