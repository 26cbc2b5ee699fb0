#!/usr/bin/env bash
# The main job (make demo): the lab up, kubectl-mesh's probe injector installed, a demo
# application behind a sidecar proxy (the lab's fixture: a known added delay and CPU cost, and
# an Istio-style REDIRECT), a measured run with a baseline past the proxy, then the overhead
# table, the SMPS files and the HTML report. Settings come from the environment:
#   DEMO_DELAY (1ms)  DEMO_CPU (200us)  DEMO_SERVICE_TIME (1ms)  DEMO_QPS (200)  DEMO_DURATION (20s)
set -euo pipefail
cd "$(dirname "$0")/.."
lab=bin/mesh-lab
mesh=bin/kubectl-mesh
ns=kubectl-mesh-demo
delay=${DEMO_DELAY:-1ms}
cpu=${DEMO_CPU:-200us}
service_time=${DEMO_SERVICE_TIME:-1ms}
qps=${DEMO_QPS:-200}
duration=${DEMO_DURATION:-20s}
out=${DEMO_OUTPUT_DIR:-kubectl-mesh-runs}
start=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

step "lab up (a real single-node Kubernetes in its own network namespace)"
$lab up
export KUBECONFIG=$($lab kubeconfig)
k=${MESH_LAB_CACHE_DIR:-/var/cache/kubectl-mesh-lab}/kube-v1.37.2/kubectl

step "kubectl mesh version"
$mesh version

step "kubectl mesh probe install"
$mesh probe install --timeout 3m

step "namespace $ns, opted in with kubectl mesh probe enable"
$k create namespace $ns --dry-run=client -o yaml | $k apply -f - >/dev/null
$mesh probe enable -n $ns

step "demo app: mesh-echo ($service_time service time) behind the lab sidecar (+$delay, $cpu CPU per request)"
$lab demo-app -n $ns --service-time "$service_time" --delay "$delay" --cpu-per-request "$cpu"
pod=$($k -n $ns get pods -l app=echo -o jsonpath='{.items[0].metadata.name}')
echo "pod $pod: init containers [$($k -n $ns get pod "$pod" -o jsonpath='{.spec.initContainers[*].name}')], containers [$($k -n $ns get pod "$pod" -o jsonpath='{.spec.containers[*].name}')]"

step "kubectl mesh perf run svc/echo:http --baseline svc/echo:direct ($qps qps, $duration)"
name=demo-$(date -u +%Y%m%d-%H%M%S)
$mesh perf run svc/echo:http -n $ns --baseline svc/echo:direct --qps "$qps" --connections 4 \
  --duration "$duration" --warmup 2s --name "$name" --output-dir "$out"

step "the sidecar's own account of the same requests (ground truth, GET :15000/stats)"
$k get --raw "/api/v1/namespaces/$ns/pods/$pod:15000/proxy/stats" |
  python3 -c 'import json,sys; s=json.load(sys.stdin); r=s["residence_ms"]; print("sidecar residence: %d requests, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms; configured delay %s ms + %s ms CPU" % (s["requests"], r["p50"], r["p90"], r["p99"], s["config"]["delay_ms"], s["config"]["cpu_per_request_ms"]))'

step "kubectl mesh overhead -n $ns (live, from the probes)"
$mesh overhead -n $ns --window 1m

step "results"
echo "SMPS documents and the overhead report:"
ls -1 "$out/$name"/*.yaml | sed 's/^/  /'
echo "HTML report (opens without network): $(realpath "$out/$name/report.html")"
echo "stored in the cluster: $mesh perf list -n $ns ; $mesh perf get $name -n $ns"
printf '\ndemo took %ss. The lab stays up: export KUBECONFIG=%s ; make lab-down removes it.\n' "$(( $(date +%s) - start ))" "$KUBECONFIG"
