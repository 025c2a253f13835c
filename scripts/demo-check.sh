#!/usr/bin/env bash
# Checks that scripts/demo.sh says what it is doing before and while it builds (a first build
# takes minutes), shows cargo's own progress, and ends with the dump of the example's threads.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "demo-check: $*" >&2; sed 's/^/  stderr: /' "$work/err" >&2; exit 1; }
timeout 3600 bash scripts/demo.sh >"$work/out" 2>"$work/err" || fail "scripts/demo.sh failed ($?)"
head -n1 "$work/err" | grep -q '^demo: building pymri (release; ' || fail "the first line does not say it is building"
grep -q '^ *Finished `release` profile' "$work/err" || fail "cargo's progress is not shown"
grep -q '^demo: starting examples/threads.py with ' "$work/err" || fail "the example's start is not announced"
for thread in worker-0 worker-1 worker-2 cruncher; do
    grep -q "$thread" "$work/out" || fail "the dump has no thread $thread"
done
grep -q 'crunch (' "$work/out" || fail "the dump has no frame of crunch()"
echo "demo-check: scripts/demo.sh announces its build, shows cargo's progress and dumps the example" >&2
