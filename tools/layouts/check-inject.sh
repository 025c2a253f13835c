#!/usr/bin/env bash
# Cross-checks the pending-call tables (crates/pymri-layouts/src/inject.rs) against real
# interpreters, in two ways:
#  1. DWARF: for each interpreter it takes the st_size of `_PyRuntime` from .dynsym, asks the
#     crate for the table of that size (pending_calls_for), and prints every table value next to
#     the same expression evaluated by gdb on the interpreter's debug information.
#  2. Live: it starts the interpreter spinning in a Python loop, stops all its threads, queues
#     PyRun_SimpleString with nothing but process_vm_writev as pymri would (inject_live.py), and
#     checks that the main thread ran the string; once with one thread and once with a second
#     thread spinning. This covers what DWARF cannot: the value or bit stored in the eval
#     breaker, the entry flags, and the index algorithm.
# Exits non-zero when an interpreter has no table, a value differs, or an injection fails.
#
# Interpreters: Debian's python3.9 and python3.9d (bullseye root of
# scripts/provision-interpreters.sh), python3.11 and python3.11d on the host (installed when
# missing), python3.13 and python3.13d (sid root; python3.13-dbg installed when missing), and
# any listed in $PYMRI_INJECT_EXTRA_PYTHONS (space-separated executables with DWARF, e.g. the
# interpreters whose headers were given to generate_inject.sh).
#
# Needs: gdb, rustc, python3 on the host. Environment: PYMRI_ROOTS (default
# /var/cache/pymri/roots), PYMRI_INJECT_EXTRA_PYTHONS.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -q -y)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

die() {
    echo "check-inject: $*" >&2
    exit 2
}

command -v gdb >/dev/null || die "gdb not found (apt-get install gdb)"
command -v rustc >/dev/null || die "rustc not found"
command -v python3 >/dev/null || die "python3 not found"

suite_root() {
    local root
    root=$(ls -dt "$ROOTS"/"$1"-*/.complete 2>/dev/null | head -n1 || true)
    root=${root%/.complete}
    [[ -n "$root" && -d "$root/usr" ]] \
        || die "no $1 root under $ROOTS: run scripts/provision-interpreters.sh first"
    echo "$root"
}
bullseye=$(suite_root bullseye)
sid=$(suite_root sid)
[[ -x "$bullseye/usr/bin/python3.9d" ]] || die "$bullseye lacks python3.9-dbg"
if [[ ! -x /usr/bin/python3.11d ]] || ! dpkg-query -W python3.11-dbg >/dev/null 2>&1; then
    echo "check-inject: installing python3.11-dbg on the host" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" python3.11-dbg >/dev/null
fi
if [[ ! -x "$sid/usr/bin/python3.13d" ]]; then
    echo "check-inject: installing python3.13-dbg into $sid" >&2
    chroot "$sid" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install python3.13-dbg \
        >/dev/null || die "installing python3.13-dbg failed"
fi

# 1. The tables as the crate has them.
rustc --edition 2021 --crate-type rlib --crate-name pymri_layouts -o "$WORK/libpymri_layouts.rlib" \
    "$REPO/crates/pymri-layouts/src/lib.rs"
