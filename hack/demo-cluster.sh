#!/usr/bin/env bash
# The demo on Kubernetes: starts the local cluster (reused when up; with its real node when this
# machine can run one), installs the operator with the Helm chart (helm/trainpipe, values-dev.yaml and
# the local cluster's values: release `trainpipe` in trainpipe-system, watching the demo namespace;
# `helm upgrade --install`, so a rerun applies changed values) with the chart's example data, applies
# examples/cluster-pipeline.yaml, follows the run until the pipeline is Ready, then shows its Jobs and
# where its report is on this machine.
#
# With the real node up, the operator and every CPU-side stage run in real containers there, from the
# images `make images` builds and `make images-push` pushes to the cluster's registry; the GPU stage runs
# on the simulated GPU nodes. Without it (the reason is printed), every pod runs as a process of the
# local pod executor, on the simulated nodes. Either way the operator has exactly the chart's RBAC.
# Its HTTP port (/metrics, /healthz, /readyz) is a free one, kept in $STATE/demo-operator.port.
#
# Env: DEMO_NAMESPACE (default trainpipe-demo), DEMO_TIMEOUT (seconds for the run, default 1800),
#      DEMO_HELM_ARGS (more `helm upgrade` arguments, e.g. "--set logLevel=INFO").
# Rerunning it reuses the data and the finished run; `kubectl annotate tp demo -n trainpipe-demo
# trainpipe.io/rerun=$(date +%s)` starts a new run. `helm uninstall trainpipe -n trainpipe-system`
# removes the operator and keeps the CRD, the pipeline and its outputs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../localcluster/lib.sh"

