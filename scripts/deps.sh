#!/usr/bin/env bash
# Installs the Debian packages kubectl-mesh's lab, probe build and tests need. Idempotent: it
# asks apt only for what is missing, so a warm run costs a dpkg query.
set -euo pipefail

packages=(
  etcd-server                  # the lab's etcd
  containerd runc              # the lab's container runtime
  containernetworking-plugins  # bridge, host-local, portmap, loopback CNI plugins
  iproute2 iptables conntrack  # network namespace, kube-proxy's rules and conntrack
  util-linux                   # nsenter
  clang llvm libbpf-dev bpftool # `make generate`: BPF C -> objects, vmlinux.h
  ca-certificates git make zip # zip: the Windows release archive (make dist)
)

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: must run as root to install Debian packages (try: sudo make deps)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's containerd package ships a service; nothing here should start it on the host.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if ((created_policy)); then rm -f "$policy"; fi
fi

if ! command -v go >/dev/null; then
  echo "deps: Go is required (1.26 or newer) and must be on PATH" >&2
  exit 1
fi

# Service traffic between pods on one bridge must pass iptables; the lab sets the sysctl in its
# own namespace, but the module must be there (it is built in on some kernels).
if [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  modprobe br_netfilter 2>/dev/null || echo "deps: warning: br_netfilter not available; Services may not work in the lab" >&2
fi
echo "deps: ok"
