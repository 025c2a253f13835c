"""Programs driven by the agent tests. Lines are located through their MARK comments."""

import threading


class Counter(object):
    def __init__(self):
        self.total = 0

    def add(self, k):
        self.total += k  # MARK: add
        return self.total


def helper(x):
    y = x * 2  # MARK: helper-first
    z = y + 1  # MARK: helper-second
    return z  # MARK: helper-return


def loop(n):
    c = Counter()
    for i in range(n):  # MARK: loop-head
        c.add(i)  # MARK: loop-body
    return c.total  # MARK: loop-return


def caller():
    a = 1  # MARK: caller-first
    b = helper(a)  # MARK: caller-call
    c = b + 10  # MARK: caller-after
    d = c * 2  # MARK: caller-more
    return d  # MARK: caller-return


def outer():
    secret = 5  # MARK: outer-first
    value = inner(secret)  # MARK: outer-call
    return value + secret  # MARK: outer-after


def inner(s):
    local = s + 1  # MARK: inner-first
    return local * 10  # MARK: inner-return


def printer():
    x = 1  # MARK: printer
    return x


def jumper():
    n = 0  # MARK: jump-first
    n += 1  # MARK: jump-skip
    n += 100  # MARK: jump-target
    return n  # MARK: jump-return


def unbound_jumper():
    value = 1  # MARK: unbound-assign
    return value  # MARK: unbound-use


def warn_past_caller():
    import warnings
    warnings.warn("past the caller", stacklevel=3)
    return 1


def never_called():
    return 42  # MARK: never


def divide(a, b):
    return a / b  # MARK: divide


def spin(stop_event, counter):
    while not stop_event.is_set():
        counter[0] += 1  # MARK: spin
    return counter[0]


def worker_body(results):
    v = helper(20)  # MARK: worker
    results.append(v)


def raiser():
    try:
        raise ValueError("boom")  # MARK: raise
    except ValueError:
        return "caught"  # MARK: caught


def run_threads():
    results = []
    t = threading.Thread(target=worker_body, args=(results,), name="worker-1")
    t.start()
    t.join(10)
    return results


def gen(n):
    for i in range(n):
        yield i * 10  # MARK: gen-yield


def consume_gen():
    total = 0
    for v in gen(3):  # MARK: consume
        total += v
    return total


def fact(n):
    if n <= 1:  # MARK: fact-first
        return 1
    return n * fact(n - 1)


async def coro_work(x):
    import asyncio
    await asyncio.sleep(0)
    y = x + 1  # MARK: coro
    return y


def run_async():
    import asyncio
    return asyncio.run(coro_work(41))


def raise_deep(n):
    if n == 0:
        raise KeyError("deep")  # MARK: raise deep
    return raise_deep(n - 1)


def raise_through():
    try:
        raise_deep(3)
    except KeyError:
        return "caught deep"


def loop_caller(n):
    total = loop(n)  # MARK: loop-call
    return total  # MARK: loop-call-after
