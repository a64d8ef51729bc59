#!/usr/bin/env bash
# Measures the local cluster and writes the `cluster` section of BENCHMARKS.md:
# build times (from the cached build's records, or a real cold build with --cold), warm start time
# (cluster-down, then cluster-up with binaries cached) and each process's resident memory.
#
# Usage: localcluster/bench.sh [--cold]
#   --cold  also builds everything once from empty Go module/build caches in a temporary folder
#           (downloads ~600 MB of modules, ~6-10 min of 2 cores), and reports that time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The last cold build's result is kept next to the binaries, so later runs can still report it.
record="$TOOLS/cold-build.txt"
if [[ "${1:-}" == "--cold" ]]; then
  scratch="$(mktemp -d)"
  log "cold build in $scratch (empty GOMODCACHE, GOCACHE and tool cache)"
  s=$(date +%s)
  GOMODCACHE="$scratch/mod" GOCACHE="$scratch/cache" TRAINPIPE_TOOLS="$scratch/tools" "$HACK/build-tools.sh"
  cold=$(( $(date +%s) - s ))
  per=$(for c in kubernetes etcd kwok helm; do printf '%s %ss, ' "$c" "$(cat "$scratch"/tools/$c-*/build-seconds)"; done)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "${cold}s wall on $(date -u +%Y-%m-%d), module downloads included (compile + link: ${per%, }; load average after: $load)" > "$record"
  chmod -R u+w "$scratch" && rm -rf "$scratch"
fi
cold_line="$(cat "$record" 2>/dev/null || echo "not measured yet on this machine (run localcluster/bench.sh --cold)")"

cached_start=$(date +%s%N)
"$HACK/build-tools.sh" 2>/dev/null
cached_ms=$(( ($(date +%s%N) - cached_start) / 1000000 ))

"$LOCALCLUSTER/down.sh" 2>/dev/null || true
"$LOCALCLUSTER/up.sh" >/dev/null
warm="$(cat "$STATE/last-start-seconds")"
sleep 20  # let the controllers settle before reading memory

mem_rows=""
total=0
pids="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids"
for entry in etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller executor; do
  if [[ "$entry" == executor ]]; then file="$EXECUTOR_PID"; else file="$pids/$entry.pid"; fi
  rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$(cat "$file")/status")
  total=$(( total + rss_kb ))
  mem_rows+="| $entry | $(( rss_kb / 1024 )) MiB |"$'\n'
done

build_rows=""
for c in kubernetes etcd kwok helm; do
  dir="$TOOLS/$c-$(source "$HACK/versions.env"; v="${c^^}_VERSION"; echo "${!v}")"
  build_rows+="| $c | $(cat "$dir/build-seconds")s | $(du -sh "$dir/bin" | cut -f1) |"$'\n'
done

"$HACK/write-section.py" "$REPO/BENCHMARKS.md" cluster <<MD
## Local control plane (cluster tier)

Measured by \`localcluster/bench.sh${1:+ $1}\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB, $(go env GOVERSION).
Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION.

| component | compile + link of the cached binaries (modules already downloaded) | binaries |
| --- | --- | --- |
${build_rows}
* Cold build from empty Go caches: ${cold_line}.
* \`hack/build-tools.sh\` (\`make cluster-build\`) with everything cached: ${cached_ms} ms (stamp checks only).
* Warm start (\`make cluster-up\`, binaries cached, fresh etcd): ${warm}s to 4 Ready nodes and a running executor.

Resident memory about 20 s after start (idle, 4 simulated nodes):

| process | RSS |
| --- | --- |
${mem_rows}| **total** | **$(( total / 1024 )) MiB** |
MD
log "wrote the cluster section of $REPO/BENCHMARKS.md"
