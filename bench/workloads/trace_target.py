"""Workload for bench/trace.sh: runs chunks of fixed work forever, printing one line per chunk:
"chunk CPU_SECONDS EXCEPTIONS" (the main thread's CPU time for the chunk).

Usage: trace_target.py cpu|raise SIZE

cpu: loops, method calls and recursion that raise nothing (the debugger benchmark's kind of
work). raise: every iteration raises an exception that the same function handles, plus a little
work, about 10,000 a second on an untraced 3.14. The line marked `never` is in a function that
never runs: the logpoint benchmark puts its logpoint there.
"""

import sys
import time

# Work between two exceptions in `raise` mode: about 100 microseconds of CPU on 3.14.
PER_EXCEPTION = 450


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def cpu(n):
    total = 0
    for i in range(n):
        p = Point(i, i + 1)
        total += p.norm2() % 7
        if i % 100 == 0:
            total += fib(10)
    return total, 0


def lookup(table, key):
    try:
        return table[key]
    except KeyError:
        return None


def raising(n):
    table = {}
    total = 0
    for i in range(n):
        if lookup(table, i) is None:
            total += cpu(PER_EXCEPTION)[0]
    return total, n


def never_called(x):
    return x + 1  # @mark never


def main():
    mode, size = sys.argv[1], int(sys.argv[2])
    work = cpu if mode == "cpu" else raising
    out = sys.stdout
    while True:
        # CPU time of this thread: on a loaded machine, time spent waiting for a CPU is not
        # the tracer's.
        start = time.thread_time()
        _, exceptions = work(size)
        out.write("chunk %.6f %d\n" % (time.thread_time() - start, exceptions))
        out.flush()


main()
