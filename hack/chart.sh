#!/usr/bin/env bash
# Package the operator's chart and push it to an OCI registry: `make chart-package`, `make chart-push`.
#
#   hack/chart.sh package   helm package helm/trainpipe into $DIST (trainpipe-<version>.tgz); prints the file
#   hack/chart.sh push      package, then helm push it to oci://$REGISTRY/charts; prints the reference that
#                           `helm install trainpipe <reference> --version <version>` installs
#
# REGISTRY: host[:port]/prefix, as for `make images-push` (the chart lands beside the images, under
# charts/); default: the local cluster's registry ($TRAINPIPE_CLUSTER_DIR/registry) with the prefix
# trainpipe. A registry on loopback (127.0.0.1, localhost, [::1]) is spoken to over plain HTTP, as Docker
# does (the local cluster's serves no TLS); PLAIN_HTTP=1 or 0 says so for any other. Credentials: run
# `helm registry login <host>` first; helm keeps them in its own configuration, never in this script.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/trainpipe
DIST=${DIST:-dist}
HELM=${HELM:-helm}
CLUSTER_DIR=${TRAINPIPE_CLUSTER_DIR:-$PWD/.cache/cluster}

log() { echo "chart: $*" >&2; }
die() { log "$*"; exit 1; }

mode=${1:-}
case $mode in package|push) ;; *) echo "usage: hack/chart.sh package|push" >&2; exit 2 ;; esac
command -v "$HELM" >/dev/null || die "$HELM not found: make builds the pinned helm (hack/build-tools.sh helm)"

chart_field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$CHART/Chart.yaml"; }
NAME=$(chart_field name)
VERSION=$(chart_field version)
[ -n "$NAME" ] && [ -n "$VERSION" ] || die "name or version missing in $CHART/Chart.yaml"

mkdir -p "$DIST"
"$HELM" package "$CHART" --destination "$DIST" >&2
TGZ="$DIST/$NAME-$VERSION.tgz"
[ -f "$TGZ" ] || die "helm package did not write $TGZ"
if [ "$mode" = package ]; then echo "$TGZ"; exit 0; fi

if [ -z "${REGISTRY:-}" ]; then
    [ -s "$CLUSTER_DIR/registry" ] || die "no registry: start the local cluster's (make cluster-up writes $CLUSTER_DIR/registry) or pass REGISTRY=host[:port]/prefix"
    REGISTRY="$(head -1 "$CLUSTER_DIR/registry")/trainpipe"
fi
REGISTRY=${REGISTRY%/}
host=${REGISTRY%%/*}
case ${PLAIN_HTTP:-auto} in
    1) plain=(--plain-http) ;;
    0) plain=() ;;
    auto) case $host in 127.0.0.1|127.0.0.1:*|localhost|localhost:*|\[::1\]|\[::1\]:*) plain=(--plain-http) ;; *) plain=() ;; esac ;;
    *) die "PLAIN_HTTP=$PLAIN_HTTP: expected 1, 0 or nothing" ;;
esac
"$HELM" push "$TGZ" "oci://$REGISTRY/charts" "${plain[@]}" >&2
log "install it with: helm install $NAME oci://$REGISTRY/charts/$NAME --version $VERSION${plain:+ --plain-http}"
echo "oci://$REGISTRY/charts/$NAME"
