# Shared settings for localcluster/*.sh and the hack/ scripts that use the local cluster: where the
# binaries and the runtime state live.
# shellcheck shell=bash
LOCALCLUSTER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LOCALCLUSTER/.." && pwd)"
HACK="$REPO/hack"
# shellcheck source=../hack/versions.env
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
# The operator started by hack/operator-up.sh: a local process acting as its ServiceAccount.
CRD_FILE="$REPO/crds/trainpipe.io_trainingpipelines.yaml"
RBAC_FILE="$REPO/operator/deploy/rbac.yaml"
OPERATOR_NAMESPACE=trainpipe-system
OPERATOR_SA=trainpipe-operator
OPERATOR_PID="$STATE/operator.pid"
OPERATOR_LOG="$STATE/operator.log"
OPERATOR_PORT_FILE="$STATE/operator.port"
OPERATOR_KUBECONFIG="$STATE/operator.kubeconfig"
export KWOK_WORKDIR="$STATE/kwok"

log() { printf '[cluster] %s\n' "$*" >&2; }

kwokctl() { "$KWOK_DIR/bin/kwokctl" --name "$CLUSTER_NAME" "$@"; }
kubectl() { "$K8S_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

apiserver_ready() {
  [[ -f "$KUBECONFIG_FILE" ]] && kubectl get --raw /readyz >/dev/null 2>&1
}

# True when the running executor was started before its code last changed (it runs the old code).
executor_stale() {
  pid_alive "$EXECUTOR_PID" && { [[ "$LOCALCLUSTER/trainpipe_localcluster/executor.py" -nt "$EXECUTOR_PID" ]] ||
    [[ "$LOCALCLUSTER/trainpipe_localcluster/kube.py" -nt "$EXECUTOR_PID" ]]; }
}

# True when the pidfile names a live `python -m trainpipe_operator` (not a recycled pid).
operator_alive() {
  pid_alive "$OPERATOR_PID" && grep -qa trainpipe_operator "/proc/$(cat "$OPERATOR_PID")/cmdline" 2>/dev/null
}

# HTTP status of a local URL, 000 when nothing answers (the venv's python: no curl needed).
http_status() {
  "$VENV/bin/python" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as err:
    print(err.code)
except OSError:
    print("000")
PY
}

operator_ready() {
  operator_alive && [[ -f "$OPERATOR_PORT_FILE" ]] && [[ "$(http_status "http://127.0.0.1:$(cat "$OPERATOR_PORT_FILE")/readyz")" == 200 ]]
}
