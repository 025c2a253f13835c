#!/usr/bin/env bash
# Runs the agent's unittest suite on every CPython the project targets: the Debian roots built by
# scripts/provision-interpreters.sh (3.9, 3.13, 3.14, 3.14d, 3.15, ...) and the host's 3.11.
# Fails if an expected interpreter is missing.
# Prints one summary line per interpreter and a final "N passed, N failed" line.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PYDIR=$(dirname "$HERE")
ROOTS=${PYMRI_ROOTS:-/var/cache/pymri/roots}
ENV_FILE="$ROOTS/interpreters.env"
REQUIRED=(PYTHON39 PYTHON311 PYTHON313 PYTHON314 PYTHON314D PYTHON315)

if [[ ! -f "$ENV_FILE" ]]; then
    echo "run_all: $ENV_FILE missing: run scripts/provision-interpreters.sh first" >&2
    exit 1
fi

declare -A SPEC
while IFS='=' read -r key value; do
    [[ -n "$key" ]] && SPEC[$key]=$value
done <"$ENV_FILE"

missing=0
for key in "${REQUIRED[@]}"; do
    spec=${SPEC[$key]:-}
    root=${spec%%:*}
    exe=${spec#*:}
    if [[ -z "$spec" || ! -x "$root$exe" ]]; then
        echo "run_all: interpreter $key is missing" >&2
        missing=1
    fi
done
if ((missing)); then
    exit 1
fi

total_pass=0
total_fail=0
total_skip=0
status=0
for key in $(printf '%s\n' "${!SPEC[@]}" | sort); do
    spec=${SPEC[$key]}
    root=${spec%%:*}
    exe=${spec#*:}
    [[ -x "$root$exe" ]] || continue
    if [[ "$root" == "/" ]]; then
        dest=$(mktemp -d)
        run=("$exe")
        inside=$dest
    else
        mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
        inside=/tmp/pymri-tests-$$
        dest=$root$inside
        mkdir -p "$dest"
        run=(chroot "$root" "$exe")
    fi
    rm -rf "$dest/python"
    mkdir -p "$dest/python"
    cp -r "$PYDIR/pymri_agent" "$PYDIR/tests" "$dest/python/"
    find "$dest/python" -name __pycache__ -prune -exec rm -rf {} +
    log=$(mktemp)
    timeout 600 "${run[@]}" -m unittest discover -s "$inside/python/tests" -t "$inside/python" >"$log" 2>&1
    rc=$?
    ran=$(grep -Eo '^Ran [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -n1)
    ran=${ran:-0}
    skipped=$(grep -E '^(OK|FAILED) \(' "$log" | grep -Eo 'skipped=[0-9]+' | grep -Eo '[0-9]+' | tail -n1)
    skipped=${skipped:-0}
    bad=0
    for n in $(grep -E '^FAILED \(' "$log" | grep -Eo '(failures|errors)=[0-9]+' | grep -Eo '[0-9]+'); do
        bad=$((bad + n))
    done
    if ((rc != 0)); then
        ((bad == 0)) && bad=1
        status=1
        echo "---- $key ($exe) failed:"
        tail -n 60 "$log"
    fi
    echo "$key: ran $ran, failed $bad, skipped $skipped ($exe)"
    total_pass=$((total_pass + ran - bad - skipped))
    total_fail=$((total_fail + bad))
    total_skip=$((total_skip + skipped))
    rm -rf "$dest" "$log"
done
echo "python agent: $total_pass passed, $total_fail failed, $total_skip skipped"
exit $status
