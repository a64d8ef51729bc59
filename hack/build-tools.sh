#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules into a cache keyed by version.
#
# Usage: hack/build-tools.sh [kubernetes|etcd|kwok|helm|kstatus|flux|registry|seaweedfs|pause ...]   (default: all)
#
# Each component is a small wrapper module in hack/tools/<component>/ (go.mod + go.sum pin every
# dependency; the Kubernetes one `replace`s each staging module k8s.io/<name> with v0.36.x, because
# k8s.io/kubernetes itself requires them at v0.0.0; `kstatus` also holds its own small main.go, a
# checker around sigs.k8s.io/cli-utils' kstatus for the GitOps tests; `pause` is only our own main.go,
# the real node's sandbox process). Binaries land in
#   ${TRAINPIPE_TOOLS:-$HOME/.cache/trainpipe/tools}/<component>-<version>/bin/
# outside the repository, so fresh clones (CI) on the same machine reuse them. A component is rebuilt
# only when its stamp (version + wrapper go.mod/go.sum/*.go + this script's build recipe) changes.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
TOOLS="${TRAINPIPE_TOOLS:-$HOME/.cache/trainpipe/tools}"
JOBS="${TRAINPIPE_BUILD_JOBS:-$(nproc)}"
# Bump when the recipe below changes in a way that must invalidate cached binaries.
RECIPE=1

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# CI shells may not have Go's default install folder on PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then export PATH="/usr/local/go/bin:$PATH"; fi
if ! command -v go >/dev/null; then
  echo "[build-tools] no Go toolchain on PATH: install Go >= 1.26 (https://go.dev/dl) or put it on PATH" >&2
  exit 1
fi

log() { printf '[build-tools] %s\n' "$*" >&2; }

version_of() {
  case "$1" in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kstatus) echo "$KSTATUS_VERSION" ;;
    flux) echo "$FLUX_CONTROLLERS_VERSION" ;;
    registry) echo "$REGISTRY_VERSION" ;;
    seaweedfs) echo "$SEAWEEDFS_VERSION" ;;
    pause) echo "$PAUSE_VERSION" ;;
    *) log "unknown component '$1' (expected kubernetes, etcd, kwok, helm, kstatus, flux, registry, seaweedfs or pause)"; exit 2 ;;
  esac
}

module_of() {
  case "$1" in
    kubernetes) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;;
    helm) echo helm.sh/helm/v3 ;;
    kstatus) echo sigs.k8s.io/cli-utils ;;
    flux) echo github.com/fluxcd/source-controller ;;
    registry) echo github.com/distribution/distribution/v3 ;;
    seaweedfs) echo github.com/seaweedfs/seaweedfs ;;
    pause) ;;  # no upstream module: our own main.go, versioned by PAUSE_VERSION
  esac
}

# Prints the directory holding the component's binaries (whether or not it is built yet).
tool_dir() { echo "$TOOLS/$1-$(version_of "$1")"; }

stamp_of() {
  local dir="$HACK/tools/$1"
  # *.go: a wrapper may hold its own main package (kstatus); the others have none.
  { echo "recipe=$RECIPE version=$(version_of "$1") go=$(go env GOVERSION)"; cat "$dir/go.mod" "$dir/go.sum"
    find "$dir" -maxdepth 1 -name '*.go' -print0 | sort -z | xargs -0 -r cat; } \
    | sha256sum | cut -d' ' -f1
}

