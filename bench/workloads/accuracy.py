"""A target that measures its own truth, for bench/record_accuracy.sh.

Usage: accuracy.py READY_FIFO CONTROL_FIFO

Three threads each move among `hot`, `warm` (both spin in Python) and `io` (sleeps), staying a
random 0.5 to 5.5 ms at a time (so that no sampling rate falls in step), and add up the wall
time they spend in each function. Writes "ready" to READY_FIFO once every thread runs; then, for
each line read on CONTROL_FIFO, one JSON line: the seconds spent so far in each function, all
threads together.
"""

import json
import os
import random
import sys
import threading
import time

clock = time.perf_counter
truth = {"hot": 0.0, "warm": 0.0, "io": 0.0}
lock = threading.Lock()


def hot(until):
    while clock() < until:
        pass


def warm(until):
    while clock() < until:
        pass


def io(seconds):
    time.sleep(seconds)


def worker(seed, started):
    rng = random.Random(seed)
    started.set()
    while True:
        name = rng.choice(("hot", "hot", "warm", "io"))
        stay = rng.uniform(0.0005, 0.0055)
        t0 = clock()
        if name == "hot":
            hot(t0 + stay)
        elif name == "warm":
            warm(t0 + stay)
        else:
            io(stay)
        t1 = clock()
        with lock:
            truth[name] += t1 - t0


def main():
    out = open(sys.argv[1], "w", buffering=1)
    commands = os.fdopen(os.open(sys.argv[2], os.O_RDWR), "r")
    for seed in range(3):
        started = threading.Event()
        threading.Thread(target=worker, args=(seed, started), daemon=True).start()
        started.wait()
    out.write("ready\n")
    for _ in commands:
        with lock:
            out.write(json.dumps(truth) + "\n")


main()
