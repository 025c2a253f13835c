"""Busy threads deep in a recursion, for the sampling benchmark.

Usage: deep_busy.py READY_FIFO [THREADS] [DEPTH]

Starts THREADS threads (default 4), each recursing DEPTH frames (default 33, so about 35 with
the thread's own frames) and then spinning in `leaf` for ever; writes "ready" to READY_FIFO
once every thread is spinning.
"""

import sys
import threading


def leaf(started):
    started.release()
    x = 0
    while True:
        x += 1


def down(n, started):
    if n == 0:
        leaf(started)
    down(n - 1, started)


def main():
    ready = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 33
    started = threading.Semaphore(0)
    for i in range(threads):
        threading.Thread(target=down, args=(depth, started), name=f"busy-{i}", daemon=True).start()
    for _ in range(threads):
        started.acquire()
    with open(ready, "w") as f:
        f.write("ready\n")
    threading.Event().wait()


main()
