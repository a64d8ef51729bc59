#!/usr/bin/env bash
# Writes a kubeconfig that acts as a ServiceAccount of the local cluster (creating the account if
# needed), so a client gets exactly the RBAC that account was granted, e.g. by a chart.
#
# Usage: localcluster/sa-kubeconfig.sh NAMESPACE SERVICEACCOUNT OUTFILE [DURATION, default 24h]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -lt 3 ]]; then
  sed -n '2,5p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
ns="$1" sa="$2" out="$3" duration="${4:-24h}"
apiserver_ready || { log "the local cluster is not up: run 'make cluster-up' first"; exit 1; }
kubectl get serviceaccount "$sa" -n "$ns" >/dev/null 2>&1 || kubectl create serviceaccount "$sa" -n "$ns" >/dev/null
token="$(kubectl create token "$sa" -n "$ns" --duration "$duration")"
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
user="system:serviceaccount:$ns:$sa"
umask 077
"$K8S_DIR/bin/kubectl" --kubeconfig "$out" config set-cluster trainpipe --server "$server" \
  --certificate-authority "$ca" --embed-certs >/dev/null
"$K8S_DIR/bin/kubectl" --kubeconfig "$out" config set-credentials "$user" --token "$token" >/dev/null
"$K8S_DIR/bin/kubectl" --kubeconfig "$out" config set-context "$user" --cluster trainpipe --user "$user" >/dev/null
"$K8S_DIR/bin/kubectl" --kubeconfig "$out" config use-context "$user" >/dev/null
log "wrote $out (acts as $user for $duration)"
