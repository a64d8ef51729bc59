#!/usr/bin/env bash
# Runs the trainpipe operator against the local cluster as a background process on this machine:
# installs the TrainingPipeline CRD and the operator's RBAC (operator/deploy/rbac.yaml), writes a
# kubeconfig acting as ServiceAccount trainpipe-system/trainpipe-operator (so the operator has
# exactly the RBAC a real deployment gets), starts `python -m trainpipe_operator` with it and
# returns once /readyz answers 200. Reuses an operator that is already up.
#
# Usage: hack/operator-up.sh [EXTRA OPERATOR FLAGS...]   (e.g. --namespace team-a --log-level DEBUG)
# Env: OPERATOR_PORT (default: a free port), OPERATOR_READY_TIMEOUT (seconds, default 90),
#      TRAINPIPE_CPU_IMAGE / TRAINPIPE_GPU_IMAGE (read by the operator itself).
# Files: $STATE/operator.{log,pid,port,kubeconfig}; stop it with hack/operator-down.sh. The token in
# operator.kubeconfig lasts 24h: after that, operator-down + operator-up gives the operator a new one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../localcluster/lib.sh"

timeout="${OPERATOR_READY_TIMEOUT:-90}"

apiserver_ready || { log "the local cluster is not up: run 'make cluster-up' first (make operator-up does)"; exit 1; }

if operator_ready; then
  log "operator already up and ready (pid $(cat "$OPERATOR_PID"), http://127.0.0.1:$(cat "$OPERATOR_PORT_FILE"), log $OPERATOR_LOG)"
  exit 0
fi

# The log since this start (earlier starts append to the same file).
log_offset=0
log_tail() { tail -c +"$((log_offset + 1))" "$OPERATOR_LOG" | tail -n 40 >&2; }

wait_ready() {
  local pid="$1" port="$2" deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" 2>/dev/null || rc=$?  # our child when we started it: its exit status
      log "the operator (pid $pid) exited (status $rc) before it was ready; $OPERATOR_LOG ends with:"
      log_tail
      rm -f "$OPERATOR_PID" "$OPERATOR_PORT_FILE"
      return 1
    fi
    [[ "$(http_status "http://127.0.0.1:$port/readyz")" == 200 ]] && return 0
    sleep 0.5
  done
  log "the operator (pid $pid) is not ready after ${timeout}s (http://127.0.0.1:$port/readyz); $OPERATOR_LOG ends with:"
  log_tail
  log "it is left running: inspect it, then 'make operator-down'"
  return 1
}

if operator_alive && [[ ! -f "$OPERATOR_PORT_FILE" ]]; then
  log "operator running without $OPERATOR_PORT_FILE: restarting it"
  "$HACK/operator-down.sh"
fi
if operator_alive; then
  # Started by an earlier call that is still coming up (or whose readiness lapsed): wait, don't duplicate.
  log "operator running (pid $(cat "$OPERATOR_PID")) but not ready yet; waiting up to ${timeout}s"
  wait_ready "$(cat "$OPERATOR_PID")" "$(cat "$OPERATOR_PORT_FILE")"
  log "operator ready"
  exit 0
fi

if ! "$VENV/bin/python" -c 'import trainpipe_operator' 2>/dev/null; then
  log "$VENV/bin/python cannot import trainpipe_operator: run 'make install' (it installs the operator extra)"
  exit 1
fi

# The CRD: server-side apply owns exactly the fields of the generated file; --force-conflicts takes
# over fields an earlier plain create (a test fixture) set, since this file is the source of truth.
kubectl apply --server-side --force-conflicts --field-manager trainpipe-hack -f "$CRD_FILE" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$CRD_FILE" >/dev/null
kubectl apply --server-side --force-conflicts --field-manager trainpipe-hack -f "$RBAC_FILE" >/dev/null
"$LOCALCLUSTER/sa-kubeconfig.sh" "$OPERATOR_NAMESPACE" "$OPERATOR_SA" "$OPERATOR_KUBECONFIG" 24h 2>/dev/null

port="${OPERATOR_PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
echo "$port" > "$OPERATOR_PORT_FILE"
if [[ -f "$OPERATOR_LOG" ]]; then log_offset="$(wc -c < "$OPERATOR_LOG")"; fi
printf '\n===== %s: operator-up (port %s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$port" >> "$OPERATOR_LOG"
# setsid: the operator outlives this shell (make returns) and is stopped through its pidfile. This
# shell has no job control, so setsid execs in place and $! is the operator's own pid. KUBECONFIG as
# well as --kubeconfig: the kubernetes client (and kopf's login through it) reads the variable.
KUBECONFIG="$OPERATOR_KUBECONFIG" setsid "$VENV/bin/python" -m trainpipe_operator \
  --kubeconfig "$OPERATOR_KUBECONFIG" --port "$port" "$@" >> "$OPERATOR_LOG" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$OPERATOR_PID"
log "starting the operator (pid $pid, as system:serviceaccount:$OPERATOR_NAMESPACE:$OPERATOR_SA, log $OPERATOR_LOG)"
wait_ready "$pid" "$port"
log "operator ready: http://127.0.0.1:$port/metrics, log $OPERATOR_LOG; stop it with 'make operator-down'"
