"""A target idling in 50 ms sleeps, for the attach-latency benchmark.

Usage: idle.py FD   (writes "ready" to the inherited file descriptor FD)
"""

import os
import sys
import time


def idle():
    while True:
        time.sleep(0.05)


os.write(int(sys.argv[1]), b"ready\n")
os.close(int(sys.argv[1]))
idle()
