"""`sys.remote_exec` driven from Python, the peer of `pymri exec` in bench/exec.sh.

Usage: remote_exec_driver.py PID DIR            one round trip, then exit
       remote_exec_driver.py --serve PID DIR    one round trip per line on stdin ("go"),
                                                answering each with its seconds

A round trip: write a script (into DIR, which the target sees at the same path) that writes 42
to a result file, ask process PID to run it, and wait for the file. `sys.remote_exec` sends no
output back, so polling a file is how its caller learns the result.
"""

import os
import sys
import time

POLL = 0.001
DEADLINE = 30.0


def round_trip(pid, directory, n):
    result = os.path.join(directory, "result-%d-%d" % (os.getpid(), n))
    script = os.path.join(directory, "script-%d-%d.py" % (os.getpid(), n))
    with open(script, "w") as f:
        # Written aside and renamed, so the driver never reads a half-written file.
        f.write("import os\nwith open(%r, 'w') as f:\n    f.write(repr(6 * 7))\nos.rename(%r, %r)\n"
                % (result + ".tmp", result + ".tmp", result))
    sys.remote_exec(pid, script)
    give_up = time.monotonic() + DEADLINE
    while not os.path.exists(result):
        if time.monotonic() > give_up:
            sys.exit("remote_exec_driver: no result from process %d within %ss" % (pid, DEADLINE))
        time.sleep(POLL)
    with open(result) as f:
        value = f.read()
    os.unlink(result)
    os.unlink(script)
    if value != "42":
        sys.exit("remote_exec_driver: unexpected result %r" % value)


def main():
    if sys.argv[1] == "--serve":
        pid, directory = int(sys.argv[2]), sys.argv[3]
        for n, _ in enumerate(sys.stdin):
            start = time.perf_counter()
            round_trip(pid, directory, n)
            print("%.6f" % (time.perf_counter() - start), flush=True)
    else:
        round_trip(int(sys.argv[1]), sys.argv[2], 0)
        print("42")


main()
