#!/usr/bin/env bash
# Regenerates crates/pymri-layouts/src/inject.rs: the pending-call tables pymri uses to run a
# script in the main thread of CPython 3.9 to 3.13. For every header tree it compiles
# probe_inject.c twice (release, and with -DPy_DEBUG=1 for --with-pydebug builds), runs it, and
# turns the `name=value` lines into `PendingCallsLayout` literals; identical layouts are merged,
# so a minor version has one table per distinct layout, told apart by sizeof(_PyRuntimeState).
# The types and functions come from inject.rs.in beside this file; the tables are appended.
# A developer tool, not run in CI; safe to run again (it only rewrites inject.rs).
#
# Header trees (each version's own Include/ with a pyconfig.h), in this order per version:
#   3.9   Debian bullseye python3.9-dev, installed on demand into the bullseye root that
#         scripts/provision-interpreters.sh builds under $PYMRI_ROOTS.
#   3.10, 3.12  Include/ from a CPython git directory, as generate.sh takes them:
#         $PYMRI_CPYTHON_GIT (or _3_10 / _3_12), at $PYMRI_CPYTHON_REV_3_10 / _3_12, by default
#         the newest final tag; the host's Debian 3.11 pyconfig.h ($PYMRI_PYCONFIG) stands in.
#   3.11  the host's Debian python3.11-dev, installed on demand.
#   3.13  Debian sid libpython3.13-dev, installed on demand into the sid root.
#   extra $PYMRI_INJECT_EXTRA_INCLUDES: space-separated installed include directories
#         (.../include/python3.N, holding internal/ and pyconfig.h) of further patch releases;
#         each adds the tables of its layouts. Two trees of one minor version whose layouts
#         differ but whose sizeof(_PyRuntimeState) is equal stop the script: the size would
#         not tell them apart.
#
# Environment: PYMRI_ROOTS (default /var/cache/pymri/roots), PYMRI_CPYTHON_GIT,
# PYMRI_CPYTHON_GIT_3_10, PYMRI_CPYTHON_GIT_3_12, PYMRI_CPYTHON_REV_3_10,
# PYMRI_CPYTHON_REV_3_12, PYMRI_PYCONFIG, PYMRI_INJECT_EXTRA_INCLUDES, PYMRI_INJECT_OUT
# (default: the crate's inject.rs), CC (default gcc).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}
OUT=${PYMRI_INJECT_OUT:-$REPO/crates/pymri-layouts/src/inject.rs}
CC=${CC:-gcc}
HOST_PYCONFIG=/usr/include/x86_64-linux-gnu/python3.11/pyconfig.h
PYCONFIG=${PYMRI_PYCONFIG:-$HOST_PYCONFIG}
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -q -y)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

die() {
    echo "generate_inject: $*" >&2
    exit 1
}
log() { echo "generate_inject: $*" >&2; }

command -v "$CC" >/dev/null || die "no C compiler ($CC); apt-get install gcc"
command -v rustfmt >/dev/null || die "rustfmt not found (rustup component add rustfmt)"

# The newest provisioned root of a Debian suite.
suite_root() {
    local root
    root=$(ls -dt "$ROOTS"/"$1"-*/.complete 2>/dev/null | head -n1 || true)
    root=${root%/.complete}
    [[ -n "$root" && -d "$root/usr" ]] \
        || die "no $1 root under $ROOTS: run scripts/provision-interpreters.sh first"
    echo "$root"
}

# Installs a package into a root unless FILE already exists there.
ensure_in_root() {
    local root=$1 file=$2 pkg=$3
    [[ -f "$root$file" ]] && return 0
    log "installing $pkg into $root"
    if ! chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" \
        install "$pkg" >"$WORK/apt.log" 2>&1; then
        chroot "$root" apt-get "${APT_OPTS[@]}" update >>"$WORK/apt.log" 2>&1 || true
        chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" \
            install "$pkg" >>"$WORK/apt.log" 2>&1 \
            || { tail -n 20 "$WORK/apt.log" >&2; die "installing $pkg failed"; }
    fi
}

ensure_host_python311_dev() {
    if [[ ! -f /usr/include/python3.11/internal/pycore_frame.h || ! -f $HOST_PYCONFIG ]]; then
        log "installing python3.11-dev on the host"
        DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" python3.11-dev >/dev/null
    fi
}

