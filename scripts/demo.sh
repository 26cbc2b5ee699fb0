#!/usr/bin/env bash
# The main job, as far as it is built: the lab up, the probe injector installed with
# `kubectl mesh probe install`, a workload in an opted-in namespace (the probe is injected next to
# it), real load from mesh-loadgen in the cluster, and the probe's own measurement of the window.
# Still to come (issue 7): a sidecar proxy in front of the workload, `kubectl mesh perf run
# --baseline`, the SMPS files and the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=bin/mesh-lab
$lab up
export KUBECONFIG=$($lab kubeconfig)
k=/var/cache/kubectl-mesh-lab/kube-v1.37.2/kubectl
ns=kubectl-mesh-demo

step() { printf '\n== %s\n' "$*"; }

step "kubectl mesh version"
bin/kubectl-mesh version

step "kubectl mesh probe install"
bin/kubectl-mesh probe install --timeout 3m

step "a demo namespace opted in, with mesh-echo (1 ms service time) behind a Service"
$k create namespace $ns --dry-run=client -o yaml | $k apply -f - >/dev/null
$k label namespace $ns kubectl-mesh.io/probe=enabled --overwrite >/dev/null
$k -n $ns apply -f - <<YAML >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: kubectl-mesh.local/mesh-echo:lab
        args: [serve, --listen=:8080, --service-time=1ms]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
$k -n $ns rollout status deployment/echo --timeout=180s
pod=$($k -n $ns get pods -l app=echo -o jsonpath='{.items[0].metadata.name}')
echo "pod $pod containers: $($k -n $ns get pod "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')"

step "load: mesh-loadgen in the cluster, 200 qps for 20 s, 4 connections"
$k -n $ns delete job load --ignore-not-found >/dev/null
$k -n $ns create job load --image=kubectl-mesh.local/mesh-loadgen:lab -- \
  /bin/mesh-loadgen --url http://echo.$ns.svc.cluster.local/ --qps 200 --connections 4 --duration 20s --output -
$k -n $ns wait --for=condition=complete job/load --timeout=120s
$k -n $ns logs job/load | tail -n 1 | head -c 2000; echo

step "the probe's view of the last minute (through the API server's pod proxy)"
$k get --raw "/api/v1/namespaces/$ns/pods/$pod:9464/proxy/v1/snapshot?window=1m" | head -c 4000; echo

printf '\nThe lab stays up: export KUBECONFIG=%s ; make lab-down removes it.\n' "$KUBECONFIG"
