#!/usr/bin/env bash
# Starts the local cluster's real node beside the simulated ones: containerd (Debian's, its own config,
# root, state and socket under $STATE/node), CNI (a bridge of our own), and a kubelet of the control
# plane's version that joins as node real-0, pulling from the local registry. Called by
# localcluster/up.sh once the control plane and the registry are up; reuses a node that is up.
#
# TRAINPIPE_REAL_NODE=auto (default): when this machine cannot run the node (not root, no cgroup memory
#   controller, a package missing that cannot be installed, another clone's real node running here),
#   or it does not start, say why on stderr, record it in $STATE/node/status and exit 0: the cluster
#   goes on with the simulated nodes.
# TRAINPIPE_REAL_NODE=require: the same, but exit 1 with that reason.
# TRAINPIPE_REAL_NODE=off: no real node (one that runs is stopped).
#
# Either way $STATE/node/status says state=up|unavailable|failed|off and why (python -m
# trainpipe_localcluster.node status reads it). localcluster/node/down.sh undoes everything this does.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${TRAINPIPE_REAL_NODE:-auto}"
case "$MODE" in auto|require|off) ;; *) log "TRAINPIPE_REAL_NODE=$MODE: expected auto, require or off"; exit 2 ;; esac

write_status() {  # write_status STATE REASON [SECONDS]
  mkdir -p "$NODE_STATE"
  printf 'state=%s\nreason=%s\nseconds=%s\n' "$1" "$2" "${3:-}" > "$NODE_STATUS.tmp"
  mv "$NODE_STATUS.tmp" "$NODE_STATUS"
}

# The machine cannot run the node, or it did not start: clean up what was started, say why, record it.
not_up() {  # not_up unavailable|failed REASON
  local state="$1" reason="$2"
  trap - ERR
  if [[ "$state" == failed ]]; then "$LOCALCLUSTER/node/down.sh" >/dev/null 2>&1 || true; fi
  reason="${reason//$'\n'/ }"
  write_status "$state" "$reason"
  log "real node $REAL_NODE_NAME not started: $reason"
  if [[ "$MODE" == require ]]; then exit 1; fi
  log "going on with the simulated nodes only (TRAINPIPE_REAL_NODE=require makes this an error)"
  exit 0
}

