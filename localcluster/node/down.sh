#!/usr/bin/env bash
# Stops the local cluster's real node and removes everything it put on this machine: the kubelet, every
# pod container with its shim, containerd; then mounts under the node's folders (unmounted before
# anything is deleted: a bind mount deleted through deletes the host folder it shows), the pods'
# network namespaces, the bridge and the dummy interface, the kubelet's iptables chains, the pods'
# cgroups, the kubelet's links in /var/log/containers, and the kernel settings the kubelet changed.
# Keeps $STATE/node/*.log and status. Safe to run when the node is half started, stopped, or absent;
# called by localcluster/down.sh and by node/up.sh before a fresh start. localcluster/node/leftovers.sh
# checks the result.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

owner="$(link_owner)"
if [[ -n "$owner" && "$owner" != "$STATE" ]]; then
  log "the real node on this machine belongs to the cluster in $owner: not touching it"
  owner=""
fi
if [[ ! -d "$NODE_STATE" && -z "$owner" ]] && ! ip link show "$REAL_NODE_BRIDGE" >/dev/null 2>&1 &&
   [[ -z "$(node_cgroups)" ]]; then
  exit 0  # nothing of a real node here
fi
log "stopping the real node $REAL_NODE_NAME"

# 1. The kubelet first, so that it restarts nothing while containers go away.
stop_pidfile "$KUBELET_PID" kubelet
containers="$(node_container_ids)"

# 2. Every pod container: killed through containerd while it answers, then whatever is left in the
#    pods' cgroups; then containerd and the shims (which outlive containerd by design).
if pid_alive "$CONTAINERD_PID" && node_ctr version >/dev/null 2>&1; then
  tasks="$(node_ctr tasks list -q 2>/dev/null || true)"
  for task in $tasks; do node_ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true; done
  for task in $tasks; do
    for _ in $(seq 20); do node_ctr tasks delete "$task" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  # containerd's root outlives the node (a cache of images, lib.sh): no container may stay in it.
  delete_node_containers $containers
fi
kill_cgroup_processes() {  # whatever still runs in the cgroup of one of the node's containers
  local cg id pid
  for cg in $(node_cgroups); do
    for id in $containers; do
      [[ -d "$cg/$id" ]] || continue
      find "$cg/$id" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
    done
  done
}
kill_cgroup_processes
stop_pidfile "$CONTAINERD_PID" containerd
shims() {  # the shims of this node's containerd (their command line names its socket)
  local pid
  for pid in $(pids_naming "$CONTAINERD_SOCK"); do
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == containerd-shim* ]]; then echo "$pid"; fi
  done
}
for signal in TERM KILL; do
  for pid in $(shims); do kill "-$signal" "$pid" 2>/dev/null || true; done
  [[ -z "$(shims)" ]] && break
  sleep 0.3
done
# A killed shim leaves its socket where containerd 1.6 puts every shim's: /run/containerd/s/<sha256 of
# containerd's socket/namespace/container id>.
for id in $containers; do
  rm -f "/run/containerd/s/$(printf '%s' "$CONTAINERD_SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
done
# A kubelet or containerd of this node whose pidfile was lost (its command line names the node's folder).
for pid in $(pids_naming "$NODE_STATE/"); do
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in kubelet|containerd|containerd-shim*) ;; *) continue ;; esac
  log "stopping pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
  kill -KILL "$pid" 2>/dev/null || true
done

# 3. Mounts under the node's folders, deepest first: container root filesystems, the pods' volumes
#    (tmpfs, subPath bind mounts of host folders), shm, and the pods' network namespaces (which lie
#    under containerd's state: netns_mounts_under_state_dir), whose veths go with them.
for attempt in 1 2 3 4 5; do
  left="$(node_mounts)"
  [[ -z "$left" ]] && break
  while read -r mnt; do
    umount "$mnt" 2>/dev/null || { [[ $attempt -ge 3 ]] && umount -l "$mnt" 2>/dev/null; } || true
  done <<< "$left"
  kill_cgroup_processes
  sleep 0.2
