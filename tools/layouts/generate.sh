#!/usr/bin/env bash
# Regenerates crates/pymri-layouts/src/tables.rs: for each of CPython 3.9, 3.10, 3.11 and 3.12 it
# gathers that version's own headers, compiles probe.c against them with gcc, runs it, and turns
# its `name=value` lines into one `Layout` literal per version. A developer tool, not run in CI;
# safe to run again (it only rewrites tables.rs). See README.md beside this file.
#
# Where the headers come from (each overridable, see README.md):
#   3.9   Debian bullseye's python3.9-dev, installed on demand into the bullseye root that
#         scripts/provision-interpreters.sh builds under $PYMRI_ROOTS.
#   3.11  the host's Debian python3.11-dev, installed on demand.
#   3.10, 3.12  Include/ (and, before 3.11, Objects/dict-common.h) from a CPython git directory:
#         $PYMRI_CPYTHON_GIT (or $PYMRI_CPYTHON_GIT_3_10 / _3_12), at $PYMRI_CPYTHON_REV_3_10 /
#         _3_12, by default the newest final tag v3.10.N / v3.12.N found there. A source tree
#         carries no pyconfig.h; the x86_64 Linux one of the host's Debian 3.11 stands in
#         ($PYMRI_PYCONFIG), since only type sizes and feature macros matter to offsets.
#
# Environment: PYMRI_ROOTS (default /var/cache/pymri/roots), PYMRI_CPYTHON_GIT,
# PYMRI_CPYTHON_GIT_3_10, PYMRI_CPYTHON_GIT_3_12, PYMRI_CPYTHON_REV_3_10,
# PYMRI_CPYTHON_REV_3_12, PYMRI_PYCONFIG, PYMRI_TABLES_OUT (default: the crate's tables.rs),
# CC (default gcc).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}
OUT=${PYMRI_TABLES_OUT:-$REPO/crates/pymri-layouts/src/tables.rs}
CC=${CC:-gcc}
HOST_PYCONFIG=/usr/include/x86_64-linux-gnu/python3.11/pyconfig.h
PYCONFIG=${PYMRI_PYCONFIG:-$HOST_PYCONFIG}
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -q -y)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

die() {
    echo "generate: $*" >&2
    exit 1
}
log() { echo "generate: $*" >&2; }

command -v "$CC" >/dev/null || die "no C compiler ($CC); apt-get install gcc"
command -v rustfmt >/dev/null || die "rustfmt not found (rustup component add rustfmt)"

ensure_host_python311_dev() {
    if [[ ! -f /usr/include/python3.11/internal/pycore_frame.h || ! -f $HOST_PYCONFIG ]]; then
        log "installing python3.11-dev on the host"
        DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" python3.11-dev >/dev/null
    fi
}

# The newest provisioned bullseye root.
bullseye_root() {
    local root
    root=$(ls -dt "$ROOTS"/bullseye-*/.complete 2>/dev/null | head -n1 || true)
    root=${root%/.complete}
    [[ -n "$root" && -d "$root/usr" ]] \
        || die "no bullseye root under $ROOTS: run scripts/provision-interpreters.sh first"
    echo "$root"
}

# Copies a Debian include directory and puts the multiarch pyconfig.h in place of the wrapper.
stage_debian() {
    local dest=$1 incdir=$2 pyconfig=$3
    mkdir -p "$dest"
    cp -a "$incdir/." "$dest/"
    cp "$pyconfig" "$dest/pyconfig.h"
}

# Stages 3.9 from bullseye's python3.9-dev; prints the provenance line.
stage_3_9() {
    local dest=$1 root pkg
    root=$(bullseye_root)
    if [[ ! -f "$root/usr/include/python3.9/internal/pycore_runtime.h" ]]; then
        log "installing python3.9-dev into $root"
        if ! chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" \
            install python3.9-dev >"$WORK/apt.log" 2>&1; then
            chroot "$root" apt-get "${APT_OPTS[@]}" update >>"$WORK/apt.log" 2>&1 || true
            chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" \
                install python3.9-dev >>"$WORK/apt.log" 2>&1 \
                || { tail -n 20 "$WORK/apt.log" >&2; die "installing python3.9-dev failed"; }
        fi
    fi
    stage_debian "$dest" "$root/usr/include/python3.9" \
        "$root/usr/include/x86_64-linux-gnu/python3.9/pyconfig.h"
    # shellcheck disable=SC2016 # ${Version} is dpkg-query's format, not the shell's
    pkg=$(chroot "$root" dpkg-query -W -f '${Version}' python3.9-dev)
    echo "Debian bullseye python3.9-dev $pkg"
}

