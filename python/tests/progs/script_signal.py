"""A program whose signal handler raises while it is stopped at a breakpoint."""

import signal


def on_usr1(signum, frame):
    raise KeyboardInterrupt("signalled")


signal.signal(signal.SIGUSR1, on_usr1)
x = 1  # MARK: stop
print("after", x)
