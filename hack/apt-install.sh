#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet, and nothing else.
#
# Usage: hack/apt-install.sh PKG...        (as root; exits 0 at once when every PKG is installed)
#
# Used by the local cluster's real node (localcluster/node/up.sh: containerd, runc, CNI plugins,
# iptables, iproute2). `apt-get update` runs once, and only when something is missing. Packages that
# ship a service (containerd) must not start it: the node starts its own containerd with its own
# config, so a /usr/sbin/policy-rc.d that answers 101 ("action forbidden") is in place while apt-get
# runs, and removed afterwards when this script put it there.
set -euo pipefail

log() { printf '[apt-install] %s\n' "$*" >&2; }

(($#)) || { log "usage: $0 PKG..."; exit 2; }
missing=()
for pkg in "$@"; do
  # dpkg-query prints "install ok installed" only for a package that is fully installed.
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

if [[ "$(id -u)" != 0 ]]; then
  log "missing ${missing[*]}, and installing needs root: run 'sudo apt-get install ${missing[*]}'"
  exit 1
fi
command -v apt-get >/dev/null || { log "missing ${missing[*]}, and this machine has no apt-get: install them by hand"; exit 1; }

policy=/usr/sbin/policy-rc.d
placed=""
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# Written by trainpipe hack/apt-install.sh while it runs: no service starts on install.\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  placed=1
fi
cleanup() { if [[ -n "$placed" ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "installed ${missing[*]}"
