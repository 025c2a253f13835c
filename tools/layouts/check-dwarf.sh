#!/usr/bin/env bash
# Cross-checks the generated 3.9 and 3.11 tables (crates/pymri-layouts/src/tables.rs) against
# the DWARF debug information of Debian's interpreters: every offset or size in the table is
# printed next to the same expression evaluated by gdb on the release build, and on the debug
# build (python3.Nd) as well. Exits non-zero when a table value differs from the release build's
# DWARF. A debug build that differs is reported as a note (pymri reads release builds first).
#
# Facts that DWARF cannot state are checked otherwise or listed as such: the managed-dict
# offsets of 3.11 come from inline helpers, so a release and a debug 3.11 are asked directly
# (ctypes reads the words before an instance); the variant kinds (instruction units, line table
# format) are version knowledge and are only printed.
#
# Needs: gdb; the bullseye root from scripts/provision-interpreters.sh (python3.9 and
# python3.9-dbg); Debian's python3.11 and python3.11-dbg on the host (installed when missing);
# rustc. Environment: PYMRI_ROOTS (default /var/cache/pymri/roots).
# The exprs_* functions are called by a computed name.
# shellcheck disable=SC2317
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

die() {
    echo "check-dwarf: $*" >&2
    exit 2
}

command -v gdb >/dev/null || die "gdb not found (apt-get install gdb)"
command -v rustc >/dev/null || die "rustc not found"

root=$(ls -dt "$ROOTS"/bullseye-*/.complete 2>/dev/null | head -n1 || true)
root=${root%/.complete}
[[ -n "$root" && -x "$root/usr/bin/python3.9" ]] \
    || die "no bullseye root with python3.9 under $ROOTS: run scripts/provision-interpreters.sh"
[[ -d "$root/usr/lib/debug/.build-id" ]] || die "$root lacks python3.9-dbg"
if [[ ! -x /usr/bin/python3.11d ]] || ! dpkg-query -W python3.11-dbg >/dev/null 2>&1; then
    echo "check-dwarf: installing python3.11-dbg on the host" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -q -y python3.11-dbg >/dev/null
fi

# 1. The tables as the crate has them: compile the crate and a small dumper with rustc.
rustc --edition 2021 --crate-type rlib --crate-name pymri_layouts -o "$WORK/libpymri_layouts.rlib" \
    "$REPO/crates/pymri-layouts/src/lib.rs"
cat >"$WORK/dump.rs" <<'EOF'
use pymri_layouts::*;

