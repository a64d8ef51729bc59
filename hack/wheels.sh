#!/usr/bin/env bash
# Fill the project's wheelhouse with every file the given locks pin: `make install` and `make images`
# install from it, so a machine that installed the project downloads nothing again.
#
#   hack/wheels.sh [--python-version X.Y] LOCK...     prints the wheelhouse's path
#
# The wheelhouse is ${TRAINPIPE_WHEELS:-${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/wheels}, outside the
# clone so every checkout shares it. Each lock is first checked offline against it (pip download
# --no-index: every file present and matching its hash costs nothing); only when that fails does pip
# go to the index, for what is missing. pip's own HTTP cache cannot serve here: the package proxy of
# our machines answers so that pip does not cache.
# --python-version downloads the files of another interpreter (an image base whose Python differs
# from the host's); by default they are the host's.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
WHEELS=${TRAINPIPE_WHEELS:-${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/wheels}

target=()
if [ "${1:-}" = --python-version ]; then
    target=(--python-version "$2" --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64)
    shift 2
fi
[ $# -gt 0 ] || { echo "usage: hack/wheels.sh [--python-version X.Y] LOCK..." >&2; exit 2; }

# Any pip does (the venv's once it exists; the bundled pip of a fresh venv is enough for downloads).
if [ -x "$VENV/bin/python" ]; then pip=("$VENV/bin/python" -m pip); else pip=("$PYTHON" -m pip); fi

mkdir -p "$WHEELS"
# One filler at a time: pip copies a downloaded file into place, which a concurrent reader could see half-written.
exec 9>"$WHEELS/.lock"
flock 9

for lock in "$@"; do
    # A lock once found complete (for this target) is not checked again: pip would read and hash every
    # file, 20 s for the GPU lock's 6 GB. Deleting files from the wheelhouse by hand: remove its .ok-* too.
    stamp="$WHEELS/.ok-$( { cat "$lock"; echo "${target[*]}"; } | sha256sum | cut -c1-16)"
    if [ -e "$stamp" ]; then
        echo "wheels: $lock: every file is in $WHEELS" >&2
        continue
    fi
    args=(download --quiet --no-deps --require-hashes --progress-bar off -r "$lock" -d "$WHEELS" "${target[@]}")
    if PIP_FIND_LINKS="" "${pip[@]}" "${args[@]}" --no-index --find-links "$WHEELS" >/dev/null 2>&1; then
        echo "wheels: $lock: every file is in $WHEELS" >&2
        touch "$stamp"
        continue
    fi
    echo "wheels: $lock: downloading what $WHEELS lacks" >&2
    start=$SECONDS
    PIP_FIND_LINKS="" "${pip[@]}" "${args[@]}" --find-links "$WHEELS"
    touch "$stamp"
    echo "wheels: $lock: done in $((SECONDS - start)) s ($(du -sh "$WHEELS" | cut -f1) in the wheelhouse)" >&2
done
echo "$WHEELS"
