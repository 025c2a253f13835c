"""A small multi-threaded program to look at with `pymri dump`.

Three workers wait for jobs on a shared queue, one thread crunches numbers, and the main
thread waits for them all. Prints "ready" once every thread is in place.
"""

import math
import queue
import threading

jobs = queue.Queue()
ready = threading.Barrier(5)


def crunch(limit):
    total = 0.0
    ready.wait()
    while True:
        for i in range(1, limit):
            total += math.sqrt(i)
        total = 0.0


def handle(job_id, payload):
    return len(payload) * job_id


def worker(slot):
    served = 0
    ready.wait()
    while True:
        job_id, payload = jobs.get()
        served += handle(job_id, payload)


def main():
    threads = [threading.Thread(target=worker, args=(n,), name=f"worker-{n}", daemon=True) for n in range(3)]
    threads.append(threading.Thread(target=crunch, args=(100_000,), name="cruncher", daemon=True))
    for t in threads:
        t.start()
    ready.wait()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
