"""Imported only after a breakpoint in it was set."""


def late(n):
    def inner_late(k):
        return k * 2 + 1  # MARK: late
    return inner_late(n)
