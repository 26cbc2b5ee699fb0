#!/usr/bin/env bash
# Measures what a probe costs in a pod with no traffic at all: the CPU time (user + system, from
# /proc/PID/stat) of mesh-probe attached in a network namespace of its own (lo and a veth end
# named eth0, no addresses, nothing sent), over 30 s after 5 s to start. With a second binary
# the two alternate, round by round, so that the machine's drift falls on both.
# Usage (root): scripts/bench-probe-idle.sh [rounds] [probe-binary [other-probe-binary]]
# The default binary is this tree's cmd/mesh-probe, built as `make build` does.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bins=("${@:2}")
if [[ ${#bins[@]} -eq 0 ]]; then
  go build -trimpath -ldflags "-s -w" -o bin/mesh-probe ./cmd/mesh-probe
  bins=(bin/mesh-probe)
fi
ns=kubectl-mesh-idle-$$
tick=$(getconf CLK_TCK)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name eth1
ip -n "$ns" link set eth0 up
ip -n "$ns" link set eth1 up

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # binary
  local log a b
  log=$(mktemp)
  "$1" --netns "/run/netns/$ns" --app-ports 8080 --listen "127.0.0.1:$((20000 + $$ % 10000))" >"$log" 2>&1 &
  pid=$!
  sleep 5
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log" >&2
    echo "$1 exited" >&2
    exit 1
  fi
  a=$(cpu_ticks "$pid")
  sleep 30
  b=$(cpu_ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  rm -f "$log"
  awk -v d=$((b - a)) -v t="$tick" -v bin="$1" 'BEGIN {printf "%-28s %6.0f ms of CPU in 30 s = %.2f%% of a core\n", bin, 1000 * d / t, 100 * d / t / 30}'
}

for i in $(seq 1 "$rounds"); do
  if ((i % 2)); then order=("${bins[@]}"); else order=(); for ((j = ${#bins[@]} - 1; j >= 0; j--)); do order+=("${bins[j]}"); done; fi
  for bin in "${order[@]}"; do measure "$bin"; done
done