fn main() {
    let version = std::env::args().nth(1).expect("version");
    let l = match version.as_str() {
        "3.9" => v3_9(),
        "3.10" => v3_10(),
        "3.11" => v3_11(),
        "3.12" => v3_12(),
        _ => panic!("no table for {version}"),
    };
    let mut out = Vec::<(String, String)>::new();
    let mut p = |k: &str, v: String| out.push((k.to_string(), v));
    p("runtime.interpreters_head", l.runtime.interpreters_head.to_string());
    for gil in [&l.runtime.gil, &l.interpreter.gil].into_iter().flatten() {
        match gil.access {
            GilAccess::Embedded(o) => p("runtime.gil_embedded", o.to_string()),
            GilAccess::Pointer(o) => p("interpreter.gil_pointer", o.to_string()),
        }
        p("gil.locked", gil.locked.to_string());
        p("gil.last_holder", gil.last_holder.to_string());
    }
    p("interpreter.next", l.interpreter.next.to_string());
    p("interpreter.threads_head", l.interpreter.threads_head.to_string());
    p("interpreter.modules", l.interpreter.modules.to_string());
    p("thread.next", l.thread.next.to_string());
    p("thread.interp", l.thread.interp.to_string());
    match l.thread.current_frame {
        FrameRef::Direct(o) => p("thread.frame", o.to_string()),
        FrameRef::ViaCFrame { cframe, current_frame } => {
            p("thread.cframe", cframe.to_string());
            p("cframe.current_frame", current_frame.to_string());
        }
    }
    p("thread.thread_id", l.thread.thread_id.to_string());
    if let Some(o) = l.thread.exc_info {
        p("thread.exc_info", o.to_string());
    }
    if let Some(o) = l.thread.native_thread_id {
        p("thread.native_thread_id", o.to_string());
    }
    p("frame.previous", l.frame.previous.to_string());
    p("frame.code", l.frame.code.to_string());
    p("frame.code_is_tagged", l.frame.code_is_tagged.to_string());
    match l.frame.instruction {
        InstructionRef::LastiBytes(o) => p("frame.lasti_bytes", o.to_string()),
        InstructionRef::LastiUnits(o) => p("frame.lasti_units", o.to_string()),
        InstructionRef::Pointer(o) => p("frame.prev_instr", o.to_string()),
    }
    p("frame.localsplus", l.frame.localsplus.to_string());
    if let Some((o, v)) = l.frame.owner {
        p("frame.owner", o.to_string());
        p("frame.owned_by_cstack", v.to_string());
    }
    p("code.filename", l.code.filename.to_string());
    p("code.name", l.code.name.to_string());
    if let Some(o) = l.code.qualname {
        p("code.qualname", o.to_string());
    }
    p("code.firstlineno", l.code.firstlineno.to_string());
    p("code.linetable", l.code.linetable.to_string());
    p("code.linetable_format", format!("{:?}", l.code.linetable_format));
    p("code.argcount", l.code.argcount.to_string());
    if let Some(o) = l.code.kwonlyargcount {
        p("code.kwonlyargcount", o.to_string());
    }
    if let Some(o) = l.code.flags {
        p("code.flags", o.to_string());
    }
    match l.code.names {
        LocalNames::Split { varnames, cellvars, freevars } => {
            p("code.varnames", varnames.to_string());
            p("code.cellvars", cellvars.to_string());
            p("code.freevars", freevars.to_string());
        }
        LocalNames::Combined { names, kinds } => {
            p("code.localsplusnames", names.to_string());
            p("code.localspluskinds", kinds.to_string());
        }
    }
    if let Some(o) = l.code.code_adaptive {
        p("code.code_adaptive", o.to_string());
    }
    p("object.ob_type", l.object.ob_type.to_string());
    p("object.tp_name", l.object.tp_name.to_string());
    p("object.tp_basicsize", l.object.tp_basicsize.to_string());
    p("object.tp_flags", l.object.tp_flags.to_string());
    p("object.tp_dictoffset", l.object.tp_dictoffset.to_string());
    p("object.ht_cached_keys", l.object.ht_cached_keys.to_string());
    p("unicode.length", l.unicode.length.to_string());
    p("unicode.state", l.unicode.state.to_string());
    p("unicode.ascii_data", l.unicode.ascii_data.to_string());
    p("unicode.compact_data", l.unicode.compact_data.to_string());
    p("long.format", format!("{:?}", l.long.format));
    p("long.size", l.long.size.to_string());
    p("long.digits", l.long.digits.to_string());
    p("bytes.size", l.bytes.size.to_string());
    p("bytes.data", l.bytes.data.to_string());
    p("float.value", l.float.value.to_string());
    p("tuple.size", l.tuple.size.to_string());
    p("tuple.items", l.tuple.items.to_string());
    p("list.size", l.list.size.to_string());
    p("list.items", l.list.items.to_string());
    p("set.used", l.set.used.to_string());
    p("set.mask", l.set.mask.to_string());
    p("set.table", l.set.table.to_string());
    p("dict.used", l.dict.used.to_string());
    p("dict.keys", l.dict.keys.to_string());
    p("dict.values", l.dict.values.to_string());
    p("dict.values_array", l.dict.values_array.to_string());
    match l.dict.keys_format {
        DictKeysFormat::Sized { size, nentries, indices } => {
            p("dictkeys.size", size.to_string());
            p("dictkeys.nentries", nentries.to_string());
            p("dictkeys.indices", indices.to_string());
        }
        DictKeysFormat::Log2 { log2_size, log2_index_bytes, kind, nentries, indices } => {
            p("dictkeys.log2_size", log2_size.to_string());
            p("dictkeys.log2_index_bytes", log2_index_bytes.to_string());
            p("dictkeys.kind", kind.to_string());
            p("dictkeys.nentries", nentries.to_string());
            p("dictkeys.indices", indices.to_string());
        }
    }
    match l.managed_dict {
        ManagedDict::None => p("managed_dict", "None".into()),
        ManagedDict::PreHeader { dict, values } => {
            p("managed_dict.dict", dict.to_string());
            p("managed_dict.values", values.to_string());
        }
        ManagedDict::Tagged { dict_or_values } => {
            p("managed_dict.dict_or_values", dict_or_values.to_string())
        }
        ManagedDict::Inline { dict, valid } => {
            p("managed_dict.dict", dict.to_string());
            p("managed_dict.valid", valid.to_string());
        }
    }
    let text: String = out.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()).unwrap();
}
EOF
rustc --edition 2021 -o "$WORK/dump" --extern pymri_layouts="$WORK/libpymri_layouts.rlib" \
    "$WORK/dump.rs"

