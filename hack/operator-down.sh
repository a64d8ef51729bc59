#!/usr/bin/env bash
# Stops the operator hack/operator-up.sh started: SIGTERM, then SIGKILL after a grace period
# (OPERATOR_GRACE seconds, default 15). The CRD, RBAC and pipelines stay in the cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../localcluster/lib.sh"

grace="${OPERATOR_GRACE:-15}"
if operator_alive; then
  pid="$(cat "$OPERATOR_PID")"
  log "stopping the operator (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
elif [[ -f "$OPERATOR_PID" ]]; then
  log "operator not running (stale pidfile removed)"
else
  log "operator not running"
fi
rm -f "$OPERATOR_PID" "$OPERATOR_PORT_FILE"
