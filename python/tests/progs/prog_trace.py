"""A program for the trace tests: exceptions raised and handled in several ways, calls to count.
Lines are located through their MARK comments."""

import sys
import threading


class Registry(object):
    def add(self, key):
        return key  # MARK: add


def swallow(n):
    try:
        raise KeyError(n)  # MARK: raise
    except KeyError:  # MARK: handler
        return None


def deep(n):
    if n == 0:
        raise ValueError("deep")  # MARK: deep-raise
    return deep(n - 1)


def catch_deep():
    try:
        deep(3)
    except ValueError:  # MARK: deep-handler
        return 1


class Prop(object):
    @property
    def missing(self):
        raise AttributeError("missing")  # MARK: prop-raise


def native():
    return hasattr(Prop(), "missing")  # MARK: native


def loop(go, stop, seen):
    """Runs rounds while `go` is set; at `stop`, records its own trace function and returns."""
    r = Registry()
    n = 0
    while not stop.is_set():
        if go.wait(0.01):
            n += 1
            swallow(n)
            catch_deep()
            native()
            r.add(n)  # MARK: call-site
    seen.append(sys.gettrace())
    return n


def in_thread(go, stop, seen):
    t = threading.Thread(target=loop, args=(go, stop, seen), name="looper")
    t.start()
    return t
