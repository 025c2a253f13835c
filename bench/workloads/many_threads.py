"""Many threads parked a few frames deep, for the sampler's scale benchmark.

Usage: many_threads.py READY_FIFO THREADS [DEPTH]

Starts THREADS threads (besides the main thread), each recursing DEPTH frames (default 20)
and then waiting on an event for ever (off CPU); writes "ready" to READY_FIFO once every
thread waits.
"""

import sys
import threading


def park(forever, parked):
    parked.release()
    forever.wait()


def down(n, forever, parked):
    if n == 0:
        park(forever, parked)
    down(n - 1, forever, parked)


def main():
    ready, threads = sys.argv[1], int(sys.argv[2])
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    forever = threading.Event()
    parked = threading.Semaphore(0)
    for i in range(threads):
        threading.Thread(target=down, args=(depth, forever, parked), name=f"parked-{i}", daemon=True).start()
    for _ in range(threads):
        parked.acquire()
    with open(ready, "w") as f:
        f.write("ready\n")
    forever.wait()


main()
