#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing (Debian packages,
# cargo-nextest), builds or reuses the CPython interpreter roots, then runs every test.
# Run as root. Set PYMRI_ROOTS to keep the interpreter roots elsewhere than /var/cache/pymri.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "test: installing ${missing[*]}" >&2
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed; pymri needs a Rust toolchain (rustup) to build" >&2
    exit 1
fi
apt_install debootstrap gdb python3.11 python3.11-venv python3-pip util-linux
# `dump --native` is checked against a thread another tracer (strace) holds.
apt_install strace
# `pymri completions` scripts are loaded by the real shells, `pymri man` pages typeset by groff.
apt_install bash zsh fish groff
# The DAP tests drive `pymri dap` with Microsoft's Node.js DAP client (editors/tests, installed
# from npm by the tests themselves).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
# The browser tests of `pymri web` and of `pymri record`'s speedscope files drive Debian's
# Chromium with playwright-core, installed by the tests themselves with the machine's Node.js
# and npm.
apt_install chromium
# `pymri record -f pprof`'s files are read by `go tool pprof` in the tests.
apt_install golang-go
# numpy arrays in `dump --locals` are checked against Debian's numpy for the host's 3.11.
apt_install python3-numpy
for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed; the browser tests of pymri web need Node.js 20+ and npm" >&2
        exit 1
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
fi

# The kernel-core test needs crashes to leave plain core files; a machine that pipes cores to a
# handler (systemd-coredump, apport) is switched to plain files for the run.
if [[ $(cat /proc/sys/kernel/core_pattern) == \|* ]]; then
    echo "test: kernel.core_pattern pipes cores to a handler; writing plain 'core' files instead" >&2
    echo core >/proc/sys/kernel/core_pattern
fi

# Each phase's wall time goes to stderr, and a table of them at the end: docs/testing.md says
# where the suite's time goes, from these lines.
phases=()
phase() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    phases+=("$(printf '%-12s %4ds' "$name" $((SECONDS - start)))")
    echo "test: $name took $((SECONDS - start))s" >&2
}
trap 'printf "test: %s\n" "${phases[@]}" >&2' EXIT

provision() { PYMRI_INTERPRETERS=$(bash scripts/provision-interpreters.sh); }
# The interpreters every test run needs; the tests fail if any is missing.
phase provision provision
export PYMRI_INTERPRETERS

phase fmt cargo fmt --all --check
phase clippy cargo clippy --workspace --all-targets --locked -- -D warnings
phase build cargo build --workspace --locked
phase nextest cargo nextest run --workspace --locked --no-fail-fast "$@"
# The in-target agent's own suite, on every interpreter.
phase agent bash python/tests/run_all.sh
# The agent as a pip-installed library.
phase pip-check bash scripts/pip-check.sh
# `pymri` as a manylinux2014 wheel installed into a fresh virtualenv (a release build of its
# own, in target/zig), and scripts/demo.sh (the release build in target/release).
phase wheel-check bash scripts/wheel-check.sh
phase demo-check bash scripts/demo-check.sh
# Every parser of untrusted bytes, fuzzed for a bounded time.
phase fuzz bash scripts/fuzz.sh
