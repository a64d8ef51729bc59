#!/usr/bin/env bash
# Build (and push) the images of images/*/Dockerfile: `make images`, `make images-push`.
#
#   hack/images.sh build [NAME...]    trainpipe/NAME:<appVersion> for each NAME (default: $IMAGES, else all)
#   hack/images.sh push [NAME...]     build, then tag and push to $REGISTRY (host[:port]/prefix); default:
#                                     the local cluster's registry ($TRAINPIPE_CLUSTER_DIR/registry)/trainpipe
#   BUILD=0 hack/images.sh push ...   push what an earlier build left, without building (a CI that builds in
#                                     one step and pushes in another; a machine that pruned its build cache)
#
# The engine: hack/engine.sh (Docker Engine from Debian, BuildKit), started when none answers and stopped
# at the end when this script started it. The base: hack/base-image.sh (the Dockerfile's public default,
# else a Debian bookworm base passed as PYTHON_IMAGE/CUDA_IMAGE). The dependencies: the locks each
# Dockerfile copies, filled into the project's wheelhouse (hack/wheels.sh) and served read-only to the
# build on 127.0.0.1 (a pip configuration passed as the BuildKit secret `pip`: no index, find-links to the
# server), so a machine that ran `make install` downloads only what the images need beyond it, once. A
# secret, not build arguments: build arguments are part of the layer cache key, and the server's port
# differs between concurrent runs; the locked hashes fix what gets installed either way. Each image carries the OCI labels version (the chart's appVersion),
# revision (git HEAD) and source (the chart's home).
# Logs: $IMAGES_DIR/<name>.build.log. Pushed digests: $IMAGES_DIR/digests.env (sourceable).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(operator jobs-cpu jobs-gpu)
IMAGES_DIR=${IMAGES_DIR:-$PWD/.cache/images}
CLUSTER_DIR=${TRAINPIPE_CLUSTER_DIR:-$PWD/.cache/cluster}
VENV=${VENV:-.venv}
CHART=helm/trainpipe/Chart.yaml

log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }

mode=${1:-}
case $mode in build|push) shift ;; *) echo "usage: hack/images.sh build|push [NAME...]" >&2; exit 2 ;; esac
# shellcheck disable=SC2206  # IMAGES is a space-separated list
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(${IMAGES:-${ALL[*]}})
for n in "${names[@]}"; do [ -f "images/$n/Dockerfile" ] || die "no image '$n': choose from ${ALL[*]}"; done

chart_field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$CHART"; }
VERSION=$(chart_field appVersion)
SOURCE=$(chart_field home)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# What the build context and the Dockerfiles hold differs from that commit: say so in the label.
if [ -n "$(git status --porcelain -- pyproject.toml README.md jobs operator locks images .dockerignore 2>/dev/null)" ]; then
    REVISION=$REVISION-dirty
fi
[ -n "$VERSION" ] && [ -n "$SOURCE" ] || die "appVersion or home missing in $CHART"

if [ "$mode" = push ]; then
    if [ -z "${REGISTRY:-}" ]; then
        [ -s "$CLUSTER_DIR/registry" ] || die "no registry: start the local cluster's (make cluster-up writes $CLUSTER_DIR/registry) or pass REGISTRY=host[:port]/prefix"
        REGISTRY="$(head -1 "$CLUSTER_DIR/registry")/trainpipe"
    fi
fi

mkdir -p "$IMAGES_DIR"
server_pid=""
work=$(mktemp -d "$IMAGES_DIR/run.XXXXXX")
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
    hack/engine.sh stop --holder $$ || true
}
trap cleanup EXIT
eval "$(hack/engine.sh start --holder $$)"

# The wheelhouse over HTTP on loopback, read-only, on a free port, for the builds (they run with the
# host's network), and the pip configuration that points at it.
serve_wheels() {
    [ -z "$server_pid" ] || return 0
    "$VENV/bin/python" - "$1" "$work/port" <<'EOF' &
import functools, http.server, sys
root, portfile = sys.argv[1], sys.argv[2]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
open(portfile, "w").write(str(server.server_address[1]))
server.serve_forever()
EOF
    server_pid=$!
    local i
    for i in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    [ -s "$work/port" ] || die "the wheelhouse server did not start"
    printf '[global]\nno-index = true\nfind-links = http://127.0.0.1:%s/\n' "$(cat "$work/port")" > "$work/pip.conf"
}

host_python=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}

