#!/usr/bin/env bash
# Builds pymri, starts the bundled multi-threaded example with this machine's python3, and
# dumps every thread of it, with locals. The example is stopped afterwards. What it is doing
# goes to stderr (cargo's own progress included), the dump to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "demo: $*" >&2; }
if [[ -x target/release/pymri ]]; then
    say "building pymri (release; only what changed since the last build)"
else
    say "building pymri (release; the first run compiles every dependency and takes a few minutes)"
fi
cargo build --release
fifo=$(mktemp -u)
mkfifo "$fifo"
python=$(command -v python3)
say "starting examples/threads.py with $python ($("$python" --version 2>&1))"
"$python" examples/threads.py >"$fifo" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$fifo"' EXIT
read -r _ready <"$fifo"
say "pymri dump --locals $pid"
./target/release/pymri dump --locals "$pid"
