#!/usr/bin/env bash
# `pymri exec` round trip on an idle CPython 3.14 process against `sys.remote_exec` driven from
# Python (a driver that asks the process to run a script writing a result file, and waits for
# the file), in one run, as a ratio. Bar: pymri at most 0.5x.
#
# Usage: bench/exec.sh [--runs N]
#
# Writes the raw numbers to bench/results/exec-DATE.json. PYMRI_BIN: a pymri binary to time
# instead of building target/release/pymri; PYMRI_INTERPRETERS: the provisioning script's
# output, to skip running it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYMRI_INTERPRETERS:-}" ]; then
    PYMRI_INTERPRETERS=$(bash scripts/provision-interpreters.sh)
fi
export PYMRI_INTERPRETERS
pymri=${PYMRI_BIN:-}
if [ -z "$pymri" ]; then
    cargo build --release --quiet -p pymri
    pymri="$PWD/target/release/pymri"
fi
mkdir -p bench/results
# The machine's python3 may be a version-manager shim; the harness only needs any Python 3.
harness=$(command -v python3.11 || command -v python3)
exec "$harness" bench/exec_bench.py --pymri "$pymri" \
    --json "bench/results/exec-$(date -u +%Y%m%dT%H%M%SZ).json" "$@"
