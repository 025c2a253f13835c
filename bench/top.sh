#!/usr/bin/env bash
# What watching costs: the CPU time `pymri top` spends per second of watching, beside
# `pymri record` (the same sampling loop, building a profile instead of tables) and
# `py-spy top --nonblocking`, at the same rates, on one 3.14 target, in the same run.
#
# Target: bench/workloads/deep_busy.py, 4 threads spinning in `leaf` about 35 frames deep.
# Each tool watches the target for --seconds of wall time at each rate (100 and 1000 Hz):
# pymri top with stdout not a terminal (a table a second to /dev/null), pymri record into
# collapsed stacks, py-spy top in a pseudo-terminal (`script`; it needs one), its CPU time read
# from /proc after the same time. Reported: CPU seconds (user + system) per second watched, and each tool
# against `pymri top` at the same rate; for pymri, the rate achieved too.
#
# Usage: bench/top.sh [--seconds N]   (default 5)
#
# Environment (all optional):
#   PYMRI_BIN            pymri binary (default: build and use target/release/pymri)
#   PYMRI_ROOTS          interpreter roots cache, holding interpreters.env
#                        (default /var/cache/pymri/roots; provisioned if missing)
#   PYMRI_RECORD_VENV    virtualenv holding py-spy (default /var/cache/pymri/record-venv)
#
# Exit status: 0 when every tool ran, 1 when one failed, 2 on a usage error. Figures, not a
# test: nothing here fails because pymri costs more.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH=5
while (($#)); do
    case $1 in
        --seconds) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; SECONDS_EACH=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && ((SECONDS_EACH >= 1 && SECONDS_EACH <= 600)) \
    || { echo "bench: --seconds must be a whole number from 1 to 600" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root (targets run under chroot; the tools need ptrace rights)"
command -v script >/dev/null || die "no 'script' (util-linux) to give py-spy top a terminal"

VENV=${PYMRI_RECORD_VENV:-/var/cache/pymri/record-venv}

pymri_binary

load_interpreters
SPEC314=$(sed -n 's/^PYTHON314=//p' <<<"$INTERPRETERS" | head -n1)
[[ -n $SPEC314 ]] || die "no PYTHON314 among the interpreters"

if ! [[ -x $VENV/bin/py-spy ]]; then
    say "creating $VENV and installing py-spy"
    rm -rf -- "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check py-spy
    [[ -x $VENV/bin/py-spy ]] || die "py-spy did not install into $VENV"
fi

ROOT=${SPEC314%%:*}
EXE=${SPEC314#*:}
INSIDE=/tmp/pymri-top-bench-$$-$RANDOM
DIR=$ROOT$INSIDE
mkdir -p "$DIR"
CLEAN_DIRS+=("$DIR")
cp "$REPO/bench/workloads/deep_busy.py" "$DIR/"
mkfifo "$DIR/ready"
chroot "$ROOT" "$EXE" "$INSIDE/deep_busy.py" "$INSIDE/ready" >/dev/null 2>&1 &
TARGET=$!
PIDS+=("$TARGET")
read -r -t 30 line <"$DIR/ready" || die "the target did not become ready"
[[ $line == ready ]] || die "the target said '$line'"

# Runs a command with stdout to OUT and stderr to ERR; prints its CPU seconds (user + system,
# its waited-for children included). `time` writes a line of its own first when the command's
# status is not 0: the figures are the last line.
cpu_of() {
    local out=$1 err=$2
    shift 2
    /usr/bin/time -f '%U %S' -o "$DIR/time" "$@" >"$out" 2>"$err" || return 1
    cpu_seconds
}
cpu_seconds() { tail -n1 "$DIR/time" | awk '{printf "%.3f", $1 + $2}'; }

# The achieved rate from pymri's summary line: "(97.7/s of 100 asked".
achieved() { sed -n 's/.*(\([0-9.]*\)\/s of [0-9]* asked.*/\1/p' "$1" | tail -n1; }

ROWS=()
for rate in 100 1000; do
    say "rate $rate: pymri top, pymri record, py-spy top --nonblocking ($SECONDS_EACH s each)"
    cpu=$(cpu_of /dev/null "$DIR/top.err" "$PYMRI" top "$TARGET" -r "$rate" -d "$SECONDS_EACH") \
        || die "pymri top failed: $(cat "$DIR/top.err")"
    ROWS+=("pymri top|$rate|$cpu|$(achieved "$DIR/top.err")")
    cpu=$(cpu_of /dev/null "$DIR/record.err" "$PYMRI" record "$TARGET" -r "$rate" -d "$SECONDS_EACH" \
        -f collapsed -o "$DIR/record.txt") || die "pymri record failed: $(cat "$DIR/record.err")"
    ROWS+=("pymri record|$rate|$cpu|$(achieved "$DIR/record.err")")
    # py-spy top runs until stopped, in a terminal `script` gives it: its own CPU time is read
    # from /proc after the same wall time (what `script` does to it at the end is not waited
    # for by anything `time` could see).
    script -qfec "$VENV/bin/py-spy top --nonblocking -r $rate -p $TARGET" /dev/null \
        >/dev/null 2>"$DIR/pyspy.err" </dev/null &
    SCRIPT=$!
    PIDS+=("$SCRIPT")
    PYSPY=
    for _ in $(seq 100); do
        PYSPY=$(pgrep -P "$SCRIPT" -f 'py-spy top' || true)
        [[ -n $PYSPY ]] && break
        sleep 0.05
    done
    [[ -n $PYSPY ]] || die "py-spy top did not start: $(cat "$DIR/pyspy.err")"
    started=$(date +%s.%N)
    sleep "$SECONDS_EACH"
    ticks=$(awk '{print $14 + $15}' "/proc/$PYSPY/stat") || die "py-spy top ended early: $(cat "$DIR/pyspy.err")"
    watched=$(bc -l <<<"$(date +%s.%N) - $started")
    # `script` outlives its py-spy (it waits on the terminal): both are ended here.
    kill -INT "$PYSPY" 2>/dev/null || true
    kill -KILL "$SCRIPT" 2>/dev/null || true
    wait "$SCRIPT" 2>/dev/null || true
    # Seconds of CPU over the seconds it watched, scaled to SECONDS_EACH like the others.
    cpu=$(bc -l <<<"$ticks / $(getconf CLK_TCK) * $SECONDS_EACH / $watched")
    ROWS+=("py-spy top --nonblocking|$rate|$(printf '%.3f' "$cpu")|-")
done

printf '\n%-28s %6s %18s %12s %10s\n' "tool" "rate" "CPU s / s watched" "achieved/s" "vs top"
declare -A BASE
for r in "${ROWS[@]}"; do
    IFS='|' read -r tool rate cpu got <<<"$r"
    per=$(bc -l <<<"$cpu / $SECONDS_EACH")
    [[ $tool == "pymri top" ]] && BASE[$rate]=$per
    printf '%-28s %6s %18.3f %12s %9.2fx\n' "$tool" "$rate" "$per" "$got" "$(bc -l <<<"$per / ${BASE[$rate]}")"
done
