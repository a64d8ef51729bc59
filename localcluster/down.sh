#!/usr/bin/env bash
# Stops the local cluster started by localcluster/up.sh: the operator (if hack/operator-up.sh
# started one), the executor (and the pod processes it runs), then kwok and the control plane.
# Removes the cluster's state; binaries stay cached.
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
if [[ -d "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" ]]; then
  log "deleting the control plane ($KWOK_WORKDIR)"
  kwokctl delete cluster --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || \
    log "kwokctl delete cluster failed; stop the processes whose pids are in $KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids"
fi
rm -rf "$STATE"
log "down"