done
left="$(node_mounts)"
if [[ -n "$left" ]]; then
  log "still mounted under $NODE_STATE or $CONTAINERD_ROOT (nothing deleted, to keep the host folders they show safe):"
  echo "$left" >&2
  exit 1
fi

# 4. Network: the bridge (its veths went with the namespaces) and the node's address.
ip link show "$REAL_NODE_BRIDGE" >/dev/null 2>&1 && ip link del "$REAL_NODE_BRIDGE"
[[ "$(link_owner)" == "$STATE" ]] && ip link del "$REAL_NODE_LINK"

# 5. The kubelet's firewall chains (makeIPTablesUtilChains), in every table and both families, with
#    the rules that jump to them. They are the kubelet's own names; another Kubernetes node on this
#    machine would make them again within a minute.
for family in iptables ip6tables; do
  command -v "$family-save" >/dev/null || continue
  for table in filter nat mangle raw; do
    rules="$("$family-save" -t "$table" 2>/dev/null || true)"
    for chain in "${KUBELET_CHAINS[@]}"; do
      grep -q "^:$chain " <<< "$rules" || continue
      log "removing the kubelet's $family chain $chain (table $table)"
      grep -E -- "^-A [^ ]+ .*-j $chain( |$)" <<< "$rules" | while read -r rule; do
        # shellcheck disable=SC2086 # the rule is re-split into iptables arguments as iptables-save wrote it
        eval "$family -t $table -D ${rule#-A }" 2>/dev/null || true
      done
      "$family" -t "$table" -F "$chain" 2>/dev/null || true
      "$family" -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
done

# 6. The containers' cgroups (runc removes a container's own when it deletes it; a killed shim does
#    not), then their parent once empty (another containerd's containers would keep it).
for cg in $(node_cgroups); do
  for id in $containers; do
    [[ -d "$cg/$id" ]] && { find "$cg/$id" -depth -type d -exec rmdir {} + 2>/dev/null || log "cgroup $cg/$id could not be removed"; }
  done
  rmdir "$cg" 2>/dev/null || log "cgroup $cg is not empty: not ours alone, left as it is"
done

# 7. Host files the kubelet wrote: its links to container logs, and the folders it created.
if [[ -d /var/log/containers ]]; then
  find /var/log/containers -maxdepth 1 -type l -lname "$NODE_STATE/*" -delete
fi
# libcni's cache of the node's network attachments (its own, and the loopback one per sandbox).
rm -f "$CNI_CACHE/results/$REAL_NODE_CNI_NETWORK-"*
for id in $containers; do rm -f "$CNI_CACHE/results/"*"-$id-"*; done
if [[ -f "$HOST_DIRS_CREATED" ]]; then
  while read -r dir; do rmdir "$dir" 2>/dev/null || true; done < "$HOST_DIRS_CREATED"
fi

# 8. The kernel settings the kubelet changed, as they were before it started.
if [[ -f "$SYSCTL_BEFORE" ]]; then
  while IFS='=' read -r key value; do
    file="/proc/sys/${key//.//}"
    [[ "$(cat "$file")" == "$value" ]] || echo "$value" > "$file" || log "could not restore $key=$value"
  done < "$SYSCTL_BEFORE"
fi

# 9. The Node object, when the control plane still runs (its pods are then deleted by the pod GC).
if apiserver_ready; then kubectl delete node "$REAL_NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true; fi

# 10. The node's files, except its logs and status (the reason a start failed points at them).
if [[ -d "$NODE_STATE" ]]; then
  find "$NODE_STATE" -mindepth 1 -maxdepth 1 ! -name '*.log' ! -name status -exec rm -rf {} +
  printf 'state=down\nreason=stopped by localcluster/node/down.sh (make cluster-up starts it again)\nseconds=\n' > "$NODE_STATUS"
fi
log "real node stopped"
