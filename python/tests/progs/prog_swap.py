"""Functions for the code-swap breakpoint tests (tests/test_swap.py)."""

import functools
import sys
import time


def plain(n):
    total = 0  # MARK: plain-first
    for i in range(n):
        total += i  # MARK: plain-body
    return total  # MARK: plain-return


class Base(object):
    def greet(self):
        return "base"


class Child(Base):
    def greet(self):
        word = super().greet()  # MARK: super
        return word + "+child"


def outer(n):
    def inner(m):
        return m * n  # MARK: inner
    return [inner(i) for i in range(3)]


def make_adder(k):
    return lambda x: x + k  # MARK: lambda


def gen(n):
    for i in range(n):
        yield i * 2  # MARK: gen


async def acoro(n):
    v = n + 1  # MARK: async
    return v


def run_async(n):
    c = acoro(n)
    try:
        c.send(None)
    except StopIteration as e:
        return e.value


def deco(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        return f(*a, **k)
    return wrapper


@deco
def decorated(x):
    y = x * 10  # MARK: decorated
    return y


def spin(flag, started):
    n = 0
    started.set()
    while not flag.is_set():
        n += 1  # MARK: spin
    return n


def closure_factory(flag, started, out):
    """A running parent code: the closures it creates after a swap must be instrumented."""
    started.set()
    while not flag.is_set():
        def cb(v):
            return v + 1  # MARK: cb
        out.append(cb(len(out)))
        time.sleep(0.001)
    return len(out)


def tracer_of_this_thread():
    return sys.gettrace()
