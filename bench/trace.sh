#!/usr/bin/env bash
# `pymri trace` overhead: --exceptions on CPU work that raises nothing and on work raising and
# handling about 10,000 exceptions a second, and a logpoint on a line never reached, each
# against the same process untraced, in one run (bench/README.md).
#
# Usage: bench/trace.sh [--python 3.14 --python 3.11 ...] [--cycles N] [--per-phase N]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYMRI_INTERPRETERS:-}" ]; then
    PYMRI_INTERPRETERS=$(bash scripts/provision-interpreters.sh)
fi
export PYMRI_INTERPRETERS
cargo build --release --quiet -p pymri
mkdir -p bench/results
harness=$(command -v python3.11 || command -v python3)
exec "$harness" bench/trace_bench.py --pymri "$PWD/target/release/pymri" \
    --json "bench/results/trace-$(date -u +%Y%m%dT%H%M%SZ).json" "$@"