# stage DEST INCDIR PYCONFIG: copies an include directory and puts a real pyconfig.h in it.
stage() {
    mkdir -p "$1"
    cp -a "$2/." "$1/"
    rm -f "$1/pyconfig.h"
    cp "$3" "$1/pyconfig.h"
}

# Each stage_* fills a directory and prints a provenance line, then '|' and a short form.
stage_3_9() {
    local root pkg
    root=$(suite_root bullseye)
    ensure_in_root "$root" /usr/include/python3.9/internal/pycore_runtime.h python3.9-dev
    stage "$1" "$root/usr/include/python3.9" "$root/usr/include/x86_64-linux-gnu/python3.9/pyconfig.h"
    # shellcheck disable=SC2016 # ${Version} is dpkg-query's format
    pkg=$(chroot "$root" dpkg-query -W -f '${Version}' python3.9-dev)
    echo "Debian bullseye python3.9-dev $pkg|Debian python3.9-dev $pkg"
}

stage_3_11() {
    local pkg codename
    ensure_host_python311_dev
    stage "$1" /usr/include/python3.11 "$HOST_PYCONFIG"
    # shellcheck disable=SC2016
    pkg=$(dpkg-query -W -f '${Version}' python3.11-dev)
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    echo "Debian ${codename:+$codename }python3.11-dev $pkg|Debian python3.11-dev $pkg"
}

stage_3_13() {
    local root pkg
    root=$(suite_root sid)
    ensure_in_root "$root" /usr/include/python3.13/internal/pycore_ceval_state.h libpython3.13-dev
    stage "$1" "$root/usr/include/python3.13" "$root/usr/include/x86_64-linux-gnu/python3.13/pyconfig.h"
    # shellcheck disable=SC2016
    pkg=$(chroot "$root" dpkg-query -W -f '${Version}' libpython3.13-dev)
    echo "Debian sid libpython3.13-dev $pkg|Debian libpython3.13-dev $pkg"
}

stage_git() {
    local minor=$1 dest=$2 var_git var_rev git rev commit tag tree
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
    mkdir -p "$WORK/src-3.$minor"
    git --git-dir="$git" archive "$commit" Include | tar -x -C "$WORK/src-3.$minor"
    [[ -f "$PYCONFIG" ]] || ensure_host_python311_dev
    stage "$dest" "$WORK/src-3.$minor/Include" "$PYCONFIG"
    echo "CPython headers${tag:+, tag $tag}, Include/ tree $tree|CPython ${tag:-Include/ tree ${tree:0:12}}"
}

stage_extra() {
    local dest=$1 inc=$2
    [[ -f "$inc/patchlevel.h" && -d "$inc/internal" && -f "$inc/pyconfig.h" ]] \
        || die "$inc: not an installed CPython include directory with internal/ and pyconfig.h"
    # A Debian pyconfig.h is a wrapper that includes the multiarch one by a system path.
    if grep -q '#  *include <x86_64-linux-gnu/' "$inc/pyconfig.h"; then
        die "$inc: pyconfig.h is a multiarch wrapper; give a tree with a real pyconfig.h"
    fi
    stage "$dest" "$inc" "$inc/pyconfig.h"
    echo "installed headers given in PYMRI_INJECT_EXTRA_INCLUDES|installed headers"
}

# probe INCDIR OUT [FLAGS...]
probe() {
    local inc=$1 out=$2
    shift 2
    "$CC" -std=gnu11 -O0 -w "$@" -I"$inc" -o "$out.bin" "$HERE/probe_inject.c" \
        || die "probe_inject.c does not compile against $inc $*"
    "$out.bin" >"$out" || die "probe_inject failed for $inc $*"
}

declare -A F
load() {
    F=()
    local key value
    while IFS='=' read -r key value; do
        [[ -n "$key" ]] && F[$key]=$value
    done <"$1"
}
get() {
    if [[ -z "${F[$1]+set}" ]]; then
        echo "generate_inject: probe output lacks $1 (${F[version.string]:-?})" >&2
        touch "$WORK/missing"
        return 1
    fi
    echo "${F[$1]}"
}