# The cluster runs kwok with only these upstream stages: nodes come up Ready and keep heartbeating,
# deleted pods are removed. The pod lifecycle itself (Running -> Succeeded/Failed) belongs to
# trainpipe_localcluster/executor.py, so kwok's pod-ready/pod-complete stages must not race it.
copy_kwok_stages() {
  local dest="$1/stages" src
  [[ -f "$dest/pod-delete.yaml" ]] && return 0
  src="$(cd "$HACK/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  mkdir -p "$dest"
  cp "$src/node/fast/node-initialize.yaml" "$src/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$src/pod/fast/pod-delete.yaml" "$dest/"
  chmod u+w "$dest"/*.yaml
}

# The Flux CRDs the two controllers watch, from the same module versions the binaries are built from.
copy_flux_crds() {
  local dest="$1/crds" m dir
  mkdir -p "$dest"
  for m in source-controller kustomize-controller; do
    dir="$(cd "$HACK/tools/flux" && go list -m -f '{{.Dir}}' "github.com/fluxcd/$m")"
    cp "$dir"/config/crd/bases/*.yaml "$dest/"
  done
  chmod u+w "$dest"/*.yaml
}

cached() { [[ -f "$(tool_dir "$1")/.stamp" && "$(cat "$(tool_dir "$1")/.stamp")" == "$(stamp_of "$1")" ]]; }

# Module downloads wait on the network and compiles on the CPUs: every component still to build has
# its modules fetched at once, in the background, while the first ones compile (the Go module cache
# locks what two fetches share). A cold SeaweedFS spent 73 s downloading before its compile began.
prefetch() {
  local c
  for c in "$@"; do
    cached "$c" || (cd "$HACK/tools/$c" && go mod download >/dev/null 2>&1 || true) &
  done
}

build_one() {
  local comp="$1" ver mod src out tmp start ldflags pkgs=()
  ver="$(version_of "$comp")"; mod="$(module_of "$comp")"; src="$HACK/tools/$comp"
  out="$(tool_dir "$comp")"
  if [[ -n "$mod" ]] && ! grep -qE "^[[:space:]]*(require[[:space:]]+)?${mod//./\\.} ${ver//./\\.}( |$)" "$src/go.mod"; then
    log "$src/go.mod does not require $mod $ver (hack/versions.env says so): update one to match the other"
    exit 1
  fi
  if cached "$comp"; then
    log "$comp $ver: cached in $out"
    [[ "$comp" != kwok ]] || copy_kwok_stages "$out"
    return 0
  fi
  case "$comp" in
    kubernetes)
      local v=k8s.io/component-base/version c=k8s.io/client-go/pkg/version minor
      minor="${ver#v1.}"; minor="${minor%%.*}"
      ldflags="-s -w"
      for p in "$v" "$c"; do
        ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        ldflags+=" -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      done
      # kubelet: the local cluster's real node (localcluster/node/up.sh), the same version as the control plane.
      pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet) ;;
    etcd)
      # etcd's version string is compiled into go.etcd.io/etcd/api/v3/version; nothing to stamp.
      ldflags="-s -w"; pkgs=(go.etcd.io/etcd/server/v3) ;;
    kwok)
      ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${ver#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
      pkgs=(sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl) ;;
    helm)
      ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      pkgs=(helm.sh/helm/v3/cmd/helm) ;;
    kstatus)
      # The wrapper's own main package (main.go), named after the folder: bin/kstatus.
      ldflags="-s -w"; pkgs=(.) ;;
    flux)
      # Both controllers' module roots are their main packages: bin/source-controller, bin/kustomize-controller.
      ldflags="-s -w"; pkgs=(github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller) ;;
    registry)
      # The OCI distribution registry the real node pulls from (localcluster/up.sh serves it on loopback).
      ldflags="-s -w -X github.com/distribution/distribution/v3/version.version=$ver"
      pkgs=(github.com/distribution/distribution/v3/cmd/registry) ;;
    seaweedfs)
      # The S3-compatible object store of the local cluster and the e2e tier (localcluster/trainpipe_localcluster/s3server.py).
      # One binary, `weed`; its version string is compiled in, nothing to stamp.
      ldflags="-s -w"; pkgs=(github.com/seaweedfs/seaweedfs/weed) ;;
    pause)
      # The wrapper's own main package: bin/pause, the real node's sandbox process.
      ldflags="-s -w"; pkgs=(.) ;;
  esac
  tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp/bin"
  log "$comp $ver: building ${pkgs[*]} (-p $JOBS) into $out"
  start=$(date +%s)
  (cd "$src" && go mod download && go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$tmp/bin/" "${pkgs[@]}")
  # `go build` names the etcd binary after its module path (".../server/v3"): give it its real name.
  if [[ "$comp" == etcd ]]; then
    for n in server v3; do [[ -f "$tmp/bin/$n" ]] && mv "$tmp/bin/$n" "$tmp/bin/etcd"; done
  fi
  [[ "$comp" != kwok ]] || copy_kwok_stages "$tmp"
  [[ "$comp" != flux ]] || copy_flux_crds "$tmp"
  echo "$(( $(date +%s) - start ))" > "$tmp/build-seconds"
  stamp_of "$comp" > "$tmp/.stamp"
  rm -rf "$out"; mv "$tmp" "$out"
  log "$comp $ver: built in $(cat "$out/build-seconds")s"
}

if [[ "${1:-}" == "--dir" ]]; then tool_dir "$2"; exit 0; fi
mkdir -p "$TOOLS"
# shellcheck disable=SC2206  # the default list splits on spaces, as the loop below does
components=(${@:-kubernetes etcd kwok helm kstatus flux registry seaweedfs pause})
prefetch "${components[@]}"
for c in "${components[@]}"; do build_one "$c"; done
wait  # a fetch whose component failed to build before it finished
