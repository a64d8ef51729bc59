#!/usr/bin/env bash
# Lists what a stopped local cluster left on this machine, and exits 1 if anything: processes naming the
# cluster's state folder (kubelet, containerd and shims, registry, executor, control plane), the real
# node's cgroup parent (with any process in it), mounts under the state folder, the node's network
# interfaces, the kubelet's iptables chains and rules naming the pod network, the kubelet's links in
# /var/log/containers and libcni's cache files of the node's network.
# Run it after `make cluster-down` (make test does, after the cluster tier).
#
# Usage: localcluster/node/leftovers.sh     (TRAINPIPE_CLUSTER_DIR names the cluster, as for up.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

found=0
report() { printf 'leftover: %s\n' "$*"; found=1; }

for pid in $(pids_naming "$STATE/"); do
  if [[ -r "/proc/$pid/cmdline" ]]; then report "process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-160)"; fi
done
for cg in $(node_cgroups); do
  procs="$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
  report "cgroup $cg${procs:+ with processes $procs}"
done
for mnt in $( { mounts_under "$STATE"; mounts_under "$CONTAINERD_ROOT"; } | sort -u); do report "mount $mnt"; done
for link in "$REAL_NODE_LINK" "$REAL_NODE_BRIDGE"; do
  if ip link show "$link" >/dev/null 2>&1; then report "network interface $link"; fi
done
for family in iptables ip6tables; do
  if ! command -v "$family-save" >/dev/null; then continue; fi
  rules="$("$family-save" 2>/dev/null || true)"
  for chain in "${KUBELET_CHAINS[@]}"; do
    if grep -q "^:$chain " <<< "$rules"; then report "$family chain $chain"; fi
  done
  while read -r rule; do
    if [[ -n "$rule" ]]; then report "$family rule: $rule"; fi
  done <<< "$(grep -E -- "$REAL_NODE_BRIDGE|${REAL_NODE_POD_CIDR%/*}" <<< "$rules" || true)"
done
for cached in "$CNI_CACHE/results/$REAL_NODE_CNI_NETWORK-"*; do
  if [[ -e "$cached" ]]; then report "CNI cache file $cached"; fi
done
if [[ -d /var/log/containers ]]; then
  for entry in $(find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*"); do report "log link $entry"; done
fi
if ((found)); then
  if apiserver_ready; then echo "(the cluster in $STATE is up: these are its parts; stop it with make cluster-down)"; fi
  exit 1
fi
echo "no leftovers of the local cluster in $STATE"
