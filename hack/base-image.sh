#!/usr/bin/env bash
# The base images a Dockerfile builds on, for hack/images.sh: its default public base when that is
# here or can be pulled, else a Debian bookworm Python base made from Debian's packages.
#
#   hack/base-image.sh DOCKERFILE...     prints ARG=IMAGE for each base ARG (*_IMAGE) to pass as --build-arg
#   hack/base-image.sh --refresh         rebuild the Debian base (security updates) on the next call
#
# Needs DOCKER and DOCKER_HOST (eval "$(hack/engine.sh start)"). A base ARG already set in the
# environment (PYTHON_IMAGE=my/python:3.11 hack/images.sh) is used as given.
#
# The Debian base: `debootstrap --variant=minbase` of bookworm with python3, python3-venv,
# python-is-python3 and ca-certificates, upgraded from bookworm-updates and bookworm-security, with
# apt lists, caches, docs and man pages removed (and apt and dpkg told to keep no caches, docs or
# translations in later installs, as Debian's own images do), imported as trainpipe-base/python:<python version>-bookworm. It is made
# once: the rootfs tarball in ${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/base is the stamp, and is
# imported again when the engine's data was removed. It serves CUDA_IMAGE too: jobs-gpu's CUDA
# runtime libraries come with the pip wheels (tensorflow[and-cuda], torch), the driver from the host.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}
BASE_DIR=$CACHE/base
TARBALL=$BASE_DIR/debian-bookworm-python.tar
REF_FILE=$BASE_DIR/debian-bookworm-python.ref
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
PULL_TIMEOUT=${TRAINPIPE_PULL_TIMEOUT:-60}

log() { echo "base-image: $*" >&2; }
die() { log "$*"; exit 1; }

if [ "${1:-}" = --refresh ]; then rm -f "$TARBALL" "$REF_FILE"; log "the Debian base is rebuilt on the next build"; exit 0; fi
[ $# -gt 0 ] || { echo "usage: hack/base-image.sh DOCKERFILE... | --refresh" >&2; exit 2; }
: "${DOCKER:?run under eval \"\$(hack/engine.sh start)\"}"

# The Debian mirror this machine's apt uses (deb.debian.org when none is configured).
mirror() {
    local m
    m=$(grep -rhoE '^(deb|URIs:)\s+(\[[^]]*\]\s+)?https?://[^ ]+/debian/?(\s|$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

make_rootfs_tarball() {
    [ "$(id -u)" = 0 ] || die "making the Debian base needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || hack/apt-install.sh debootstrap
    local m rootfs
    m=$(mirror)
    mkdir -p "$BASE_DIR"
    rootfs=$(mktemp -d "$BASE_DIR/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    log "debootstrap $SUITE from $m into $rootfs (about 1-2 minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$m" >"$BASE_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$BASE_DIR/debootstrap.log" >&2; die "debootstrap failed; log: $BASE_DIR/debootstrap.log"; }
    # The suites Debian's own images use, so `apt-get install` in a build gets security updates.
    rm -f "$rootfs/etc/apt/sources.list"
    cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${m%/}
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-${m%/debian*}/debian-security}
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # No docs, man pages or translations in later installs either (as in Debian's slim images).
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # No package caches after apt runs (a build's `apt-get update` would otherwise leave ~80 MB of
    # /var/cache/apt/*.bin in its layer) and no translations: the settings of Debian's own images.
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    log "upgrading from $SUITE-updates and $SUITE-security"
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >"$BASE_DIR/upgrade.log" 2>&1 \
        || { tail -20 "$BASE_DIR/upgrade.log" >&2; die "apt-get upgrade in the Debian base failed; log: $BASE_DIR/upgrade.log"; }
    : > "$rootfs/etc/resolv.conf"
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # The standard library's bytecode (compiled by the packages' postinst) stays: every Python start reads it.
    local py
    py=$(chroot "$rootfs" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    echo "trainpipe-base/python:$py-$SUITE" > "$REF_FILE"
    rm -rf "$rootfs"
    trap - EXIT
    log "rootfs $(du -h "$TARBALL" | cut -f1), Python $py"
}

# The Debian base's reference, made and imported when missing.
debian_base() {
    if [ ! -s "$TARBALL" ] || [ ! -s "$REF_FILE" ]; then make_rootfs_tarball; fi
    local ref
    ref=$(cat "$REF_FILE")
    if ! "$DOCKER" image inspect "$ref" >/dev/null 2>&1; then
        log "importing $ref"
        "$DOCKER" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            --message "debootstrap --variant=minbase --include=$PACKAGES $SUITE (hack/base-image.sh)" \
            "$TARBALL" "$ref" >/dev/null
    fi
    echo "$ref"
}

# Present here, or pulled within PULL_TIMEOUT seconds.
available() {
    "$DOCKER" image inspect "$1" >/dev/null 2>&1 && return 0
    timeout "$PULL_TIMEOUT" "$DOCKER" pull --quiet "$1" >/dev/null 2>&1
}

declare -A chosen
for dockerfile in "$@"; do
    while IFS='=' read -r arg default; do
        [ -z "${chosen[$arg]:-}" ] || continue
        if [ -n "${!arg:-}" ]; then
            chosen[$arg]=${!arg}
        elif available "$default"; then
            chosen[$arg]=$default
        else
            chosen[$arg]=$(debian_base)
            log "$default cannot be pulled here: $arg=${chosen[$arg]}"
        fi
        echo "$arg=${chosen[$arg]}"
    done < <(sed -n 's/^ARG \([A-Z_]*_IMAGE\)=\(.*\)$/\1=\2/p' "$dockerfile")
done
