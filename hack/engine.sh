#!/usr/bin/env bash
# The container engine the project builds and pushes images with: Docker Engine from Debian's packages
# (`docker.io`: dockerd 20.10 with BuildKit, containerd, runc). Called by hack/images.sh and by anything
# else that needs an image daemon.
#
#   eval "$(hack/engine.sh start --holder $$)"    # install if missing, reuse or start; prints the exports
#   hack/engine.sh stop --holder $$               # release; stops the daemon only if this script started it
#   hack/engine.sh status | env
#
# `start` prints shell exports for the caller to eval:
#   DOCKER_HOST                the daemon to talk to
#   DOCKER                     a client that builds with BuildKit without the buildx plugin (Debian's 20.10
#                              client when the first `docker` on PATH wants a buildx plugin it does not have)
#   DOCKER_BUILDKIT=1
#   TRAINPIPE_ENGINE_STARTED   1 when this call started the daemon, 0 when it reused a running one
# A daemon that already answers is reused: $DOCKER_HOST when set (it must answer), then ours, then
# /var/run/docker.sock. Otherwise ours is started (below) and marked as started by us. Each caller
# registers as a holder (--holder PID, default the parent process); `stop` drops the holder, and the
# daemon stops when it was started by this script and no live holder is left, so one caller never stops
# a daemon another still uses, and nothing stops a daemon this script did not start.
#
# Our daemon: data under ${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/docker/data (images and the
# build cache survive a stop), storage driver overlay2 (vfs copies every layer and fills the disk),
# no iptables rules and no bridge (builds use --network host; containers run with --network none).
set -euo pipefail

CACHE=${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}
DATA_ROOT=${TRAINPIPE_DOCKER_DATA:-$CACHE/docker/data}
STORAGE_DRIVER=${TRAINPIPE_DOCKER_STORAGE_DRIVER:-overlay2}
NAME=${TRAINPIPE_ENGINE_NAME:-trainpipe-docker}          # a second name runs a second daemon (tests)
RUN_DIR=/run/$NAME                                        # dockerd's exec root
SOCK=/run/$NAME.sock
PIDFILE=/run/$NAME.pid
STATE=${TRAINPIPE_ENGINE_STATE:-/run/trainpipe-engine}    # owner mark, holders, lock, log
OURS=unix://$SOCK
START_TIMEOUT=${TRAINPIPE_ENGINE_TIMEOUT:-90}

HACK=$(cd "$(dirname "$0")" && pwd)

log() { echo "engine: $*" >&2; }
die() { log "$*"; exit 1; }