# Stages 3.11 from the host's python3.11-dev; prints the provenance line.
stage_3_11() {
    local dest=$1 pkg
    ensure_host_python311_dev
    stage_debian "$dest" /usr/include/python3.11 "$HOST_PYCONFIG"
    local codename
    pkg=$(dpkg-query -W -f '${Version}' python3.11-dev)
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    echo "Debian ${codename:+$codename }python3.11-dev $pkg"
}

# Stages 3.10 or 3.12 from a CPython git directory; prints the provenance line.
stage_git() {
    local minor=$1 dest=$2 var_git var_rev git rev tag commit tree
    var_git=PYMRI_CPYTHON_GIT_3_$minor
    var_rev=PYMRI_CPYTHON_REV_3_$minor
    git=${!var_git:-${PYMRI_CPYTHON_GIT:-}}
    [[ -n "$git" ]] || die "3.$minor: set PYMRI_CPYTHON_GIT to a CPython git directory (a clone's .git)"
    [[ -d "$git" ]] || die "3.$minor: $git is not a directory"
    rev=${!var_rev:-}
    if [[ -z "$rev" ]]; then
        rev=$(git --git-dir="$git" tag -l "v3.$minor.*" | grep -E "^v3\.$minor\.[0-9]+$" \
            | sort -V | tail -n1 || true)
        [[ -n "$rev" ]] || die "3.$minor: no v3.$minor.N tag in $git; set $var_rev to a commit"
    fi
    commit=$(git --git-dir="$git" rev-parse --verify "$rev^{commit}") \
        || die "3.$minor: $rev is not a commit in $git"
    tree=$(git --git-dir="$git" rev-parse "$commit:Include")
    tag=$(git --git-dir="$git" describe --tags --exact-match "$commit" 2>/dev/null || true)
    mkdir -p "$dest" "$WORK/src-3.$minor"
    git --git-dir="$git" archive "$commit" Include | tar -x -C "$WORK/src-3.$minor"
    cp -a "$WORK/src-3.$minor/Include/." "$dest/"
    if ((minor < 11)); then
        git --git-dir="$git" show "$commit:Objects/dict-common.h" >"$dest/dict-common.h"
    fi
    [[ -f "$PYCONFIG" ]] || { ensure_host_python311_dev; }
    cp "$PYCONFIG" "$dest/pyconfig.h"
    local version
    version=$(sed -n 's/^#define PY_VERSION[[:space:]]*"\(.*\)".*/\1/p' "$dest/patchlevel.h")
    # A summary, then after '|' the details that identify the tree exactly (the tree hash is the
    # same in every clone: compare with `git rev-parse v3.N.M:Include`).
    if [[ -n "$tag" ]]; then
        echo "CPython $version headers, tag $tag|commit $commit|Include/ tree $tree"
    else
        echo "CPython $version headers|Include/ tree $tree"
    fi
}

# Compiles and runs the probe against one staged include directory.
probe() {
    local inc=$1 out=$2 flags=()
    [[ -f "$inc/dict-common.h" ]] && flags+=(-DPYMRI_DICT_COMMON=1)
    "$CC" -std=gnu11 -O0 -w "${flags[@]}" -I"$inc" -o "$inc.probe" "$HERE/probe.c" \
        || die "probe.c does not compile against $inc"
    "$inc.probe" >"$out" || die "probe failed for $inc"
}

declare -A F

load() {
    F=()
    local key value
    while IFS='=' read -r key value; do
        [[ -n "$key" ]] && F[$key]=$value
    done <"$1"
}

# Runs inside command substitutions, where `die` would only end a subshell: a missing fact is
# recorded in a marker file that the main shell checks after emitting.
get() {
    if [[ -z "${F[$1]+set}" ]]; then
        echo "generate: probe output lacks $1 (version ${F[version.string]:-?})" >&2
        touch "$WORK/missing"
        return 1
    fi
    echo "${F[$1]}"
}

has() { [[ -n "${F[$1]+set}" ]]; }

