"""Agent tests: `python3 -m unittest discover -s python/tests -t python` (see run_all.sh)."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(_HERE, "progs"), _HERE, os.path.dirname(_HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
