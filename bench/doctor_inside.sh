#!/usr/bin/env bash
# What a `pymri doctor` window costs the watched program, with and without the agent, and the
# time to a report (bench/README.md).
#
# Usage: bench/doctor_inside.sh [--python 3.14 --python 3.11 ...] [--cycles N] [--duration S]
# PYMRI_BIN=path uses that binary instead of a release build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
pymri_binary
load_interpreters
export PYMRI_INTERPRETERS=$INTERPRETERS
mkdir -p "$REPO/bench/results"
harness=$(command -v python3.11 || command -v python3)
exec "$harness" "$REPO/bench/doctor_inside_bench.py" --pymri "$PYMRI" \
    --json "$REPO/bench/results/doctor-inside-$(date -u +%Y%m%dT%H%M%SZ).json" "$@"
