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
REGISTRY_BIN_DIR="$TOOLS/registry-$REGISTRY_VERSION"
PAUSE_DIR="$TOOLS/pause-$PAUSE_VERSION"
SEAWEEDFS_DIR="$TOOLS/seaweedfs-$SEAWEEDFS_VERSION"
# shellcheck source=config/node.env
source "$LOCALCLUSTER/config/node.env"
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
KWOK_PKI="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki"
# The OCI registry (distribution) on loopback: `$STATE/registry` holds its address, 127.0.0.1:PORT,
# which `make images-push` pushes to and pods on the real node pull from.
REGISTRY_FILE="$STATE/registry"
REGISTRY_PID="$STATE/registry.pid"
REGISTRY_LOG="$STATE/registry.log"
# Its storage is a machine cache shared by every clone's cluster, like the wheelhouse and the engine's
# data: a push whose layers an earlier cluster already received uploads only the manifest (jobs-cpu:
# 4 s instead of 90 s). Each running registry holds $REGISTRY_LOCK shared; down.sh garbage-collects
# what no tag names any more only when it can take the lock alone, as collection is unsafe while any
# registry serves the storage.
REGISTRY_DATA="${TRAINPIPE_REGISTRY_DATA:-${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/registry}"
REGISTRY_LOCK="$REGISTRY_DATA.lock"
REGISTRY_CONFIG="$STATE/registry.yaml"
# The S3-compatible object store (SeaweedFS `weed server -s3`, trainpipe_localcluster/s3server.py): data, config
# and log under $S3_DIR; `$STATE/s3.env` (mode 0600) holds AWS_ENDPOINT_URL, AWS_REGION and the credentials it
# generated, which the cluster tests read (and put into the pipelines' credentials Secret). Per cluster, like
# the state: a bucket left by an earlier cluster never leaks into a new one.
S3_DIR="$STATE/s3"
S3_PID="$STATE/s3.pid"
S3_ENV="$STATE/s3.env"
S3_BUCKET=trainpipe
# The real node (localcluster/node/): kubelet, containerd and their files; `status` says whether it
# is up, or why not (trainpipe_localcluster.node reads it too).
NODE_STATE="$STATE/node"
NODE_STATUS="$NODE_STATE/status"

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

# A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it).
free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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

registry_ready() {
  pid_alive "$REGISTRY_PID" && [[ -f "$REGISTRY_FILE" ]] && [[ "$(http_status "http://$(cat "$REGISTRY_FILE")/v2/")" == 200 ]]
}

# Starts the registry on loopback unless it answers already: the port of the last start when it is
# free (pods and containerd's config name it), else a new free one. Storage under $REGISTRY_DATA.
ensure_registry() {
  registry_ready && return 0
  if pid_alive "$REGISTRY_PID"; then kill -TERM "$(cat "$REGISTRY_PID")" 2>/dev/null || true; sleep 0.5; fi
  local port=""
  [[ -f "$REGISTRY_FILE" ]] && port="$(cut -d: -f2 "$REGISTRY_FILE")"
  if [[ -z "$port" ]] || [[ "$(http_status "http://127.0.0.1:$port/")" != 000 ]]; then port="$(free_port)"; fi
  mkdir -p "$REGISTRY_DATA"
  sed -e "s|@ADDR@|127.0.0.1:$port|g" -e "s|@DATA@|$REGISTRY_DATA|g" "$LOCALCLUSTER/config/registry.yaml.in" > "$REGISTRY_CONFIG"
  log "starting the registry on 127.0.0.1:$port (storage $REGISTRY_DATA, log: $REGISTRY_LOG)"
  # The shell takes the shared lock on fd 9 and becomes the registry (exec), which keeps fd 9 and so
  # the lock until it exits; the pidfile names the registry itself. OTEL_TRACES_EXPORTER=none:
  # distribution exports traces to an OTLP collector by default.
  OTEL_TRACES_EXPORTER=none setsid bash -c 'exec 9>>"$1" && flock --shared 9 && exec "$2" serve "$3"' _ \
    "$REGISTRY_LOCK" "$REGISTRY_BIN_DIR/bin/registry" "$REGISTRY_CONFIG" >> "$REGISTRY_LOG" 2>&1 < /dev/null &
  echo $! > "$REGISTRY_PID"
  echo "127.0.0.1:$port" > "$REGISTRY_FILE"
  for _ in $(seq 100); do registry_ready && return 0; pid_alive "$REGISTRY_PID" || break; sleep 0.1; done
  log "the registry did not start; $REGISTRY_LOG ends with:"
  tail -n 20 "$REGISTRY_LOG" >&2
  return 1
}

s3_ready() {
  pid_alive "$S3_PID" && [[ -f "$S3_ENV" ]] && [[ "$(http_status "$(sed -n 's/^AWS_ENDPOINT_URL=//p' "$S3_ENV")/")" != 000 ]]
}

# Starts the S3 server unless it answers already, on the address its clients reach: with the real node up,
# the host's address on the pod bridge ($REAL_NODE_HOST_IP; pods on the real node cannot reach the host's
# loopback), else 127.0.0.1 (simulated nodes' pods are host processes). Creates bucket $S3_BUCKET.
ensure_s3() {
  s3_ready && return 0
  stop_pidfile "$S3_PID" "the S3 server"
  local host=127.0.0.1
  if [[ "$(sed -n 's/^state=//p' "$NODE_STATUS" 2>/dev/null)" == up ]]; then host="$REAL_NODE_HOST_IP"; fi
  log "starting the S3 server (SeaweedFS) on $host (data and log: $S3_DIR)"
  if ! "$VENV/bin/python" -m trainpipe_localcluster.s3server start --dir "$S3_DIR" --host "$host" --bucket "$S3_BUCKET"       --weed "$SEAWEEDFS_DIR/bin/weed" --pidfile "$S3_PID" --env-file "$S3_ENV" >/dev/null; then
    log "the S3 server did not start; see $S3_DIR/weed.log"
    return 1
  fi
}

# After the registry stopped: deletes the manifests no tag names (an image rebuilt under the same tag
# leaves its predecessor untagged) and the layers only they used, so the cache holds the images last
# pushed, not every build. Skipped while another cluster's registry serves the same storage.
collect_registry_garbage() {
  [[ -f "$REGISTRY_CONFIG" && -d "$REGISTRY_DATA/docker" ]] || return 0
  local out rc=0
  out="$( (flock --exclusive --nonblock 9 || exit 75
           "$REGISTRY_BIN_DIR/bin/registry" garbage-collect --delete-untagged --quiet "$REGISTRY_CONFIG") 9>>"$REGISTRY_LOCK" 2>&1)" || rc=$?
  if [[ $rc == 75 ]]; then
    log "registry cache: another cluster's registry serves $REGISTRY_DATA; garbage not collected this time"
  elif [[ $rc != 0 ]]; then
    log "registry cache: garbage-collect failed, the cache is kept as it is: $(tail -n 3 <<< "$out")"
  fi
}

# Mount points at or under $1 on this machine (deepest first).
mounts_under() {
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r -u
}

stop_pidfile() {  # stop_pidfile FILE NAME: TERM, then KILL after 10 s; removes FILE
  local pid
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$1"
}