ns="${DEMO_NAMESPACE:-trainpipe-demo}"
timeout="${DEMO_TIMEOUT:-1800}"
manifest="$REPO/examples/cluster-pipeline.yaml"
chart="$REPO/helm/trainpipe"
release=trainpipe
port_file="$STATE/demo-operator.port"
values_file="$STATE/values-local.yaml"
say() { printf '[demo] %s\n' "$*" >&2; }
helm() { "$HELM_DIR/bin/helm" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
operator_pod() {
  kubectl get pods -n "$OPERATOR_NAMESPACE" -l "app.kubernetes.io/instance=$release,app.kubernetes.io/name=trainpipe-operator" \
    -o jsonpath='{.items[-1:].metadata.name}' 2>/dev/null
}
operator_log() {  # the pod's output: from the kubelet on the real node, else the executor's file
  if [[ "$real" == up ]]; then kubectl logs -n "$OPERATOR_NAMESPACE" "$(operator_pod)" --tail=30 2>&1 || true
  else tail -n 30 "$STATE/executor/logs/$OPERATOR_NAMESPACE/$(operator_pod)/operator.log" 2>/dev/null || true; fi
}

"$LOCALCLUSTER/up.sh" >/dev/null
if operator_alive; then
  say "the operator of 'make operator-up' (pid $(cat "$OPERATOR_PID")) serves every namespace and would race the chart's: run 'make operator-down' first"
  exit 1
fi
if node_status="$("$VENV/bin/python" -m trainpipe_localcluster.node status --state-dir "$STATE" 2>&1)"; then
  real=up
  say "$node_status: the operator and the CPU-side stages run in real containers there"
  # The images the node pulls: built (cached) and pushed to the cluster's registry.
  make -C "$REPO" --no-print-directory images-push IMAGES="operator jobs-cpu" >&2
else
  real=down
  say "no real node ($node_status): every pod runs as a process of the local pod executor"
fi

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for _ in $(seq 120); do kubectl get serviceaccount default -n "$ns" >/dev/null 2>&1 && break; sleep 0.5; done

# 0. The operator and the example data, from the chart. --take-ownership: the CRD (and trainpipe-system's
#    ServiceAccount) may exist already, applied by hack/operator-up.sh or the tests; the release adopts them.
[[ -s "$port_file" ]] || "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' > "$port_file"
port="$(cat "$port_file")"
"$VENV/bin/python" -m trainpipe_localcluster.values --state-dir "$STATE" --port "$port" > "$values_file"
say "helm upgrade --install $release $chart -n $OPERATOR_NAMESPACE -f values-dev.yaml -f $values_file (watching $ns, port $port, example data on)"
# shellcheck disable=SC2086  # DEMO_HELM_ARGS is a list of arguments
if ! helm upgrade --install "$release" "$chart" -n "$OPERATOR_NAMESPACE" --create-namespace --take-ownership \
    -f "$chart/values-dev.yaml" -f "$values_file" --set "watchNamespaces={$ns}" --set exampleData.enabled=true ${DEMO_HELM_ARGS:-} \
    --wait --wait-for-jobs --timeout 600s >/dev/null; then
  say "helm did not finish; the operator's log ends with:"; operator_log >&2
  kubectl get pods,jobs -n "$ns" >&2
  exit 1
fi
host=127.0.0.1
[[ "$real" == up ]] && host="$(kubectl get pod -n "$OPERATOR_NAMESPACE" "$(operator_pod)" -o jsonpath='{.status.podIP}')"
deadline=$((SECONDS + 120))
until [[ "$(http_status "http://$host:$port/readyz")" == 200 ]]; do
  if ((SECONDS > deadline)); then
    say "the chart's operator is not ready on http://$host:$port/readyz after 120s; its log ends with:"
    operator_log >&2
    exit 1
  fi
  sleep 0.5
done
say "operator ready: http://$host:$port/metrics (pod $OPERATOR_NAMESPACE/$(operator_pod))"
say "example data: written by the chart's Job to claim trainpipe-example-data (example/)"

# 2. The pipeline, followed until Ready (fails fast when it stalls).
pipeline="$(kubectl create --dry-run=client -o jsonpath='{.metadata.name}' -f "$manifest")"
kubectl apply -n "$ns" -f "$manifest" >/dev/null
say "TrainingPipeline $pipeline applied in $ns; following it (at most ${timeout}s)"
fields='{.metadata.generation}|{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].observedGeneration}|{.status.conditions[?(@.type=="Stalled")].status}|{.status.stage}|{.status.progress}|{.status.message}'
deadline=$((SECONDS + timeout)) last=""
while :; do
  IFS='|' read -r generation ready ready_gen stalled stage progress message < <(
    kubectl get tp "$pipeline" -n "$ns" -o jsonpath="$fields"; echo)
  if [[ "$ready" == True && "${ready_gen:-$generation}" == "$generation" ]]; then
    break
  fi
  if [[ "$stalled" != True ]]; then
    now="stage ${stage:-?} ${progress:-}${message:+ (${message:0:160})}"
    [[ "$now" != "$last" ]] && say "$now" && last="$now"
  else
    say "pipeline $pipeline is Stalled: ${message:-see its conditions}"
    kubectl get tp,jobs -n "$ns" >&2
    say "after fixing the cause: kubectl annotate tp $pipeline -n $ns trainpipe.io/retry=\$(date +%s) --overwrite"
    exit 1
  fi
  if ((SECONDS > deadline)); then
    say "pipeline $pipeline is not Ready after ${timeout}s"
    kubectl get tp,jobs -n "$ns" >&2
    exit 1
  fi
  sleep 2
done

# 3. What ran, and where the report is on this machine. status.outputPath is the run's folder as
#    the Jobs see it; the claim mounted there (read from the pipeline's Jobs) is a host folder here.
kubectl get tp,jobs -n "$ns"
output="$(kubectl get tp "$pipeline" -n "$ns" -o jsonpath='{.status.outputPath}')"
read -r out_claim inner < <(kubectl get jobs -n "$ns" -l "trainpipe.io/pipeline=$pipeline" -o json |
  "$VENV/bin/python" -c '
import json, sys
output = sys.argv[1].rstrip("/")
best = None
for job in json.load(sys.stdin)["items"]:
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            mount = m["mountPath"].rstrip("/")
            if m["name"] in claims and (output == mount or output.startswith(mount + "/")):
                inner = "/".join(p for p in (m.get("subPath", ""), output[len(mount):].strip("/")) if p)
                if best is None or len(mount) > best[0]:
                    best = (len(mount), claims[m["name"]], inner or ".")
print(*(best[1:] if best else ("", "")))
' "$output")
if [[ -n "$out_claim" ]]; then
  folder="$(kubectl get pv "$(kubectl get pvc "$out_claim" -n "$ns" -o jsonpath='{.spec.volumeName}')" \
    -o jsonpath='{.spec.hostPath.path}')/$inner"
  say "run folder: $output (claim $out_claim) = $folder"
  say "report: $folder/report.html"
else
  say "run folder: $output (no Job of $pipeline mounts it any more; claim folders are under $STATE/executor/volumes/$ns/)"
fi
