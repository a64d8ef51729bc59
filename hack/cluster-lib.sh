# Shared settings for hack/cluster-*.sh: where the binaries and the runtime state live.
# shellcheck shell=bash
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HACK/.." && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
TOOLS="${TRAINPIPE_TOOLS:-$HOME/.cache/trainpipe/tools}"
K8S_DIR="$TOOLS/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$TOOLS/etcd-$ETCD_VERSION"
KWOK_DIR="$TOOLS/kwok-$KWOK_VERSION"
HELM_DIR="$TOOLS/helm-$HELM_VERSION"
# Runtime state (etcd data, PKI, component logs, kubeconfig, claim folders, pod logs) is per clone,
# so a developer's cluster and a CI run in a fresh clone never share one.
STATE="${TRAINPIPE_CLUSTER_DIR:-$REPO/.cache/cluster}"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
CLUSTER_NAME=trainpipe
KUBECONFIG_FILE="$STATE/kubeconfig"
EXECUTOR_PID="$STATE/executor.pid"
export KWOK_WORKDIR="$STATE/kwok"

log() { printf '[cluster] %s\n' "$*" >&2; }

kwokctl() { "$KWOK_DIR/bin/kwokctl" --name "$CLUSTER_NAME" "$@"; }
kubectl() { "$K8S_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

apiserver_ready() {
  [[ -f "$KUBECONFIG_FILE" ]] && kubectl get --raw /readyz >/dev/null 2>&1
}