cat >"$WORK/dump.rs" <<'EOF'
use pymri_layouts::inject::*;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (minor, size, debug): (u8, u64, bool) = (a[1].parse().unwrap(), a[2].parse().unwrap(), a[3] == "1");
    let Some(t) = pending_calls_for(3, minor, size, debug) else { std::process::exit(3) };
    let q = &t.queue;
    let p = |k: &str, v: String| println!("{k}={v}");
    p("build", format!("{:?}", t.build));
    p("sources", t.sources.join("; "));
    p("runtime.size", t.runtime_size.to_string());
    p("runtime.symbol_size", t.runtime_size.to_string());
    p("interpreter.size", t.interpreter_size.to_string());
    p("thread.size", t.thread_size.to_string());
    p("runtime.main_thread", t.runtime.main_thread.to_string());
    p("runtime.interpreters_main", t.runtime.interpreters_main.to_string());
    p("runtime.finalizing", t.runtime.finalizing.to_string());
    if let Some(o) = t.runtime.main_tstate {
        p("runtime.main_tstate", o.to_string());
    }
    p("queue.owner", format!("{:?}", q.owner));
    p("queue.offset", q.offset.to_string());
    p("queue.size", q.size.to_string());
    match q.lock {
        QueueLock::ThreadLock(o) => {
            p("queue.lock_kind", "ThreadLock".into());
            p("queue.lock", o.to_string());
        }
        QueueLock::PyMutex(o) => {
            p("queue.lock_kind", "PyMutex".into());
            p("queue.lock", o.to_string());
        }
    }
    p("queue.first", q.first.to_string());
    match q.index {
        QueueIndex::FirstLast { last, calls_to_do } => {
            p("queue.index", "FirstLast".into());
            p("queue.last", last.to_string());
            p("queue.calls_to_do", calls_to_do.to_string());
        }
        QueueIndex::FirstNextCount { next, npending, max, maxloop, handling_thread } => {
            p("queue.index", "FirstNextCount".into());
            p("queue.next", next.to_string());
            p("queue.npending", npending.to_string());
            p("queue.max", max.to_string());
            p("queue.maxloop", maxloop.to_string());
            p("queue.handling_thread", handling_thread.to_string());
        }
    }
    p("queue.calls", q.calls.to_string());
    p("queue.calls_len", q.calls_len.to_string());
    p("queue.capacity", q.capacity.to_string());
    p("queue.entry_size", q.entry_size.to_string());
    p("queue.entry_func", q.entry_func.to_string());
    p("queue.entry_arg", q.entry_arg.to_string());
    if let Some(f) = q.entry_flags {
        p("queue.entry_flags", f.offset.to_string());
        p("queue.entry_flags_value", f.value.to_string());
    }
    match t.breaker {
        EvalBreaker::Interpreter { offset, value } => {
            p("breaker.kind", "Interpreter".into());
            p("breaker.offset", offset.to_string());
            p("breaker.width", "4".into());
            p("breaker.value", value.to_string());
        }
        EvalBreaker::Thread { offset, bit } => {
            p("breaker.kind", "Thread".into());
            p("breaker.offset", offset.to_string());
            p("breaker.width", "8".into());
            p("breaker.value", bit.to_string());
        }
    }
}
EOF
rustc --edition 2021 -L "$WORK" --extern pymri_layouts="$WORK/libpymri_layouts.rlib" -o "$WORK/dump" \
    "$WORK/dump.rs"

# gdb expressions for the same facts. Q is the queue type; OWNER the type holding the queue.
exprs() {
    local minor=$1 q='((struct _pending_calls *)0)' rt='((_PyRuntimeState *)0)'
    local it='((PyInterpreterState *)0)' ts='((PyThreadState *)0)'
    cat <<EOF
runtime.size|sizeof(_PyRuntimeState)
interpreter.size|sizeof(PyInterpreterState)
thread.size|sizeof(PyThreadState)
runtime.main_thread|(long)&$rt->main_thread
runtime.interpreters_main|(long)&$rt->interpreters.main
runtime.finalizing|(long)&$rt->_finalizing
queue.size|sizeof(struct _pending_calls)
queue.first|(long)&$q->first
queue.calls|(long)&$q->calls
queue.calls_len|sizeof($q->calls) / sizeof($q->calls[0])
queue.entry_size|sizeof($q->calls[0])
queue.entry_func|(long)&$q->calls[0].func - (long)&$q->calls[0]
queue.entry_arg|(long)&$q->calls[0].arg - (long)&$q->calls[0]
EOF
    if ((minor < 12)); then
        echo "queue.offset|(long)&$it->ceval.pending"
    else
        echo "queue.offset|(long)&$rt->ceval.pending_mainthread"
    fi
    if ((minor < 13)); then
        cat <<EOF
queue.lock|(long)&$q->lock
queue.last|(long)&$q->last
queue.calls_to_do|(long)&$q->calls_to_do
queue.capacity|sizeof($q->calls) / sizeof($q->calls[0]) - 1
breaker.offset|(long)&$it->ceval.eval_breaker
breaker.width|sizeof($it->ceval.eval_breaker)
EOF
    else
        cat <<EOF
runtime.main_tstate|(long)&$rt->main_tstate
queue.lock|(long)&$q->mutex
queue.next|(long)&$q->next
queue.npending|(long)&$q->npending
queue.max|(long)&$q->max
queue.maxloop|(long)&$q->maxloop
queue.handling_thread|(long)&$q->handling_thread
queue.capacity|_PyRuntime.ceval.pending_mainthread.max
queue.entry_flags|(long)&$q->calls[0].flags - (long)&$q->calls[0]
breaker.offset|(long)&$ts->eval_breaker
breaker.width|sizeof($ts->eval_breaker)
EOF
    fi
}

cat >"$WORK/eval.py" <<'EOF'
import os
import gdb

with open(os.environ["PYMRI_EXPRS"]) as src, open(os.environ["PYMRI_OUT"], "w") as out:
    for line in src:
        key, expr = line.rstrip("\n").split("|", 1)
        try:
            value = str(int(gdb.parse_and_eval(expr)))
        except gdb.error as err:
            value = "error: " + str(err).splitlines()[0]
        out.write(f"{key}={value}\n")
EOF

