"""Target of test_transports: sets the agent up as the arguments say, then serves commands read
from stdin, one per line, answering each with one line on stdout.

    prog_transports.py listen ADDRESS [SECRET_FILE]
    prog_transports.py connect ADDRESS SECRET_FILE
    prog_transports.py plain                    (nothing: breakpoint() is the test's business)

First line out: "ready ADDRESS". Commands:
    work N          work(N), a breakpoint target           -> "work RESULT"
    trace N         traced(N), which calls breakpoint()    -> "trace RESULT"
    measure-start   a thread starts measuring its own progress -> "measuring"
    measure-stop    -> "measure WORST_GAP_MS"
    endpoint        -> "endpoint yes|no" (whether the agent has an endpoint)
    stop            pymri_agent.stop()                     -> "stopped"
"""

import sys
import threading
import time

import pymri_agent
from pymri_agent import library


def work(n):
    result = n * 2  # MARK: work
    return result


def traced(n):
    x = n + 1
    breakpoint()  # MARK: trace
    y = x * 10  # MARK: after-trace
    return y


class Meter(object):
    """A thread that measures its own progress: the longest time between two of its steps.

    It computes for 2 ms, then sleeps for 1 ms (any time slept beyond that counts as a gap too),
    like a program that works and waits for I/O: the agent's listener thread then gets the GIL
    without waiting for the interpreter's switch interval, so a flood of connections is served
    at full speed while the meter sees every moment the listener holds the GIL."""

    def __init__(self):
        self.running = True
        self.worst = 0.0
        self.thread = threading.Thread(target=self.run, name="meter", daemon=True)
        self.thread.start()

    def run(self):
        clock = time.perf_counter
        worst = 0.0
        prev = clock()
        while self.running:
            start = prev
            while prev - start < 0.002:
                now = clock()
                if now - prev > worst:
                    worst = now - prev
                prev = now
            time.sleep(0.001)
            now = clock()
            if now - prev - 0.001 > worst:
                worst = now - prev - 0.001
            prev = now
        self.worst = worst

    def stop(self):
        self.running = False
        self.thread.join()
        return self.worst


def main():
    mode = sys.argv[1]
    address = "-"
    if mode == "listen":
        address = pymri_agent.listen(sys.argv[2], secret_file=sys.argv[3] if len(sys.argv) > 3 else None)
    elif mode == "connect":
        pymri_agent.connect(sys.argv[2], secret_file=sys.argv[3])
    print("ready", address, flush=True)
    meter = None
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "work":
            print("work", work(int(arg)), flush=True)
        elif cmd == "trace":
            print("trace", traced(int(arg)), flush=True)
        elif cmd == "measure-start":
            meter = Meter()
            print("measuring", flush=True)
        elif cmd == "measure-stop":
            print("measure %.3f" % (meter.stop() * 1000.0), flush=True)
        elif cmd == "endpoint":
            print("endpoint", "no" if library._endpoint is None else "yes", flush=True)
        elif cmd == "stop":
            pymri_agent.stop()
            print("stopped", flush=True)


if __name__ == "__main__":
    main()
