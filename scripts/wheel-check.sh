#!/usr/bin/env bash
# Checks `pip install pymri` the way a user gets it: builds the wheel from pyproject.toml with
# maturin, installs it into a fresh virtualenv of the host's python3.11 without the package
# index, and uses that virtualenv's `pymri` to dump a live process and to run a program under
# the debugger (the agent comes inside the binary).
#
# The wheel is the one to publish: linked by zig against glibc 2.17's symbols, so that it is
# tagged manylinux2014 (manylinux_2_17) whatever this machine's glibc; auditwheel checks the
# tag. It is built into target/zig (kept between runs: later builds only redo what changed).
#
# maturin, auditwheel and zig (the ziglang package) come from the package index into a cached
# virtualenv:
#   PYMRI_WHEEL_VENV   default /var/cache/pymri/wheel-venv
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PY=/usr/bin/python3.11
VENV=${PYMRI_WHEEL_VENV:-/var/cache/pymri/wheel-venv}
die() { echo "error: wheel-check: $*" >&2; exit 1; }
say() { echo "wheel-check: $*" >&2; }

[[ -x $BASE_PY ]] || die "$BASE_PY is missing (apt-get install python3.11 python3.11-venv)"
tools_ok() {
    [[ -x $VENV/bin/maturin && -x $VENV/bin/auditwheel ]] && "$VENV/bin/python" -m ziglang version >/dev/null 2>&1
}
if ! tools_ok; then
    say "creating $VENV with maturin, auditwheel and ziglang"
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV" || die "cannot create a virtualenv with $BASE_PY"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check maturin auditwheel ziglang \
        || die "maturin, auditwheel or ziglang did not install into $VENV"
fi
tools_ok || die "maturin, auditwheel or ziglang is missing from $VENV"

work=$(mktemp -d)
pid=
# The target ends by SIGTERM, so `wait` returns 143: that must not become the script's status.
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say "building the manylinux2014 wheel (release, linked by zig; the first build takes minutes)"
PATH=$VENV/bin:$PATH "$VENV/bin/maturin" build --release --locked --zig --compatibility manylinux2014 \
    --target-dir target/zig --out "$work/wheels" --interpreter "$BASE_PY" \
    || die "maturin build failed"
wheels=("$work"/wheels/pymri-*.whl)
((${#wheels[@]} == 1)) && [[ -f ${wheels[0]} ]] || die "expected one wheel, found: ${wheels[*]}"
wheel=${wheels[0]}
say "built $(basename "$wheel")"
"$VENV/bin/auditwheel" show "$wheel" >"$work/audit" 2>&1 || { cat "$work/audit" >&2; die "auditwheel cannot read $(basename "$wheel")"; }
cat "$work/audit" >&2
tr -s ' \n' ' ' <"$work/audit" | grep -q 'consistent with the following platform tag: "manylinux_2_17_x86_64"' \
    || die "the wheel is not manylinux_2_17 (manylinux2014) compatible"

"$BASE_PY" -m venv "$work/venv" || die "cannot create a virtualenv with $BASE_PY"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel" \
    || die "the wheel does not install"
pymri=$work/venv/bin/pymri
[[ -x $pymri ]] || die "the wheel installed no $pymri"
version=$("$pymri" --version) || die "$pymri --version failed"
[[ $version == "pymri $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" ]] \
    || die "unexpected version: $version"

# A live target whose stack holds a function only this check names.
mkfifo "$work/ready"
cat >"$work/target.py" <<'PY'
import time

def wheel_check_spin():
    print("ready", flush=True)
    while True:
        time.sleep(0.05)

wheel_check_spin()
PY
"$BASE_PY" "$work/target.py" >"$work/ready" &
pid=$!
read -r _ready <"$work/ready"
"$pymri" dump "$pid" >"$work/dump" || die "the venv's pymri could not dump $pid"
grep -q 'wheel_check_spin (' "$work/dump" || { cat "$work/dump" >&2; die "the dump lacks wheel_check_spin"; }

# `pymri run` injects the agent the binary carries: the program runs to its end under it.
cat >"$work/prog.py" <<'PY'
import sys
print("prog ran under", type(sys.gettrace()).__name__)
sys.exit(3)
PY
status=0
"$pymri" run --python "$BASE_PY" -c continue -c quit "$work/prog.py" >"$work/run" 2>&1 </dev/null || status=$?
grep -q 'prog ran under' "$work/run" || { cat "$work/run" >&2; die "pymri run did not run the program"; }
((status == 3)) || { cat "$work/run" >&2; die "pymri run exited $status, not the program's 3"; }
say "the wheel installs into a fresh virtualenv; its pymri dumps a live process and runs a program"
