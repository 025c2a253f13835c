"""A target idling in 50 ms sleeps, for the attach-latency and exec benchmarks.

Usage: idle.py FD [SECONDS]   (writes "ready" to the inherited file descriptor FD; sleeps of
SECONDS, 0.05 by default)
"""

import os
import sys
import time


def idle(seconds):
    while True:
        time.sleep(seconds)


os.write(int(sys.argv[1]), b"ready\n")
os.close(int(sys.argv[1]))
idle(float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
