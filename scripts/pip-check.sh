#!/usr/bin/env bash
# Checks that `pip install ./python` gives a working agent library (docs/transports.md section 7):
# installs it into a fresh virtualenv of the host's python3.11 and, from outside the source
# tree, imports it and runs `python -m pymri_agent --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3.11 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$repo/python"
cd "$work"
"$work/venv/bin/python" - "$work/venv" <<'PY'
import sys
import pymri_agent
assert pymri_agent.__file__.startswith(sys.argv[1]), pymri_agent.__file__
for name in ("listen", "connect", "set_trace", "stop"):
    assert callable(getattr(pymri_agent, name)), name
PY
"$work/venv/bin/python" -m pymri_agent --help | grep -q -- "--listen"
echo "pip-check: pymri_agent installs and imports from a virtualenv" >&2
