"""A target that counts its own work, for bench/record_overhead.sh.

Usage: overhead.py READY_FIFO CONTROL_FIFO

One thread runs a fixed unit of Python work (method calls, arithmetic, a dict) over and over
and counts the units; four more threads wait on an event (a sampler reads them too). Writes
"ready" to READY_FIFO once running; then, for each line read on CONTROL_FIFO, one line: the
units done so far, the target's own clock and the working thread's CPU time when it finished
them (seconds), so that rates are measured by the target itself: per second of wall time (what
a user waits), and per second of the thread's CPU time (what is left once CPU taken by other
processes, pymri included, is out of the picture).
"""

import os
import sys
import threading
import time

progress = (0, 0.0)


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def unit():
    table = {}
    for i in range(200):
        table[i % 17] = Point(i, i + 1).norm2()
    return sum(table.values())


def work(started):
    global progress
    started.set()
    done = 0
    while True:
        unit()
        done += 1
        progress = (done, time.thread_time())


def main():
    out = open(sys.argv[1], "w", buffering=1)
    commands = os.fdopen(os.open(sys.argv[2], os.O_RDWR), "r")
    never = threading.Event()
    for _ in range(4):
        threading.Thread(target=never.wait, daemon=True).start()
    started = threading.Event()
    threading.Thread(target=work, args=(started,), daemon=True).start()
    started.wait()
    out.write("ready\n")
    for _ in commands:
        done, cpu = progress
        out.write(f"{done} {time.perf_counter()} {cpu}\n")


main()
