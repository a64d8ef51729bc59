#!/usr/bin/env bash
# Stops the local cluster started by localcluster/up.sh: the operator (if hack/operator-up.sh
# started one), the executor (and the pod processes it runs), the real node (localcluster/node/down.sh:
# its kubelet, containers, containerd, mounts, interfaces, firewall chains, cgroups), the S3 server, the registry,
# then kwok and the control plane. Removes the cluster's state; binaries and the registry's storage
# (a machine cache, see lib.sh) stay.
# localcluster/node/leftovers.sh then checks that nothing is left.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# First, so that it does not log a storm of connection errors while the API server goes away.
if [[ -f "$OPERATOR_PID" ]]; then "$HACK/operator-down.sh"; fi
if [[ -f "$EXECUTOR_PID" ]]; then
  pid="$(cat "$EXECUTOR_PID")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the pod executor (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$EXECUTOR_PID"
fi
# The S3 server (its data is in $STATE, removed below) before the node, whose bridge address it may listen on.
if [[ -f "$S3_PID" ]]; then
  log "stopping the S3 server (pid $(cat "$S3_PID"))"
  "$VENV/bin/python" -m trainpipe_localcluster.s3server stop --pidfile "$S3_PID" --dir "$S3_DIR" || stop_pidfile "$S3_PID" "the S3 server"
fi
# The real node before the control plane, so that its kubelet does not retry against a gone API server.
# It refuses (exit 1) while anything is still mounted under its folder: then the state is not deleted.
if ! "$LOCALCLUSTER/node/down.sh"; then
  log "the real node was not stopped cleanly; the state in $STATE is kept. See the lines above, then run $0 again"
  exit 1
fi
stop_pidfile "$REGISTRY_PID" registry
collect_registry_garbage
if [[ -d "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" ]]; then
  log "deleting the control plane ($KWOK_WORKDIR)"
  kwokctl delete cluster --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || \
    log "kwokctl delete cluster failed; stop the processes whose pids are in $KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids"
fi
if [[ -d "$STATE" && -n "$(mounts_under "$STATE")" ]]; then
  log "still mounted under $STATE (not deleted, to keep the host folders they show safe):"
  mounts_under "$STATE" >&2
  exit 1
fi
rm -rf "$STATE"
log "down"