# Writes one `pub fn v3_N() -> Layout` from the loaded probe output.
emit() {
    local source=$1 minor gil_rt gil_interp frame_ref native owner instruction qualname
    local names code_adaptive long_format keys managed
    minor=$(get version.minor)
    [[ $(get version.major) == 3 ]] || die "unexpected major version"

    if has runtime.gil_embedded; then
        gil_rt="Some(GilLayout { access: GilAccess::Embedded($(get runtime.gil_embedded)), locked: $(get gil.locked), last_holder: $(get gil.last_holder) })"
        gil_interp=None
    else
        gil_rt=None
        gil_interp="Some(GilLayout { access: GilAccess::Pointer($(get interpreter.gil_pointer)), locked: $(get gil.locked), last_holder: $(get gil.last_holder) })"
    fi

    if has thread.frame; then
        frame_ref="FrameRef::Direct($(get thread.frame))"
    else
        frame_ref="FrameRef::ViaCFrame { cframe: $(get thread.cframe), current_frame: $(get cframe.current_frame) }"
    fi
    native=None
    has thread.native_thread_id && native="Some($(get thread.native_thread_id))"

    if has frame.lasti_bytes; then
        instruction="InstructionRef::LastiBytes($(get frame.lasti_bytes))"
    elif has frame.lasti_units; then
        instruction="InstructionRef::LastiUnits($(get frame.lasti_units))"
    else
        instruction="InstructionRef::Pointer($(get frame.prev_instr))"
    fi
    owner=None
    has frame.owner && owner="Some(($(get frame.owner), $(get frame.owned_by_cstack)))"

    qualname=None
    has code.qualname && qualname="Some($(get code.qualname))"
    if has code.varnames; then
        names="LocalNames::Split { varnames: $(get code.varnames), cellvars: $(get code.cellvars), freevars: $(get code.freevars) }"
    else
        names="LocalNames::Combined { names: $(get code.localsplusnames), kinds: $(get code.localspluskinds) }"
    fi
    code_adaptive=None
    has code.code_adaptive && code_adaptive="Some($(get code.code_adaptive))"

    long_format=$(get long.format)
    case $(get dictkeys.format) in
        Sized) keys="DictKeysFormat::Sized { size: $(get dictkeys.size), nentries: $(get dictkeys.nentries), indices: $(get dictkeys.indices) }" ;;
        Log2) keys="DictKeysFormat::Log2 { log2_size: $(get dictkeys.log2_size), log2_index_bytes: $(get dictkeys.log2_index_bytes), kind: $(get dictkeys.kind), nentries: $(get dictkeys.nentries), indices: $(get dictkeys.indices) }" ;;
        *) die "unknown dict keys format $(get dictkeys.format)" ;;
    esac
    case $(get managed_dict) in
        None) managed="ManagedDict::None" ;;
        PreHeader) managed="ManagedDict::PreHeader { dict: $(get managed_dict.dict), values: $(get managed_dict.values) }" ;;
        Tagged) managed="ManagedDict::Tagged { dict_or_values: $(get managed_dict.dict_or_values) }" ;;
        *) die "unknown managed dict kind $(get managed_dict)" ;;
    esac

    cat <<EOF

