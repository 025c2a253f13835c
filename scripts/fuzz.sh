#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace for a bounded time (FUZZ_SECONDS each, 30 by
# default); a crash fails the run, printing the reproducer left under the target's artifacts/.
# Uses the machine's stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass its unstable flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for fuzz_dir in crates/*/fuzz; do
    crate_dir=$(dirname "$fuzz_dir")
    for target in $(cd "$crate_dir" && cargo fuzz list); do
        echo "fuzz: $crate_dir $target, ${seconds}s" >&2
        if ! (cd "$crate_dir" && cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048) >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            echo "fuzz: $crate_dir $target failed" >&2
            exit 1
        fi
        grep -E "^Done [0-9]+ runs" "$log" >&2 || true
    done
done
