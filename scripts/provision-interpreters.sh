#!/usr/bin/env bash
# Builds (once) and reuses Debian root filesystems holding the CPython interpreters that the
# test suite runs targets on. Roots live outside the repository, keyed by a stamp of this
# script's package lists, so a second run takes seconds and a changed list rebuilds.
#
# Output: prints `KEY=PATH` lines (one per interpreter) and writes them to
# $PYMRI_ROOTS/interpreters.env, which the tests read.
set -euo pipefail

CACHE=${PYMRI_ROOTS:-/var/cache/pymri/roots}
mkdir -p "$CACHE"

# The Debian mirror comes from this machine's own apt configuration, never from the repository.
mirror() {
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
    fi
    if [[ -z "$uri" ]]; then
        echo "error: no Debian mirror found in /etc/apt configuration" >&2
        exit 1
    fi
    echo "$uri"
}

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "provision: installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}

APT_OPTS=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -q -y)

# suite | packages from the suite | packages from experimental (sid roots only)
ROOTS=(
    "bullseye|python3.9 python3.9-dbg|"
    "sid|python3.13 python3.14 python3.14-dbg|python3.15"
)

build_root() {
    local suite=$1 pkgs=$2 exp=$3 dir=$4 mir
    mir=$(mirror)
    local tmp="$dir.tmp"
    umount_root "$tmp"
    rm -rf "$tmp"
    echo "provision: building $suite root (about a minute)" >&2
    # debootstrap verifies the Release signature; bullseye and sid keys ship in
    # debian-archive-keyring on bookworm.
    debootstrap --variant=minbase --include="${pkgs// /,}" "$suite" "$tmp" "$mir" >"$tmp.log" 2>&1 \
        || { tail -n 30 "$tmp.log" >&2; echo "error: debootstrap $suite failed" >&2; exit 1; }
    if [[ -n "$exp" ]]; then
        echo "deb $mir experimental main" >"$tmp/etc/apt/sources.list.d/experimental.list"
        mount -t proc proc "$tmp/proc"
        chroot "$tmp" apt-get "${APT_OPTS[@]}" update >>"$tmp.log" 2>&1
        chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" \
            -t experimental install $exp >>"$tmp.log" 2>&1 \
            || { umount_root "$tmp"; tail -n 30 "$tmp.log" >&2; echo "error: installing $exp failed" >&2; exit 1; }
        umount_root "$tmp"
    fi
    chroot "$tmp" apt-get clean >/dev/null 2>&1 || true
    mv "$tmp" "$dir"
    rm -f "$tmp.log"
}

umount_root() {
    if mountpoint -q "$1/proc" 2>/dev/null; then umount -l "$1/proc"; fi
}

need debootstrap debootstrap
need gdb gdb

STAMP=$(sha256sum "$0" | cut -c1-12)
ENV_FILE="$CACHE/interpreters.env"
: >"$ENV_FILE.tmp"

for spec in "${ROOTS[@]}"; do
    IFS='|' read -r suite pkgs exp <<<"$spec"
    dir="$CACHE/$suite-$STAMP"
    if [[ ! -x "$dir/usr/bin/python3" && ! -d "$dir/usr/lib/python3.9" && ! -f "$dir/.complete" ]]; then
        build_root "$suite" "$pkgs" "$exp" "$dir"
        touch "$dir/.complete"
    elif [[ ! -f "$dir/.complete" ]]; then
        rm -rf "$dir"
        build_root "$suite" "$pkgs" "$exp" "$dir"
        touch "$dir/.complete"
    fi
    # Targets need /proc inside the root (sys.executable, threading), mounted while tests run.
    mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
    for exe in "$dir"/usr/bin/python3.[0-9]*; do
        name=$(basename "$exe")
        [[ "$name" =~ ^python3\.[0-9]+d?$ ]] || continue
        key=$(echo "$name" | tr -d '.' | tr '[:lower:]' '[:upper:]')
        echo "$key=$dir:/usr/bin/$name" >>"$ENV_FILE.tmp"
    done
done

# 3.11 is the machine's own Debian interpreter; the tests run it on the host, outside any root.
if [[ ! -x /usr/bin/python3.11 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11 >/dev/null
fi
echo "PYTHON311=/:/usr/bin/python3.11" >>"$ENV_FILE.tmp"

# Old roots from earlier stamps are only disk use.
for old in "$CACHE"/*; do
    [[ -d "$old" ]] || continue
    case "$old" in *-"$STAMP") continue ;; esac
    umount_root "$old"
    rm -rf "$old"
done

sort -u "$ENV_FILE.tmp" >"$ENV_FILE"
rm -f "$ENV_FILE.tmp"
cat "$ENV_FILE"
