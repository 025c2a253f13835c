#!/usr/bin/env bash
# Builds pymri, starts the bundled multi-threaded example with this machine's python3, and
# dumps every thread of it, with locals. The example is stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
fifo=$(mktemp -u)
mkfifo "$fifo"
python3 examples/threads.py >"$fifo" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$fifo"' EXIT
read -r _ready <"$fifo"
./target/release/pymri dump --locals "$pid"
