"""CPU-bound workload for the debugger benchmarks: loops, method calls, recursion.

Usage: cpu.py N

Times only `work(N)` (the call marked @call) and prints "elapsed SECONDS result R", so the cost
of starting a debugger does not count. Lines the benchmark puts breakpoints on are marked.
"""

import sys
import time


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def work(n):
    total = 0
    for i in range(n):
        p = Point(i, i + 1)
        total += p.norm2() % 7  # @hot
        if i % 500 == 0:
            total += fib(10)
    return total


def never_called():
    return 0  # @never


def main():
    n = int(sys.argv[1])
    start = time.perf_counter()
    result = work(n)  # @call
    elapsed = time.perf_counter() - start
    print(f"elapsed {elapsed:.6f} result {result}", flush=True)


if __name__ == "__main__":
    main()
