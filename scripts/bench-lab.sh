#!/usr/bin/env bash
# Measures the lab: warm lab-up (binaries cached), idle memory after settling, and lab-down,
# over N rounds; prints each round and the medians. Usage: scripts/bench-lab.sh [rounds]
# The memory figure is the sum of the resident set sizes of every lab process: the components
# (by their PID files), containerd's shims and the pods' processes (by the PIDs containerd
# recorded), read from /proc/PID/status (VmRSS).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
lab=bin/mesh-lab
state=${MESH_LAB_RUN_DIR:-/run/kubectl-mesh-lab}

rss_total_kib() {
  local total=0 pid
  local pids=()
  for f in "$state"/pids/*.pid; do pids+=("$(cut -d' ' -f1 "$f")"); done
  for f in "$state"/containerd/io.containerd.runtime.v2.task/k8s.io/*/{shim,init}.pid; do
    [[ -f $f ]] && pids+=("$(cat "$f")")
  done
  for pid in "${pids[@]}"; do
    local kb
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

$lab down >/dev/null
$lab up >/dev/null   # warm the cache (and build anything missing) outside the measurement
$lab down >/dev/null
ups=() downs=() mems=()
for i in $(seq 1 "$rounds"); do
  s=$(date +%s.%N); $lab up >/dev/null; e=$(date +%s.%N)
  up=$(awk "BEGIN{print $e-$s}")
  sleep 30   # let the cluster settle to idle
  mem=$(( $(rss_total_kib) / 1024 ))
  s=$(date +%s.%N); $lab down >/dev/null; e=$(date +%s.%N)
  down=$(awk "BEGIN{print $e-$s}")
  printf 'round %d: lab-up %.1fs  idle RSS %d MiB  lab-down %.1fs\n' "$i" "$up" "$mem" "$down"
  ups+=("$up") downs+=("$down") mems+=("$mem")
done
printf 'median: lab-up %.1fs  idle RSS %s MiB  lab-down %.1fs  (%d rounds)\n' \
  "$(printf '%s\n' "${ups[@]}" | median)" "$(printf '%s\n' "${mems[@]}" | median)" "$(printf '%s\n' "${downs[@]}" | median)" "$rounds"