# 2. The same facts as C expressions that gdb evaluates against the DWARF of a binary.
off() { echo "(long)&((${1} *)0)->${2}"; }
common_exprs() {
    cat <<EOF
runtime.interpreters_head|$(off _PyRuntimeState interpreters.head)
runtime.gil_embedded|$(off _PyRuntimeState ceval.gil)
gil.locked|$(off 'struct _gil_runtime_state' locked)
gil.last_holder|$(off 'struct _gil_runtime_state' last_holder)
interpreter.next|$(off PyInterpreterState next)
interpreter.modules|$(off PyInterpreterState modules)
thread.next|$(off PyThreadState next)
thread.interp|$(off PyThreadState interp)
thread.thread_id|$(off PyThreadState thread_id)
thread.exc_info|$(off PyThreadState exc_info)
code.filename|$(off PyCodeObject co_filename)
code.name|$(off PyCodeObject co_name)
code.firstlineno|$(off PyCodeObject co_firstlineno)
code.argcount|$(off PyCodeObject co_argcount)
code.kwonlyargcount|$(off PyCodeObject co_kwonlyargcount)
code.flags|$(off PyCodeObject co_flags)
object.ob_type|$(off PyObject ob_type)
object.tp_name|$(off PyTypeObject tp_name)
object.tp_basicsize|$(off PyTypeObject tp_basicsize)
object.tp_flags|$(off PyTypeObject tp_flags)
object.tp_dictoffset|$(off PyTypeObject tp_dictoffset)
object.ht_cached_keys|$(off PyHeapTypeObject ht_cached_keys)
unicode.length|$(off PyASCIIObject length)
unicode.state|$(off PyASCIIObject state)
unicode.ascii_data|(long)sizeof(PyASCIIObject)
unicode.compact_data|(long)sizeof(PyCompactUnicodeObject)
long.size|$(off PyLongObject ob_base.ob_size)
long.digits|$(off PyLongObject ob_digit)
bytes.size|$(off PyBytesObject ob_base.ob_size)
bytes.data|$(off PyBytesObject ob_sval)
float.value|$(off PyFloatObject ob_fval)
tuple.size|$(off PyTupleObject ob_base.ob_size)
tuple.items|$(off PyTupleObject ob_item)
list.size|$(off PyListObject ob_base.ob_size)
list.items|$(off PyListObject ob_item)
set.used|$(off PySetObject used)
set.mask|$(off PySetObject mask)
set.table|$(off PySetObject table)
dict.used|$(off PyDictObject ma_used)
dict.keys|$(off PyDictObject ma_keys)
dict.values|$(off PyDictObject ma_values)
dictkeys.nentries|$(off 'struct _dictkeysobject' dk_nentries)
dictkeys.indices|$(off 'struct _dictkeysobject' dk_indices)
EOF
}
exprs_3_9() {
    common_exprs
    cat <<EOF
interpreter.threads_head|$(off PyInterpreterState tstate_head)
thread.frame|$(off PyThreadState frame)
frame.previous|$(off PyFrameObject f_back)
frame.code|$(off PyFrameObject f_code)
frame.lasti_bytes|$(off PyFrameObject f_lasti)
frame.localsplus|$(off PyFrameObject f_localsplus)
code.linetable|$(off PyCodeObject co_lnotab)
code.varnames|$(off PyCodeObject co_varnames)
code.cellvars|$(off PyCodeObject co_cellvars)
code.freevars|$(off PyCodeObject co_freevars)
dictkeys.size|$(off 'struct _dictkeysobject' dk_size)
dict.values_array|(long)(sizeof(*((PyDictObject *)0)->ma_values) == sizeof(PyObject *) ? 0 : -1)
EOF
}
exprs_3_11() {
    common_exprs
    cat <<EOF
interpreter.threads_head|$(off PyInterpreterState threads.head)
thread.cframe|$(off PyThreadState cframe)
cframe.current_frame|$(off _PyCFrame current_frame)
thread.native_thread_id|$(off PyThreadState native_thread_id)
frame.previous|$(off _PyInterpreterFrame previous)
frame.code|$(off _PyInterpreterFrame f_code)
frame.prev_instr|$(off _PyInterpreterFrame prev_instr)
frame.localsplus|$(off _PyInterpreterFrame localsplus)
frame.owner|$(off _PyInterpreterFrame owner)
frame.owned_by_cstack|(long)FRAME_OWNED_BY_FRAME_OBJECT + 1
code.qualname|$(off PyCodeObject co_qualname)
code.linetable|$(off PyCodeObject co_linetable)
code.localsplusnames|$(off PyCodeObject co_localsplusnames)
code.localspluskinds|$(off PyCodeObject co_localspluskinds)
code.code_adaptive|$(off PyCodeObject co_code_adaptive)
dictkeys.log2_size|$(off 'struct _dictkeysobject' dk_log2_size)
dictkeys.log2_index_bytes|$(off 'struct _dictkeysobject' dk_log2_index_bytes)
dictkeys.kind|$(off 'struct _dictkeysobject' dk_kind)
dict.values_array|$(off 'struct _dictvalues' values)
EOF
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

# gdb_eval BINARY DEBUG_DIR EXPRS OUT
gdb_eval() {
    PYMRI_EXPRS=$3 PYMRI_OUT=$4 gdb -batch -nx -ex "set debug-file-directory $2" \
        -ex "file $1" -ex "source $WORK/eval.py" >"$WORK/gdb.log" 2>&1 \
        || { cat "$WORK/gdb.log" >&2; die "gdb failed on $1"; }
    grep -q '=' "$4" || { cat "$WORK/gdb.log" >&2; die "gdb evaluated nothing for $1"; }
}

# live_managed_dict PYTHON DICT VALUES ROOT: asks a running 3.11 where an instance's dict and
# values pointers are, by reading the words before it with ctypes.
live_managed_dict() {
    local python=$1 dict=$2 values=$3 run=()
    [[ -n "$4" ]] && run=(chroot "$4")
    "${run[@]}" "$python" - "$dict" "$values" <<'EOF'
import ctypes, sys
dict_off, values_off = int(sys.argv[1]), int(sys.argv[2])
class C:
    pass
o = C()
o.a = 1
word = lambda off: ctypes.c_void_p.from_address(id(o) + off).value or 0
before = (word(dict_off), word(values_off))
d = o.__dict__
after = (word(dict_off), word(values_off))
# Before __dict__ is asked for, the attributes sit in the values array and no dict exists;
# asking makes the dict, stores it at the dict slot and clears the values slot.
ok = before[0] == 0 and before[1] != 0 and after[0] == id(d) and after[1] == 0
print("ok" if ok else f"mismatch before={before} after={after}")
EOF
}

status=0
declare -A T R D

load_into() {
    local -n into=$1
    local key value
    while IFS='=' read -r key value; do
        # shellcheck disable=SC2034,SC2004 # `into` names an associative array
        [[ -n "$key" ]] && into[$key]=$value
    done <"$2"
}

check_version() {
    local v=$1 release=$2 debug=$3 debugdir=$4 chroot_root=$5 key t r d mark note
    "$WORK/dump" "$v" >"$WORK/table-$v.txt"
    "exprs_${v/./_}" >"$WORK/exprs-$v.txt"
    gdb_eval "$release" "$debugdir" "$WORK/exprs-$v.txt" "$WORK/release-$v.txt"
    gdb_eval "$debug" "$debugdir" "$WORK/exprs-$v.txt" "$WORK/debug-$v.txt"
    T=() R=() D=()
    load_into T "$WORK/table-$v.txt"
    load_into R "$WORK/release-$v.txt"
    load_into D "$WORK/debug-$v.txt"

    echo "== CPython $v: table vs DWARF of ${release#"$chroot_root"} and ${debug#"$chroot_root"}"
    printf '%-28s %8s %8s %8s  %s\n' field table release debug result
    while IFS='=' read -r key t; do
        r=${R[$key]-}
        d=${D[$key]-}
        if [[ -z "${R[$key]+set}" ]]; then
            case $key in
                managed_dict.*) note="not in DWARF (inline helper): checked live below" ;;
                *) note="not in DWARF (version knowledge)" ;;
            esac
            printf '%-28s %8s %8s %8s  %s\n' "$key" "$t" - - "$note"
            continue
        fi
        if [[ "$r" == "$t" ]]; then
            mark=ok
        else
            mark="MISMATCH"
            status=1
        fi
        if [[ "$d" != "$r" ]]; then
            mark="$mark; debug build differs"
        fi
        printf '%-28s %8s %8s %8s  %s\n' "$key" "$t" "$r" "$d" "$mark"
    done <"$WORK/table-$v.txt"
    for key in "${!R[@]}"; do
        if [[ -z "${T[$key]+set}" ]]; then
            echo "$key: checked in DWARF but absent from the table"
            status=1
        fi
    done
    if [[ -n "${T[managed_dict.dict]+set}" && -n "${T[managed_dict.values]+set}" ]]; then
        local exe result
        for exe in "$release" "$debug"; do
            result=$(live_managed_dict "${exe#"$chroot_root"}" "${T[managed_dict.dict]}" \
                "${T[managed_dict.values]}" "$chroot_root")
            echo "live managed dict (dict ${T[managed_dict.dict]}, values ${T[managed_dict.values]}) on ${exe#"$chroot_root"}: $result"
            [[ "$result" == ok ]] || status=1
        done
    fi
    echo
}

check_version 3.9 "$root/usr/bin/python3.9" "$root/usr/bin/python3.9d" "$root/usr/lib/debug" "$root"
check_version 3.11 /usr/bin/python3.11 /usr/bin/python3.11d /usr/lib/debug ""

if ((status == 0)); then
    echo "check-dwarf: every table value matches the release builds' DWARF"
else
    echo "check-dwarf: MISMATCH: see above" >&2
fi
exit "$status"
