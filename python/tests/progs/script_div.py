import sys


def compute(values):
    total = 0
    for v in values:
        total += 10 / v  # MARK: div
    return total


print("starting", sys.argv[1:])
print("result", compute([1, 2, 0]))