# A client that builds with BuildKit: the first `docker` on PATH if it has buildx or is old enough to
# have BuildKit built in (< 23), else Debian's /usr/bin/docker.
client() {
    local c
    for c in "${DOCKER:-}" "$(command -v docker || true)" /usr/bin/docker; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        if "$c" buildx version >/dev/null 2>&1; then echo "$c"; return; fi
        local major
        major=$("$c" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
        if [ -n "$major" ] && [ "$major" -lt 23 ]; then echo "$c"; return; fi
    done
    return 1
}

answers() { DOCKER_HOST=$1 timeout 10 "$DOCKER_CLI" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Debian's docker.io (dockerd, containerd, runc and the 20.10 client with BuildKit built in) when dockerd
# or a client that builds with BuildKit is missing. hack/apt-install.sh keeps the packages from starting
# their services: this script starts what it needs itself.
install_engine() {
    if ! command -v dockerd >/dev/null || ! client >/dev/null; then
        "$HACK/apt-install.sh" docker.io
    fi
    client >/dev/null || die "no docker client here builds with BuildKit: install the buildx plugin, or Debian's docker.io"
}

live_holders() {
    local h
    for h in "$STATE"/holders/*; do
        [ -e "$h" ] || continue
        if kill -0 "${h##*/}" 2>/dev/null; then echo "${h##*/}"; else rm -f "$h"; fi
    done
}

start_ours() {
    [ "$(id -u)" = 0 ] || die "starting dockerd needs root"
    mkdir -p "$DATA_ROOT" "$STATE"
    log "starting dockerd ($STORAGE_DRIVER, data $DATA_ROOT, log $STATE/dockerd.log)"
    # setsid: the daemon outlives the caller's shell and its signals; the caller stops it with `stop`.
    setsid dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR" --pidfile "$PIDFILE" -H "$OURS" \
        --iptables=false --ip6tables=false --bridge=none --storage-driver="$STORAGE_DRIVER" \
        >"$STATE/dockerd.log" 2>&1 </dev/null 8>&- &   # 8: serialise()'s lock, not for the daemon to hold
    local pid=$! deadline=$((SECONDS + START_TIMEOUT))
    until answers "$OURS"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -20 "$STATE/dockerd.log" >&2
            die "dockerd exited while starting (above: the end of $STATE/dockerd.log)"
        fi
        [ $SECONDS -lt $deadline ] || die "dockerd did not answer on $SOCK within ${START_TIMEOUT}s; see $STATE/dockerd.log"
        sleep 0.5
    done
    touch "$STATE/started-by-us"
}

# One start or stop at a time: two callers finding no daemon must not both start one.
serialise() { mkdir -p "$STATE"; exec 8>"$STATE/lock"; flock 8; }

cmd_start() {
    local holder=$1 host started=0
    serialise
    install_engine
    DOCKER_CLI=$(client) || die "no docker client that builds with BuildKit (install Debian's docker.io)"
    if [ -n "${DOCKER_HOST:-}" ]; then
        answers "$DOCKER_HOST" || die "DOCKER_HOST=$DOCKER_HOST does not answer; unset it to use or start this project's daemon"
        host=$DOCKER_HOST
    elif answers "$OURS"; then
        host=$OURS
    elif [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock; then
        host=unix:///var/run/docker.sock
    else
        start_ours
        host=$OURS started=1
    fi
    if [ "$host" = "$OURS" ]; then
        mkdir -p "$STATE/holders"
        touch "$STATE/holders/$holder"
    fi
    printf 'export DOCKER_HOST=%s\nexport DOCKER=%s\nexport DOCKER_BUILDKIT=1\nexport TRAINPIPE_ENGINE_STARTED=%s\n' \
        "$host" "$DOCKER_CLI" "$started"
}

cmd_stop() {
    local holder=$1
    serialise
    rm -f "$STATE/holders/$holder"
    [ -e "$STATE/started-by-us" ] || return 0   # not ours: never stop it
    local left
    left=$(live_holders | tr '\n' ' ')
    if [ -n "$left" ]; then log "dockerd stays up: still used by pid(s) $left"; return 0; fi
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        local deadline=$((SECONDS + 60))
        while kill -0 "$pid" 2>/dev/null; do
            [ $SECONDS -lt $deadline ] || die "dockerd (pid $pid) did not stop within 60 s; see $STATE/dockerd.log"
            sleep 0.5
        done
    fi
    rm -f "$STATE/started-by-us"
}

cmd_status() {
    DOCKER_CLI=$(client) || die "no docker client that builds with BuildKit"
    local h seen=" "
    for h in ${DOCKER_HOST:-} "$OURS" unix:///var/run/docker.sock; do
        case $seen in *" $h "*) continue ;; esac
        seen+="$h "
        if answers "$h"; then
            echo "answering: $h ($(DOCKER_HOST=$h "$DOCKER_CLI" info --format '{{.ServerVersion}}, {{.Driver}}, root {{.DockerRootDir}}'))"
        fi
    done
    if [ -e "$STATE/started-by-us" ]; then echo "ours: started by hack/engine.sh; holders: $(live_holders | tr '\n' ' ')"; fi
    echo "client: $DOCKER_CLI"
}

action=${1:-}
shift || true
holder=$PPID
if [ "${1:-}" = --holder ]; then holder=$2; fi
case $action in
    start) cmd_start "$holder" ;;
    stop) cmd_stop "$holder" ;;
    status) cmd_status ;;
    env) DOCKER_CLI=$(client) || die "no docker client that builds with BuildKit"
         answers "${DOCKER_HOST:-$OURS}" || die "no daemon answers; run: eval \"\$(hack/engine.sh start)\""
         printf 'export DOCKER_HOST=%s\nexport DOCKER=%s\nexport DOCKER_BUILDKIT=1\n' "${DOCKER_HOST:-$OURS}" "$DOCKER_CLI" ;;
    install) install_engine ;;
    *) echo "usage: hack/engine.sh start|stop [--holder PID] | status | env | install" >&2; exit 2 ;;
esac
