"""Informal timing probe (not a test): the cost of the agent on a CPU-bound workload.

    python3 tests/perf_probe.py [--scale N]

Measures, in this interpreter, a workload of loops, method calls and recursion (~1 s) run
plainly and with the agent attached in-process (socketpair controller), with
  (a) a breakpoint in the workload's file that is never hit,
  (b) a conditional breakpoint on the hottest line whose condition is never true,
  (c) `next` over the call that does all the work,
and prints the ratios to the plain run (best of several runs each).
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers  # noqa: E402
from helpers import AttachedProgram, line_of  # noqa: E402

N = 120000
FIB = 20


class Vec(object):
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def add(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def norm1(self):
        return abs(self.x) + abs(self.y)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def work(scale):
    acc = Vec(0, 0)
    total = 0
    for i in range(N * scale):
        v = Vec(i, -i)
        acc = acc.add(v)  # MARK: hot
        total += v.norm1() % 7
    for _ in range(scale):
        total += fib(FIB)
    return total + acc.x


def never_called():
    return 0  # MARK: never


def next_driver(scale):
    x = 0  # MARK: before
    work(scale)  # MARK: work-call
    x = 1  # MARK: after
    return x


def timed(scale):
    t0 = time.perf_counter()
    work(scale)
    return time.perf_counter() - t0


def plain(scale, repeat):
    out = []

    def run():
        out.append(min(timed(scale) for _ in range(repeat)))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def with_breakpoint(scale, repeat, **bp):
    go = threading.Event()

    def target():
        go.wait(60)
        return min(timed(scale) for _ in range(repeat))

    p = AttachedProgram(target, stop=False)
    c = p.connect()
    c.request("set_breakpoint", file=__file__, **bp)
    go.set()
    result = p.wait_result(timeout=600)
    p.finish()
    return result


def with_next(scale, repeat):
    times = []
    for _ in range(repeat):
        p = AttachedProgram(lambda: next_driver(scale), stop=True)
        c = p.connect()
        st = c.wait_event("stopped")
        c.request("set_breakpoint", file=__file__, line=line_of(__file__, "work-call"), temporary=True)
        c.request("continue", thread=st["thread"])
        st = c.wait_event("stopped", reason="breakpoint")
        t0 = time.perf_counter()
        c.request("next", thread=st["thread"])
        st2 = c.wait_event("stopped", timeout=600)
        times.append(time.perf_counter() - t0)
        assert st2["frame"]["line"] == line_of(__file__, "after"), st2
        c.request("continue", thread=st["thread"])
        p.wait_result(timeout=600)
        p.finish()
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=0, help="workload scale (default: ~1 s)")
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    scale = opts.scale
    if not scale:
        t = plain(1, 1)
        scale = max(1, int(round(1.0 / t)))
    # Rounds interleave the configurations (each run in a fresh agent session) so that CPU
    # frequency drift and noisy neighbours hit them alike; the best run of each is compared.
    runs = {"plain": [], "a": [], "b": [], "c": []}
    for _ in range(opts.repeat):
        runs["plain"].append(plain(scale, 1))
        runs["a"].append(with_breakpoint(scale, 1, line=line_of(__file__, "never")))
        runs["b"].append(with_breakpoint(scale, 1, line=line_of(__file__, "hot"), condition="i < 0"))
        runs["c"].append(with_next(scale, 1))
    base = min(runs["plain"])
    print("python %s  backend %s  plain %.3fs (scale %d)" % (
        sys.version.split()[0], "monitoring" if helpers.MONITORING else "settrace", base, scale))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    for key, label in (("a", "never-hit breakpoint"), ("b", "conditional, never true"),
                       ("c", "next over the work")):
        print("  (%s) %-26s %.2fx   (median %.2fx)" % (
            key, label, min(runs[key]) / base, med(runs[key]) / med(runs["plain"])))


if __name__ == "__main__":
    main()