status=0
declare -A T D

load_into() {
    local -n into=$1
    local key value
    while IFS='=' read -r key value; do
        # shellcheck disable=SC2034,SC2004 # `into` names an associative array
        [[ -n "$key" ]] && into[$key]=$value
    done <"$2"
}

# check ROOT EXE MINOR DEBUG: ROOT is "" for the host.
check() {
    local root=$1 exe=$2 minor=$3 debug=$4 file size key t d mark name
    name="${exe}${root:+ (in ${root##*/})}"
    # The ELF file that defines _PyRuntime: the executable, or the libpython it loads.
    file=$(${root:+chroot "$root"} "$exe" -c '
import ctypes
class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
info = DlInfo()
ctypes.CDLL(None).dladdr(ctypes.pythonapi.PyRun_SimpleString, ctypes.byref(info))
print(info.fname.decode())
')
    # dladdr names the main program by argv[0]; resolve it in the target's file system.
    [[ $file == /* ]] || file=$exe
    file=$root$file
    size=$(readelf -W --dyn-syms "$file" | awk '$NF == "_PyRuntime" { print $3 }' | head -n1)
    [[ $size == 0x* ]] && size=$((size))
    echo "== $name: _PyRuntime in ${file#"$root"}, st_size $size"
    if ! "$WORK/dump" "$minor" "$size" "$debug" >"$WORK/table.txt"; then
        echo "MISMATCH: no 3.$minor $([[ $debug == 1 ]] && echo debug || echo release) table with runtime size $size"
        status=1
        echo
        return
    fi
    exprs "$minor" >"$WORK/exprs.txt"
    PYMRI_EXPRS=$WORK/exprs.txt PYMRI_OUT=$WORK/dwarf.txt gdb -batch -nx \
        -ex "set debug-file-directory $root/usr/lib/debug" -ex "file $file" \
        -ex "source $WORK/eval.py" >"$WORK/gdb.log" 2>&1 \
        || { cat "$WORK/gdb.log" >&2; die "gdb failed on $file"; }
    T=() D=()
    load_into T "$WORK/table.txt"
    load_into D "$WORK/dwarf.txt"
    D[runtime.symbol_size]=$size
    printf '%-26s %-12s %-12s %s\n' field table DWARF result
    while IFS='=' read -r key t; do
        case $key in
            build | sources)
                printf '%-26s %s\n' "$key" "$t"
                continue
                ;;
        esac
        if [[ -z "${D[$key]+set}" ]]; then
            printf '%-26s %-12s %-12s %s\n' "$key" "$t" - "not in DWARF: checked live below"
            continue
        fi
        d=${D[$key]}
        if [[ "$d" == "$t" ]]; then
            mark=ok
        elif [[ $key == interpreter.size || $key == thread.size ]]; then
            mark="differs: for reference only (the table keeps its first source's)"
        else
            mark=MISMATCH
            status=1
        fi
        printf '%-26s %-12s %-12s %s\n' "$key" "$t" "$d" "$mark"
    done <"$WORK/table.txt"
    for key in "${!D[@]}"; do
        [[ -n "${T[$key]+set}" ]] || { echo "MISMATCH: $key=${D[$key]} in DWARF, absent from the table"; status=1; }
    done
    local mode result rc flags
    for mode in one two; do
        flags=()
        [[ $mode == two ]] && flags=(--thread)
        for _ in 1 2 3; do
            rc=0
            result=$(python3 "$HERE/inject_live.py" "${flags[@]}" -- ${root:+chroot "$root"} "$exe" \
                <"$WORK/table.txt") || rc=$?
            ((rc == 2)) || break # 2: refused (lock held, queue full): try again
        done
        printf 'live injection (%s thread%s): %s\n' "$mode" "$([[ $mode == two ]] && echo s)" "$result"
        ((rc == 0)) || status=1
    done
    echo
}

check "$bullseye" /usr/bin/python3.9 9 0
check "$bullseye" /usr/bin/python3.9d 9 1
check "" /usr/bin/python3.11 11 0
check "" /usr/bin/python3.11d 11 1
check "$sid" /usr/bin/python3.13 13 0
check "$sid" /usr/bin/python3.13d 13 1
for exe in ${PYMRI_INJECT_EXTRA_PYTHONS:-}; do
    minor=$("$exe" -c 'import sys; print(sys.version_info[1])')
    debug=$("$exe" -c 'import sys; print(int(hasattr(sys, "gettotalrefcount")))')
    check "" "$exe" "$minor" "$debug"
done

if ((status == 0)); then
    echo "check-inject: every table value matches DWARF and every injection ran in the main thread"
else
    echo "check-inject: MISMATCH or failed injection: see above" >&2
fi
exit "$status"