# 1. Stage and probe every tree, release and debug.
trees=()
for v in 3.9 3.10 3.11 3.12 3.13; do
    inc=$WORK/inc-$v
    case $v in
        3.9) src=$(stage_3_9 "$inc") ;;
        3.10) src=$(stage_git 10 "$inc") ;;
        3.11) src=$(stage_3_11 "$inc") ;;
        3.12) src=$(stage_git 12 "$inc") ;;
        3.13) src=$(stage_3_13 "$inc") ;;
    esac
    trees+=("$v|$inc|$src")
done
n=0
for inc in ${PYMRI_INJECT_EXTRA_INCLUDES:-}; do
    n=$((n + 1))
    dest=$WORK/inc-extra-$n
    src=$(stage_extra "$dest" "$inc")
    v=$(sed -n 's/^#define PY_VERSION[[:space:]]*"\([0-9]*\.[0-9]*\).*/\1/p' "$dest/patchlevel.h")
    trees+=("$v|$dest|$src")
done

# 2. Group identical layouts. A layout's key is its probe output without the lines that name
# the tree (version.string) or the build (build.debug), and without the sizes of
# PyInterpreterState and PyThreadState, which patch releases change at their ends without
# moving a field listed here (a table keeps those of its first tree, for reference).
declare -A KEY_FILE KEY_SOURCES KEY_BUILDS KEY_MINOR SIZE_KEY
ORDER=()
for entry in "${trees[@]}"; do
    IFS='|' read -r v inc src short <<<"$entry"
    for build in release debug; do
        out=$WORK/probe-$(basename "$inc")-$build.txt
        if [[ $build == debug ]]; then
            probe "$inc" "$out" -DPy_DEBUG=1
        else
            probe "$inc" "$out"
        fi
        load "$out"
        [[ "3.$(get version.minor)" == "$v" ]] || die "headers staged for $v report $(get version.string)"
        key=$(grep -v -e '^version\.string=' -e '^build\.debug=' -e '^interpreter\.size=' \
            -e '^thread\.size=' "$out" | sha256sum | cut -c1-16)
        label="$(get version.string): $short"
        if [[ -z "${KEY_FILE[$key]+set}" ]]; then
            KEY_FILE[$key]=$out
            KEY_MINOR[$key]=$(get version.minor)
            KEY_SOURCES[$key]=""
            KEY_BUILDS[$key]=""
            ORDER+=("$key")
        fi
        [[ "|${KEY_SOURCES[$key]}|" == *"|$label|"* ]] \
            || KEY_SOURCES[$key]="${KEY_SOURCES[$key]:+${KEY_SOURCES[$key]}|}$label"
        [[ " ${KEY_BUILDS[$key]} " == *" $build "* ]] || KEY_BUILDS[$key]="${KEY_BUILDS[$key]} $build"
        log "$(get version.string) $build: runtime size $(get runtime.size), queue at $(get queue.owner)+$(get queue.offset) (layout $key)"
    done
done

# No two layouts of a minor version may share a build and a runtime size.
for key in "${ORDER[@]}"; do
    load "${KEY_FILE[$key]}"
    for build in ${KEY_BUILDS[$key]}; do
        sk="$(get version.minor)/$(get runtime.size)/$build"
        if [[ -n "${SIZE_KEY[$sk]+set}" && "${SIZE_KEY[$sk]}" != "$key" ]]; then
            die "3.$(get version.minor) $build: two layouts with sizeof(_PyRuntimeState) = $(get runtime.size); the size cannot tell them apart"
        fi
        SIZE_KEY[$sk]=$key
    done
done