node_ready() {
  [[ "$(kubectl get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

if [[ "$MODE" == off ]]; then
  if [[ -f "$KUBELET_PID" || -f "$CONTAINERD_PID" ]]; then "$LOCALCLUSTER/node/down.sh"; fi
  write_status off "TRAINPIPE_REAL_NODE=off"
  exit 0
fi
if pid_alive "$KUBELET_PID" && pid_alive "$CONTAINERD_PID" && [[ "$(link_owner)" == "$STATE" ]] && node_ready; then
  exit 0  # up, reused
fi

# -- can this machine run it? -------------------------------------------------------------------------
if [[ "$(id -u)" != 0 ]]; then
  not_up unavailable "not root (uid $(id -u)): a kubelet and containerd create cgroups, mounts and network namespaces, which needs root"
fi
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  grep -qw memory /sys/fs/cgroup/cgroup.controllers ||
    not_up unavailable "no cgroup memory controller (cgroup v2 without memory in /sys/fs/cgroup/cgroup.controllers): memory limits cannot be enforced"
elif ! awk '$1 == "memory" && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups || [[ ! -d /sys/fs/cgroup/memory ]]; then
  not_up unavailable "no cgroup memory controller (not enabled in /proc/cgroups or not mounted at /sys/fs/cgroup/memory): memory limits cannot be enforced"
fi
owner="$(link_owner)"
if [[ -n "$owner" && "$owner" != "$STATE" ]]; then
  not_up unavailable "another clone's real node runs on this machine (interface $REAL_NODE_LINK belongs to the cluster in $owner); stop it with: TRAINPIPE_CLUSTER_DIR=$owner localcluster/down.sh"
fi
if ip link show "$REAL_NODE_LINK" >/dev/null 2>&1 && [[ -z "$owner" ]]; then
  not_up unavailable "interface $REAL_NODE_LINK exists but is not a trainpipe cluster's (no alias): remove it ('ip link del $REAL_NODE_LINK') or change REAL_NODE_LINK in localcluster/config/node.env"
fi
# A control plane started before the node existed: kwok would manage the node, the API server could not
# call its kubelet (localcluster/config/kwokctl-patches.yaml.in).
apiserver_pid="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids/kube-apiserver.pid"
kwok_pid="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids/kwok-controller.pid"
if ! grep -qa -- --kubelet-client-certificate "/proc/$(cat "$apiserver_pid" 2>/dev/null)/cmdline" 2>/dev/null ||
   ! grep -qa -- --manage-nodes-with-annotation-selector "/proc/$(cat "$kwok_pid" 2>/dev/null)/cmdline" 2>/dev/null; then
  not_up unavailable "the control plane runs without the flags a real node needs (started by an older localcluster/up.sh?): restart it with make cluster-down && make cluster-up"
fi
for bin in "$KUBELET_BIN" "$PAUSE_BIN" "$REGISTRY_FILE"; do
  [[ -e "$bin" ]] || not_up unavailable "missing $bin: run 'make cluster-build' (kubelet and pause are built with the control plane)"
done
if ! install_log="$("$HACK/apt-install.sh" "${NODE_PACKAGES[@]}" 2>&1)"; then
  not_up unavailable "the node's packages (${NODE_PACKAGES[*]}) are missing and could not be installed: $(tail -n 3 <<< "$install_log")"
fi
for bin in containerd containerd-shim-runc-v2 runc ctr ip iptables-save openssl "$CNI_BIN/bridge" "$CNI_BIN/host-local" "$CNI_BIN/loopback"; do
  command -v "$bin" >/dev/null || not_up unavailable "$bin not found although its package is installed"
done

# -- start ---------------------------------------------------------------------------------------------
start=$(date +%s%N)
set -E
trap 'not_up failed "$0 line $LINENO failed: $BASH_COMMAND"' ERR
# Left over from a node that was not stopped (killed cluster, crashed daemon): clean, then start afresh.
if [[ -d "$NODE_STATE" || -n "$owner" ]]; then "$LOCALCLUSTER/node/down.sh" >/dev/null 2>&1 || true; fi
mkdir -p "$CONTAINERD_ROOT" "$NODE_STATE"/{containerd/certs.d,cni/net.d,cni/ipam,pki,kubelet,pod-logs,volume-plugins}
write_status starting ""

for key in "${NODE_SYSCTLS[@]}"; do echo "$key=$(cat "/proc/sys/${key//.//}")"; done > "$SYSCTL_BEFORE"
: > "$HOST_DIRS_CREATED"
for dir in /var/log/containers "$CNI_CACHE/results" "$CNI_CACHE"; do
  [[ -d "$dir" ]] || echo "$dir" >> "$HOST_DIRS_CREATED"
done

# The node's address: a dummy interface of ours, its alias naming this cluster. Kernels built without
# the dummy driver (this project's VMs) get a bridge without ports instead, which holds a local
# address just as well.
ip link add "$REAL_NODE_LINK" type dummy 2>/dev/null || ip link add "$REAL_NODE_LINK" type bridge 2>/dev/null ||
  not_up failed "cannot create the interface $REAL_NODE_LINK for the node's address (ip link add $REAL_NODE_LINK type dummy, or type bridge)"
ip link set "$REAL_NODE_LINK" alias "$LINK_OWNER"
ip addr add "$REAL_NODE_IP/32" dev "$REAL_NODE_LINK"
ip link set "$REAL_NODE_LINK" up
# The pod bridge, made here rather than by the CNI plugin at the first pod, so that the host's address on it
# exists before the services pods call (the S3 server) bind it; the plugin adopts an existing bridge of its name.
ip link show "$REAL_NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$REAL_NODE_BRIDGE" type bridge ||
  not_up failed "cannot create the pod bridge $REAL_NODE_BRIDGE (ip link add $REAL_NODE_BRIDGE type bridge)"
ip addr replace "$REAL_NODE_HOST_IP/${REAL_NODE_POD_CIDR#*/}" dev "$REAL_NODE_BRIDGE"
ip link set "$REAL_NODE_BRIDGE" up

# Credentials, all signed by the cluster CA kwokctl made: the kubelet's client certificate
# (system:node:real-0 in system:nodes, so the Node authorizer scopes what it reads) and its serving
# certificate for the node's address.
[[ -f "$KWOK_PKI/ca.key" ]] || not_up failed "no cluster CA key at $KWOK_PKI/ca.key to sign the kubelet's certificates"
sign() {  # sign NAME SUBJECT EXTENSIONS
  openssl req -new -newkey rsa:2048 -nodes -keyout "$NODE_STATE/pki/$1.key" -subj "$2" \
    -out "$NODE_STATE/pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$NODE_STATE/pki/$1.csr" -CA "$KWOK_PKI/ca.crt" -CAkey "$KWOK_PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile <(printf '%s\n' "$3") \
    -out "$NODE_STATE/pki/$1.crt" 2>/dev/null
  chmod 600 "$NODE_STATE/pki/$1.key"
}
sign kubelet-client "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" \
  "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign kubelet-serving "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" \
  "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$REAL_NODE_IP,DNS:$REAL_NODE_NAME"
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
KUBECONFIG="$NODE_STATE/kubelet.kubeconfig" "$K8S_DIR/bin/kubectl" config set-cluster local --server "$server" \
  --certificate-authority "$KWOK_PKI/ca.crt" >/dev/null
KUBECONFIG="$NODE_STATE/kubelet.kubeconfig" "$K8S_DIR/bin/kubectl" config set-credentials "$REAL_NODE_NAME" \
  --client-certificate "$NODE_STATE/pki/kubelet-client.crt" --client-key "$NODE_STATE/pki/kubelet-client.key" >/dev/null
KUBECONFIG="$NODE_STATE/kubelet.kubeconfig" "$K8S_DIR/bin/kubectl" config set-context local --cluster local \
  --user "$REAL_NODE_NAME" >/dev/null
KUBECONFIG="$NODE_STATE/kubelet.kubeconfig" "$K8S_DIR/bin/kubectl" config use-context local >/dev/null

# The sandbox image, from the local registry like every image the node runs.
registry="$(cat "$REGISTRY_FILE")"
pause_image="$("$VENV/bin/python" -m trainpipe_localcluster.node push-pause --registry "$registry" \
  --binary "$PAUSE_BIN" --tag "$PAUSE_VERSION" 2>>"$NODE_STATE/push-pause.log")" ||
  not_up failed "$(tail -n 1 "$NODE_STATE/push-pause.log")"

render() {  # render TEMPLATE OUT: fill in every @KEY@ the node's config files use
  sed -e "s|@NODE@|$NODE_STATE|g" -e "s|@ROOT@|$CONTAINERD_ROOT|g" -e "s|@PAUSE_IMAGE@|$pause_image|g" -e "s|@RUNC@|$(command -v runc)|g" \
      -e "s|@CNI_BIN@|$CNI_BIN|g" -e "s|@NETWORK@|$REAL_NODE_CNI_NETWORK|g" -e "s|@BRIDGE@|$REAL_NODE_BRIDGE|g" \
      -e "s|@POD_CIDR@|$REAL_NODE_POD_CIDR|g" -e "s|@ADDR@|$registry|g" -e "s|@NODE_IP@|$REAL_NODE_IP|g" \
      -e "s|@PORT@|${kubelet_port:-}|g" -e "s|@HEALTHZ_PORT@|${healthz_port:-}|g" -e "s|@CA@|$KWOK_PKI/ca.crt|g" \
      -e "s|@TAINT_KEY@|$REAL_NODE_TAINT_KEY|g" -e "s|@TAINT_VALUE@|$REAL_NODE_TAINT_VALUE|g" \
      -e "s|@TAINT_EFFECT@|$REAL_NODE_TAINT_EFFECT|g" -e "s|@CGROUP_ROOT@|$REAL_NODE_CGROUP|g" \
      "$LOCALCLUSTER/config/$1" > "$2"
}
render containerd.toml.in "$NODE_STATE/containerd/config.toml"
render cni-bridge.conflist.in "$NODE_STATE/cni/net.d/10-$REAL_NODE_CNI_NETWORK.conflist"
mkdir -p "$NODE_STATE/containerd/certs.d/$registry"
render registry-hosts.toml.in "$NODE_STATE/containerd/certs.d/$registry/hosts.toml"

log "starting the real node $REAL_NODE_NAME: containerd $(containerd --version | awk '{print $3}'), kubelet $KUBERNETES_VERSION (state in $NODE_STATE)"
# PATH: containerd runs containerd-shim-runc-v2, and the shim runc, from it.
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" setsid containerd \
  --config "$NODE_STATE/containerd/config.toml" >> "$CONTAINERD_LOG" 2>&1 < /dev/null &
echo $! > "$CONTAINERD_PID"
for _ in $(seq 100); do node_ctr version >/dev/null 2>&1 && break; pid_alive "$CONTAINERD_PID" || break; sleep 0.1; done
node_ctr version >/dev/null 2>&1 ||
  not_up failed "containerd did not start; $CONTAINERD_LOG ends with: $(tail -n 3 "$CONTAINERD_LOG")"
# Containers an interrupted down.sh left in the cached root, then the cached images' names (lib.sh).
delete_node_containers $(node_ctr containers list -q 2>/dev/null)
forget_image_names

kubelet_port="$(free_port)"; healthz_port="$(free_port)"
render kubelet.yaml.in "$NODE_STATE/kubelet.yaml"
setsid "$KUBELET_BIN" --config "$NODE_STATE/kubelet.yaml" --kubeconfig "$NODE_STATE/kubelet.kubeconfig" \
  --root-dir "$NODE_STATE/kubelet" --cert-dir "$NODE_STATE/pki" \
  --hostname-override "$REAL_NODE_NAME" --node-ip "$REAL_NODE_IP" \
  --node-labels "$REAL_NODE_POOL_LABEL=$REAL_NODE_POOL,node.kubernetes.io/instance-type=local-real" \
  >> "$KUBELET_LOG" 2>&1 < /dev/null &
echo $! > "$KUBELET_PID"
for _ in $(seq 240); do node_ready && break; pid_alive "$KUBELET_PID" || break; sleep 0.25; done
if ! node_ready; then
  why="$(grep -E '^E[0-9]{4}' "$KUBELET_LOG" | tail -n 2 | cut -c1-400)"
  pid_alive "$KUBELET_PID" || why="the kubelet exited: $(tail -n 2 "$KUBELET_LOG" | cut -c1-400)"
  not_up failed "node $REAL_NODE_NAME was not Ready within 60s (log $KUBELET_LOG): $why"
fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
seconds="$(printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)))"
write_status up "" "$seconds"
log "real node $REAL_NODE_NAME Ready in ${seconds}s (kubelet https://$REAL_NODE_IP:$kubelet_port, pods pull from $registry)"
