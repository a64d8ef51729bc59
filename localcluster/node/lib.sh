# Shared by localcluster/node/{up,down,leftovers}.sh: where the real node's daemons and files live.
# The node's facts (name, addresses, bridge, cgroup) come from localcluster/config/node.env via lib.sh.
# shellcheck shell=bash
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

KUBELET_BIN="$K8S_DIR/bin/kubelet"
PAUSE_BIN="$PAUSE_DIR/bin/pause"
KUBELET_PID="$NODE_STATE/kubelet.pid"
KUBELET_LOG="$NODE_STATE/kubelet.log"
CONTAINERD_PID="$NODE_STATE/containerd.pid"
CONTAINERD_LOG="$NODE_STATE/containerd.log"
CONTAINERD_SOCK="$NODE_STATE/containerd/containerd.sock"
# containerd's root (content store, unpacked layers, metadata) is a machine cache like the registry's
# storage: an image an earlier node pulled is then pulled again as a manifest alone (jobs-cpu: 1 s
# instead of 33 s). Only images live there across nodes: down.sh deletes every container, and up.sh
# forgets every image's names before the kubelet starts (forget_image_names). Only one real node runs
# on a machine at a time (the interface's alias), so one root serves them all.
CONTAINERD_ROOT="${TRAINPIPE_CONTAINERD_ROOT:-${TRAINPIPE_CACHE:-$HOME/.cache/trainpipe}/containerd}"
# The dummy interface's alias names the cluster that owns the machine's real node.
LINK_OWNER="trainpipe:$STATE"
# Kernel settings the kubelet changes at start (vm.overcommit_memory=1, kernel.panic=10, ...): their
# values before it ran are kept in $SYSCTL_BEFORE and put back by down.sh.
NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
SYSCTL_BEFORE="$NODE_STATE/sysctl.before"
# Host folders the node creates when missing (the kubelet's /var/log/containers of links to its pod
# logs; libcni's cache /var/lib/cni/results, which containerd 1.6 cannot move): the ones it created
# are listed here, deepest first, and removed by down.sh once empty.
HOST_DIRS_CREATED="$NODE_STATE/host-dirs.created"
# The chains a kubelet adds to the host's firewall (kubeletConfig makeIPTablesUtilChains; off here,
# removed anyway should an older config have made them).
KUBELET_CHAINS=(KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT)
# Debian packages the node needs (installed by hack/apt-install.sh when missing) and a command each gives.
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables iproute2 openssl)
CNI_BIN=/usr/lib/cni
CNI_CACHE=/var/lib/cni

node_ctr() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# The cluster state folder that owns the machine's real node (the dummy link's alias), or nothing.
link_owner() {
  local alias
  alias="$(cat "/sys/class/net/$REAL_NODE_LINK/ifalias" 2>/dev/null || true)"
  echo "${alias#trainpipe:}"
}

# Run by up.sh between containerd's start and the kubelet's. A cached image's names came from an
# earlier cluster's registry (another port) or from this one before a push: the kubelet, whose pull
# policy is IfNotPresent for a tag, would run such an image without asking the registry what the tag
# names now. So every name goes and each image keeps only the id reference containerd's CRI gives it
# (sha256:<config digest>), which holds its content and layers; the next pull of the same image finds
# them and fetches only the manifest. Images that had no name at this start (none of the last node's
# pulls) are deleted, so the cache holds what the last node used, not every build.
forget_image_names() {
  local listing
  listing="$(node_ctr images list 2>/dev/null | tail -n +2)" || return 0
  local -A named=()
  local ref digest
  while read -r ref _ digest _; do
    [[ -n "$ref" && "$ref" != sha256:* ]] && named[$digest]=1
  done <<< "$listing"
  while read -r ref _ digest _; do
    [[ -z "$ref" ]] && continue
    if [[ "$ref" != sha256:* || -z "${named[$digest]:-}" ]]; then node_ctr images remove "$ref" >/dev/null 2>&1 || true; fi
  done <<< "$listing"
}

# Deletes every container record (and its writable layer) from containerd, whose root outlives the node.
delete_node_containers() {
  local id
  for id in "$@"; do node_ctr containers delete "$id" >/dev/null 2>&1 || true; done
}

# Mounts of the node, deepest first: under its state folder and under containerd's cached root.
node_mounts() { { mounts_under "$NODE_STATE"; mounts_under "$CONTAINERD_ROOT"; } | sort -r -u; }

# Ids of the node's containers (pods' sandboxes too): from containerd while it answers, and from the
# task folders in its state (there while a container runs, containerd up or not).
node_container_ids() {
  { if [[ -S "$CONTAINERD_SOCK" ]]; then node_ctr containers list -q 2>/dev/null || true; fi
    ls "$NODE_STATE/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null || true; } | sort -u
}

# Each cgroup hierarchy's folder for the node's pods (one per v1 controller, or the v2 one).
node_cgroups() {
  local root
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [[ -d "$root/$REAL_NODE_CGROUP" ]] && echo "$root/$REAL_NODE_CGROUP"
  done
  return 0
}

# Pids (other than this shell's) whose command line names $1: the node's daemons and shims.
pids_naming() {
  grep -laF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | grep -vxE "$$|$BASHPID" || true
}