build() {
    local name=$1 dockerfile="images/$1/Dockerfile" args=() line base="" py locks
    while IFS= read -r line; do
        args+=(--build-arg "$line")
        base=${line#*=}
    done < <(hack/base-image.sh "$dockerfile")
    # The locks this Dockerfile installs (its `COPY locks/... locks/` line), for the base's Python.
    read -r -a locks < <(sed -n 's/^COPY \(locks\/.*\) locks\/$/\1/p' "$dockerfile")
    py=$("$DOCKER" run --rm --network none --entrypoint sh "$base" -c \
        'python3 -c "import sys; print(\"%d.%d\" % sys.version_info[:2])" 2>/dev/null || true')
    if [ -n "$py" ] && [ ${#locks[@]} -gt 0 ]; then
        local target=()
        [ "$py" = "$host_python" ] || target=(--python-version "$py")
        serve_wheels "$(hack/wheels.sh "${target[@]}" "${locks[@]}")"
        args+=(--secret "id=pip,src=$work/pip.conf")
    else
        log "$name: $base has no python3 before its build stage installs one: its dependencies come from the index"
    fi
    [ -s "$ca" ] && args+=(--secret "id=ca,src=$ca")
    local tag="trainpipe/$name:$VERSION" start=$SECONDS
    log "building $tag (log: $IMAGES_DIR/$name.build.log)"
    # shellcheck disable=SC2086  # BUILD_ARGS: extra `docker build` arguments, split on spaces
    if ! "$DOCKER" build --progress=plain --network host -f "$dockerfile" "${args[@]}" \
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE" \
        ${BUILD_ARGS:-} -t "$tag" . >"$IMAGES_DIR/$name.build.log" 2>&1; then
        tail -30 "$IMAGES_DIR/$name.build.log" >&2
        die "$name: build failed (above: the end of $IMAGES_DIR/$name.build.log)"
    fi
    local size
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$tag")
    log "built $tag in $((SECONDS - start)) s, $((size / 1000000)) MB"
}

# Compressed size of a pushed image: its manifest's layers and config, as the registry stores them.
pushed_bytes() {
    "$VENV/bin/python" - "$1" "$2" <<'EOF'
import json, sys, urllib.request
ref, tag = sys.argv[1], sys.argv[2]
host, _, repo = ref.partition("/")
req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={
    "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
m = json.load(urllib.request.urlopen(req, timeout=30))
print(sum(layer["size"] for layer in m["layers"]) + m["config"]["size"])
EOF
}

push() {
    local name=$1 ref="$REGISTRY/$1" out digest bytes
    "$DOCKER" tag "trainpipe/$name:$VERSION" "$ref:$VERSION"
    log "pushing $ref:$VERSION"
    out=$("$DOCKER" push "$ref:$VERSION" 2>&1) || { echo "$out" >&2; die "$name: push to $REGISTRY failed"; }
    digest=$(echo "$out" | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' | tail -1)
    [ -n "$digest" ] || { echo "$out" >&2; die "$name: no digest in the push output"; }
    bytes=$(pushed_bytes "$ref" "$VERSION" 2>/dev/null || echo "")
    log "pushed $ref:$VERSION@$digest${bytes:+ ($((bytes / 1000000)) MB compressed)}"
    # Only the tag goes (trainpipe/<name>:<version> still names the image): a tag per registry pushed to
    # would otherwise keep every earlier build's layers alive in the engine (a new local registry port
    # each cluster made one per run).
    "$DOCKER" rmi "$ref:$VERSION" >/dev/null
    local key
    key=$(echo "$name" | tr 'a-z-' 'A-Z_')
    {
        grep -v -e "^${key}_" "$IMAGES_DIR/digests.env" 2>/dev/null | grep -v -e '^# ' -e '^TRAINPIPE_' || true
        printf '%s_IMAGE=%s\n%s_DIGEST=%s\n%s_COMPRESSED_BYTES=%s\n' "$key" "$ref" "$key" "$digest" "$key" "$bytes"
    } > "$IMAGES_DIR/digests.env.tmp"
    {
        echo "# Written by hack/images.sh push: the last pushed digest of each image (source it; ref = IMAGE@DIGEST)."
        echo "TRAINPIPE_REGISTRY=$REGISTRY"
        echo "TRAINPIPE_IMAGE_TAG=$VERSION"
        sort "$IMAGES_DIR/digests.env.tmp"
    } > "$IMAGES_DIR/digests.env"
    rm -f "$IMAGES_DIR/digests.env.tmp"
}

if [ "$mode" = push ] && [ -s "$IMAGES_DIR/digests.env" ] && ! grep -qx "TRAINPIPE_REGISTRY=$REGISTRY" "$IMAGES_DIR/digests.env"; then
    rm -f "$IMAGES_DIR/digests.env"   # digests of another registry: start over
fi
if [ "$mode" = push ] && [ "${BUILD:-1}" = 0 ]; then
    for n in "${names[@]}"; do
        "$DOCKER" image inspect "trainpipe/$n:$VERSION" >/dev/null 2>&1 \
            || die "BUILD=0: no image trainpipe/$n:$VERSION to push; build it first (make images IMAGES=$n)"
    done
else
    for n in "${names[@]}"; do build "$n"; done
fi
if [ "$mode" = push ]; then
    for n in "${names[@]}"; do push "$n"; done
    log "digests: $IMAGES_DIR/digests.env"
fi
