#!/usr/bin/env bash
# Debugger overhead (breakpoint never hit, hot conditional breakpoint, `next` over the work) and
# attach-to-prompt latency: pymri against pdb in one run, on CPython 3.9 to 3.15.
#
# Usage: bench/debug.sh [--runs N] [--attach-runs N] [--n SIZE] [--only overhead|attach]
#                       [--python 3.9|3.11|3.13|3.14|3.15 ...]   (overhead on these only)
#
# Prints ratios against the workload without a debugger and the product's bars; writes the raw
# numbers to bench/results/debug-DATE.json. pdb on 3.9-3.13 is slow with a breakpoint in the
# file (tens of times): the default workload is small so the run takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYMRI_INTERPRETERS=$(bash scripts/provision-interpreters.sh)
export PYMRI_INTERPRETERS
cargo build --release --quiet
mkdir -p bench/results
# The machine's python3 may be a version-manager shim; the harness only needs any Python 3.
harness=$(command -v python3.11 || command -v python3)
exec "$harness" bench/debug_bench.py --pymri "$PWD/target/release/pymri" \
    --json "bench/results/debug-$(date -u +%Y%m%dT%H%M%SZ).json" "$@"
