"""Constructs for the code-swap differential test (tests/test_codeswap.py): for every line, a
breakpoint served by instrumented code must fire exactly where a line trace fires."""

import contextlib
import functools
import types

G = 0


@types.coroutine
def _suspend():
    yield


def simple(n):
    a = n + 1
    b = a * 2; c = b - 1  # noqa: E702
    if a > 2: d = 1  # noqa: E701
    else: d = 2  # noqa: E701
    pass
    return a + b + c + d


def loops(n):
    total = 0
    for i in range(n):
        total += i
    else:
        total += 100
    j = 0
    while j < n:
        j += 1
    while True:
        break
    for k in range(2):
        if k:
            continue
        total -= 1
    return total + j


def multiline(n):
    x = max(
        n,
        3,
    )
    y = [
        i for i in range(n)
    ]
    z = {k: v for k, v in zip(range(n), range(n))}
    s = ("a"
         "b")
    return x + len(y) + len(z) + len(s)


def comps(n):
    a = [i * i for i in range(n)]
    b = sum(i for i in range(n))
    c = sorted(range(n), key=lambda v: -v)
    return a, b, c


def exceptions(n):
    try:
        x = 1 / n
    except ZeroDivisionError:
        x = 0
    else:
        x += 1
    finally:
        y = 2
    try:
        raise ValueError("v")
    except (TypeError, ValueError) as e:
        z = str(e)
    try:
        w = 1
    finally:
        w += 1
    return x, y, z, w


def withs(n):
    with contextlib.nullcontext(n) as v:
        w = v + 1
    with contextlib.nullcontext(1), contextlib.nullcontext(2):
        w += 1
    return w


def elifs(n):
    if n == 0:
        r = "zero"
    elif n == 1:
        r = "one"
    elif n == 2:
        r = "two"
    else:
        r = "many"
    return r


def nested(n):
    def inner(m):
        return m + n

    f = lambda q: q * 2  # noqa: E731
    g = (lambda q:
         q + 1)
    return inner(1) + f(2) + g(3)


class K(object):
    """A class."""
    attr = 1

    def method(self, n):
        """Docstring."""
        h = super().__hash__() != 0
        return n if h else n

    @staticmethod
    def st(n):
        return n + 1

    @property
    def prop(self):
        return self.attr


def deco(fn):
    @functools.wraps(fn)
    def wrapper(*a):
        return fn(*a)
    return wrapper


@deco
def decorated(n):
    return n * 3


def gen(n):
    for i in range(n):
        yield i
    x = yield from range(2)
    return x


async def coro(n):
    await _suspend()
    v = n + 1
    await _suspend()
    return v


def run_coro(c):
    try:
        while True:
            c.send(None)
    except StopIteration as e:
        return e.value


def closures(n):
    acc = []
    for i in range(n):
        def add(x, i=i):
            acc.append(x + i)
        add(i)
    return acc


def globals_use(n):
    global G
    G = n
    return G


def asserts(n):
    assert n >= 0, "neg"
    return n


def recursion(n):
    return n if n < 2 else recursion(n - 1) + recursion(n - 2)


def class_in_function(n):
    class Local(object):
        v = n

        def get(self):
            return self.v
    return Local().get()


def one_liner(n): return n + 1  # noqa: E704


def main():
    out = []
    out.append(simple(3))
    out.append(loops(3))
    out.append(multiline(3))
    out.append(comps(3))
    out.append(exceptions(0))
    out.append(exceptions(2))
    out.append(withs(1))
    for v in range(4):
        out.append(elifs(v))
    out.append(nested(2))
    k = K()
    out.append(k.method(1))
    out.append(K.st(1))
    out.append(k.prop)
    out.append(decorated(2))
    out.append(list(gen(3)))
    out.append(run_coro(coro(1)))
    out.append(closures(2))
    out.append(globals_use(5))
    out.append(asserts(1))
    out.append(recursion(4))
    out.append(class_in_function(7))
    out.append(one_liner(1))
    return out


RESULT = main()