/// CPython 3.$minor, from ${source}.
pub fn v3_$minor() -> Layout {
    Layout {
        version: (3, $minor),
        runtime: RuntimeLayout { interpreters_head: $(get runtime.interpreters_head), gil: $gil_rt },
        interpreter: InterpreterLayout {
            next: $(get interpreter.next),
            threads_head: $(get interpreter.threads_head),
            modules: $(get interpreter.modules),
            gil: $gil_interp,
        },
        thread: ThreadLayout {
            next: $(get thread.next),
            interp: $(get thread.interp),
            current_frame: $frame_ref,
            thread_id: $(get thread.thread_id),
            native_thread_id: $native,
            exc_info: Some($(get thread.exc_info)),
        },
        frame: FrameLayout {
            previous: $(get frame.previous),
            code: $(get frame.code),
            code_is_tagged: false,
            instruction: $instruction,
            localsplus: $(get frame.localsplus),
            owner: $owner,
        },
        code: CodeLayout {
            filename: $(get code.filename),
            name: $(get code.name),
            qualname: $qualname,
            firstlineno: $(get code.firstlineno),
            linetable: $(get code.linetable),
            linetable_format: LineTableFormat::$(get code.linetable_format),
            argcount: $(get code.argcount),
            kwonlyargcount: Some($(get code.kwonlyargcount)),
            flags: Some($(get code.flags)),
            names: $names,
            code_adaptive: $code_adaptive,
        },
        object: ObjectLayout {
            ob_type: $(get object.ob_type),
            tp_name: $(get object.tp_name),
            tp_basicsize: $(get object.tp_basicsize),
            tp_flags: $(get object.tp_flags),
            tp_dictoffset: $(get object.tp_dictoffset),
            ht_cached_keys: $(get object.ht_cached_keys),
        },
        unicode: UnicodeLayout {
            length: $(get unicode.length),
            state: $(get unicode.state),
            ascii_data: $(get unicode.ascii_data),
            compact_data: $(get unicode.compact_data),
        },
        long: LongLayout { format: LongFormat::$long_format, size: $(get long.size), digits: $(get long.digits) },
        bytes: BytesLayout { size: $(get bytes.size), data: $(get bytes.data) },
        float: FloatLayout { value: $(get float.value) },
        tuple: SequenceLayout { size: $(get tuple.size), items: $(get tuple.items) },
        list: SequenceLayout { size: $(get list.size), items: $(get list.items) },
        set: SetLayout { used: $(get set.used), mask: $(get set.mask), table: $(get set.table) },
        dict: DictLayout {
            used: $(get dict.used),
            keys: $(get dict.keys),
            values: $(get dict.values),
            keys_format: $keys,
            values_array: $(get dict.values_array),
        },
        managed_dict: $managed,
    }
}
EOF
}

declare -A SOURCE
for v in 3.9 3.10 3.11 3.12; do
    log "staging $v headers"
    inc=$WORK/inc-$v
    case $v in
        3.9) SOURCE[$v]=$(stage_3_9 "$inc") ;;
        3.10) SOURCE[$v]=$(stage_git 10 "$inc") ;;
        3.11) SOURCE[$v]=$(stage_3_11 "$inc") ;;
        3.12) SOURCE[$v]=$(stage_git 12 "$inc") ;;
    esac
    probe "$inc" "$WORK/probe-$v.txt"
    load "$WORK/probe-$v.txt"
    [[ "3.$(get version.minor)" == "$v" ]] || die "headers staged for $v report $(get version.string)"
    log "$v: $(get version.string) (${SOURCE[$v]//|/, })"
done

{
    cat <<'EOF'
// @generated by tools/layouts/generate.sh: do not edit by hand.
//
// Each table comes from compiling tools/layouts/probe.c (offsetof/sizeof on the real structures)
// against that version's own headers, public and internal, for x86_64 Linux:
EOF
    for v in 3.9 3.10 3.11 3.12; do
        IFS='|' read -r -a parts <<<"${SOURCE[$v]}"
        printf '//   %-5s %s\n' "$v:" "${parts[0]}"
        for part in "${parts[@]:1}"; do
            printf '//         %s\n' "$part"
        done
    done
    cat <<'EOF'
// tools/layouts/check-dwarf.sh compares the 3.9 and 3.11 tables with the debug information of
// Debian's interpreters. To regenerate or add a version, see tools/layouts/README.md.

use crate::{
    CodeLayout, DictKeysFormat, DictLayout, FloatLayout, FrameLayout, FrameRef, GilAccess,
    GilLayout, InstructionRef, InterpreterLayout, Layout, LineTableFormat, LocalNames,
    LongFormat, LongLayout, ManagedDict, ObjectLayout, RuntimeLayout, SequenceLayout,
    SetLayout, ThreadLayout, UnicodeLayout, BytesLayout,
};
EOF
    for v in 3.9 3.10 3.11 3.12; do
        load "$WORK/probe-$v.txt"
        emit "${SOURCE[$v]%%|*}"
    done
} >"$WORK/tables.rs"
[[ ! -e "$WORK/missing" ]] || die "the probe did not report every fact; nothing written"

# Format as `cargo fmt` would: with the workspace's rustfmt.toml when it has one.
fmt_args=(--edition 2021)
for cfg in "$REPO/rustfmt.toml" "$REPO/.rustfmt.toml"; do
    if [[ -f "$cfg" ]]; then
        fmt_args+=(--config-path "$cfg")
        break
    fi
done
rustfmt "${fmt_args[@]}" "$WORK/tables.rs" || die "rustfmt rejected the generated code"
cp "$WORK/tables.rs" "$OUT"
log "wrote $OUT"
