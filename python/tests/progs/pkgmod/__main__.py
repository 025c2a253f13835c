import sys

value = 7  # MARK: pkg-first
print("pkgmod main", __name__, __package__, sys.argv[1:])
