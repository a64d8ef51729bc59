#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) from the binaries hack/build-tools.sh built, then the simulated node pool, the default
# StorageClass, the OCI registry on loopback, the real node (localcluster/node/up.sh; see
# TRAINPIPE_REAL_NODE there), the S3 server (SeaweedFS; endpoint and credentials in $STATE/s3.env) and
# the pod executor. Reuses what is already up.
#
# Prints the kubeconfig path on stdout: `export KUBECONFIG=$(localcluster/up.sh)`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for bin in "$K8S_DIR/bin/kube-apiserver" "$ETCD_DIR/bin/etcd" "$KWOK_DIR/bin/kwokctl" "$KWOK_DIR/stages/pod-delete.yaml" \
    "$REGISTRY_BIN_DIR/bin/registry" "$SEAWEEDFS_DIR/bin/weed"; do
  if [[ ! -e "$bin" ]]; then
    log "missing $bin: run 'make cluster-build' (or hack/build-tools.sh) first"
    exit 1
  fi
done
if [[ ! -x "$VENV/bin/python" ]]; then
  log "no Python venv at $VENV (the executor runs there): create it, or set VENV=/path/to/venv"
  exit 1
fi

start=$(date +%s%N)
mkdir -p "$STATE"

reused=""
if apiserver_ready && pid_alive "$EXECUTOR_PID" && ! executor_stale; then reused=1; fi
if apiserver_ready && executor_stale; then
  # Edited since it started (a developer's loop): the cluster stays, the executor is replaced. Pods it
  # was running are reported failed (ExecutorLost) by the new one, as after a node restart.
  log "trainpipe_localcluster/executor.py or kube.py changed since the executor started: restarting it"
  pid="$(cat "$EXECUTOR_PID")"
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$EXECUTOR_PID"
fi

if ! apiserver_ready; then
  # A half-started or stopped cluster from an earlier run: start from a clean slate, since tests
  # expect only the bootstrap objects to exist.
  if [[ -d "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" ]]; then
    log "removing a stale cluster in $KWOK_WORKDIR"
    "$LOCALCLUSTER/down.sh" >/dev/null 2>&1 || true
  fi
  # down.sh removes the whole state folder.
  mkdir -p "$STATE"
  config="$STATE/kwokctl.yaml"
  sed -e "s|@K8S@|$K8S_DIR|g" -e "s|@ETCD@|$ETCD_DIR|g" -e "s|@KWOK@|$KWOK_DIR|g" -e "s|@REPO@|$REPO|g" \
    "$LOCALCLUSTER/config/kwokctl.yaml.in" > "$config"
  # Flags kwokctl has no option for (the API server's kubelet client, kwok's node selection): more
  # top-level keys of the same KwokctlConfiguration document, so before the first `---`.
  sed -e "s|@PKI@|$KWOK_PKI|g" "$LOCALCLUSTER/config/kwokctl-patches.yaml.in" >> "$config"
  for stage in "$KWOK_DIR"/stages/*.yaml; do
    printf -- '---\n' >> "$config"
    cat "$stage" >> "$config"
  done
  log "starting kube-apiserver $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION (state in $STATE)"
  # PATH: kwokctl calls `kubectl` to wait for the cluster; make sure it finds ours, not a download.
  if ! PATH="$K8S_DIR/bin:$PATH" kwokctl create cluster --config "$config" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 180s > "$STATE/kwokctl-create.log" 2>&1; then
    log "kwokctl create cluster failed; its output ($STATE/kwokctl-create.log) ends with:"
    tail -n 30 "$STATE/kwokctl-create.log" >&2
    log "component logs: $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/"
    exit 1
  fi
  kubectl apply -f "$LOCALCLUSTER/config/bootstrap.yaml" >/dev/null
fi

ensure_registry
# The real node: up, or why not on stderr and in $NODE_STATUS (fails here only when required).
"$LOCALCLUSTER/node/up.sh"
# After the node: it listens on the node's pod bridge when the node is up.
ensure_s3
if [[ -n "$reused" ]]; then
  log "already up (state in $STATE; real node: $(sed -n 's/^state=//p' "$NODE_STATUS"))"
  echo "$KUBECONFIG_FILE"
  exit 0
fi

if ! pid_alive "$EXECUTOR_PID"; then
  mkdir -p "$STATE/executor"
  log "starting the pod executor (log: $STATE/executor.log)"
  # setsid: the executor outlives this shell (make returns) and is stopped by its pidfile.
  setsid "$VENV/bin/python" -m trainpipe_localcluster.executor --kubeconfig "$KUBECONFIG_FILE" \
    --state-dir "$STATE/executor" --pidfile "$EXECUTOR_PID" \
    >> "$STATE/executor.log" 2>&1 < /dev/null &
  for _ in $(seq 50); do pid_alive "$EXECUTOR_PID" && break; sleep 0.1; done
  pid_alive "$EXECUTOR_PID" || { log "executor did not start; see $STATE/executor.log"; tail -n 20 "$STATE/executor.log" >&2; exit 1; }
fi

kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
# Pods are refused until the ServiceAccount controller has made `default`; `kubectl wait` can't wait
# for an object that does not exist yet, so poll.
for _ in $(seq 120); do kubectl get serviceaccount default -n default >/dev/null 2>&1 && break; sleep 0.5; done
kubectl get serviceaccount default -n default >/dev/null
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '%d.%01d\n' $((ms / 1000)) $((ms % 1000 / 100)) > "$STATE/last-start-seconds"
log "up in $(cat "$STATE/last-start-seconds")s: export KUBECONFIG=$KUBECONFIG_FILE"
echo "$KUBECONFIG_FILE"
