#!/usr/bin/env bash
# The main job: lab up, probe installed, a measured run, results shown.
# Today it brings the lab up and shows it working; the probe, webhook and plugin steps are added
# as their issues land (see docs/roadmap in README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
lab=bin/mesh-lab
$lab up
kubeconfig=$($lab kubeconfig)
kubectl=/var/cache/kubectl-mesh-lab/kube-v1.37.2/kubectl
echo
echo "== the lab's node and system pods"
$kubectl --kubeconfig "$kubeconfig" get nodes -o wide
$kubectl --kubeconfig "$kubeconfig" get pods -A -o wide
echo
echo "== kubectl mesh version"
bin/kubectl-mesh --kubeconfig "$kubeconfig" version
echo
echo "Next steps of the demo (not yet built): kubectl mesh probe install; a demo namespace with"
echo "mesh-echo behind a sidecar; kubectl mesh perf run --baseline; the overhead table and SMPS files."
echo "The lab stays up: export KUBECONFIG=$kubeconfig ; make lab-down removes it."