# 3. Emit one literal per layout.
emit() {
    local key=$1 build lock index breaker flags main_tstate sources
    load "${KEY_FILE[$key]}"
    case "${KEY_BUILDS[$key]# }" in
        "release debug") build=Both ;;
        release) build=Release ;;
        debug) build=Debug ;;
        *) die "unexpected builds ${KEY_BUILDS[$key]}" ;;
    esac
    case $(get queue.lock_kind) in
        ThreadLock) lock="QueueLock::ThreadLock($(get queue.lock))" ;;
        PyMutex) lock="QueueLock::PyMutex($(get queue.lock))" ;;
        *) die "unknown lock kind" ;;
    esac
    case $(get queue.index) in
        FirstLast)
            index="QueueIndex::FirstLast { last: $(get queue.last), calls_to_do: $(get queue.calls_to_do) }"
            flags=None
            ;;
        FirstNextCount)
            index="QueueIndex::FirstNextCount { next: $(get queue.next), npending: $(get queue.npending), max: $(get queue.max), maxloop: $(get queue.maxloop), handling_thread: $(get queue.handling_thread) }"
            flags="Some(EntryFlags { offset: $(get queue.entry_flags), value: $(get queue.entry_flags_value) })"
            ;;
        *) die "unknown index scheme" ;;
    esac
    case $(get breaker.kind) in
        Interpreter) breaker="EvalBreaker::Interpreter { offset: $(get breaker.offset), value: $(get breaker.value) }" ;;
        Thread) breaker="EvalBreaker::Thread { offset: $(get breaker.offset), bit: $(get breaker.value) }" ;;
        *) die "unknown breaker kind" ;;
    esac
    main_tstate=None
    [[ -n "${F[runtime.main_tstate]+set}" ]] && main_tstate="Some($(get runtime.main_tstate))"
    sources=""
    IFS='|' read -r -a parts <<<"${KEY_SOURCES[$key]}"
    for part in "${parts[@]}"; do
        sources+=$'\n'"                \"${part//\"/\\\"}\","
    done
    cat <<EOF
        PendingCallsLayout {
            version: (3, $(get version.minor)),
            build: BuildKind::$build,
            runtime_size: $(get runtime.size),
            interpreter_size: $(get interpreter.size),
            thread_size: $(get thread.size),
            sources: &[$sources
            ],
            runtime: RuntimeFields {
                main_thread: $(get runtime.main_thread),
                interpreters_main: $(get runtime.interpreters_main),
                finalizing: $(get runtime.finalizing),
                main_tstate: $main_tstate,
            },
            queue: PendingQueue {
                owner: QueueOwner::$(get queue.owner),
                offset: $(get queue.offset),
                size: $(get queue.size),
                lock: $lock,
                first: $(get queue.first),
                index: $index,
                calls: $(get queue.calls),
                calls_len: $(get queue.calls_len),
                capacity: $(get queue.capacity),
                entry_size: $(get queue.entry_size),
                entry_func: $(get queue.entry_func),
                entry_arg: $(get queue.entry_arg),
                entry_flags: $flags,
            },
            breaker: $breaker,
        },
EOF
}

{
    cat <<'EOF'
// @generated by tools/layouts/generate_inject.sh from tools/layouts/inject.rs.in and the output
// of tools/layouts/probe_inject.c (offsetof/sizeof on the real structures, x86_64 Linux):
// do not edit by hand. Header trees, one per line (the `sources` of each table say which
// tables came from which tree):
EOF
    for entry in "${trees[@]}"; do
        IFS='|' read -r v inc src short <<<"$entry"
        load "$WORK/probe-$(basename "$inc")-release.txt"
        printf '//   %s\n' "$(get version.string): $src"
    done
    cat <<'EOF'
// tools/layouts/check-inject.sh compares the tables with the DWARF of Debian's 3.9, 3.11 and
// 3.13 release and debug interpreters and queues a call in each of them.

EOF
    grep -qx '// @TABLES@' "$HERE/inject.rs.in" || die "inject.rs.in lacks its // @TABLES@ line"
    sed '/^\/\/ @TABLES@$/,$d' "$HERE/inject.rs.in"
    cat <<'EOF'
/// Every generated table: per version, the primary header tree's release table first.
fn tables() -> Vec<PendingCallsLayout> {
    vec![
EOF
    for minor in 9 10 11 12 13; do
        for key in "${ORDER[@]}"; do
            [[ "${KEY_MINOR[$key]}" == "$minor" ]] && emit "$key"
        done
    done
    cat <<'EOF'
    ]
}
EOF
    sed '1,/^\/\/ @TABLES@$/d' "$HERE/inject.rs.in"
} >"$WORK/inject.rs"
[[ ! -e "$WORK/missing" ]] || die "the probe did not report every fact; nothing written"

fmt_args=(--edition 2021)
for cfg in "$REPO/rustfmt.toml" "$REPO/.rustfmt.toml"; do
    if [[ -f "$cfg" ]]; then
        fmt_args+=(--config-path "$cfg")
        break
    fi
done
rustfmt "${fmt_args[@]}" "$WORK/inject.rs" || die "rustfmt rejected the generated code"
cp "$WORK/inject.rs" "$OUT"
log "wrote $OUT"
