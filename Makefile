# kubectl-mesh. Two commands set everything up on a fresh Debian machine, as root:
#   make demo   lab up, probe installed, a measured run, results shown
#   make test   unit tests, then the integration tests against the lab
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
LDFLAGS := -s -w -X github.com/kubectl-mesh/kubectl-mesh/internal/version.Version=$(VERSION)
# Static binaries: they go into images FROM scratch.
export CGO_ENABLED := 0
# The lab finds our checkout and binaries through these.
export MESH_LAB_REPO := $(CURDIR)
export MESH_LAB_BIN_DIR := $(BIN)
LAB := $(BIN)/mesh-lab

.PHONY: all deps build generate images kube caddy lab-up lab-down test unit e2e bench bench-probe bench-loadgen bench-lab dist demo fmt vet clean

all: build

deps:
	bash scripts/deps.sh

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# Rebuilds committed generated files (bpf2go output, vmlinux.h); needs clang and bpftool.
generate: deps
	$(GO) generate ./bpf/...

# Kubernetes and CoreDNS from source, cached by version under /var/cache/kubectl-mesh-lab.
kube: build
	$(LAB) build

# Optional: Caddy for the mesh-caddy image (a third-party proxy in the sidecar position, see
# lab/sidecar), cached by version like CoreDNS; `make images` includes it once it is built.
caddy: build
	$(LAB) build caddy

images: build kube
	$(LAB) images

lab-up: deps build
	$(LAB) up

lab-down: build
	$(LAB) down

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# The packages whose tests hold the probe's real-kernel measurements to a ground truth (latency
# against the proxy fixture's own account, CPU against the cgroup's) run after the others and one at
# a time: beside another package's tests on two cores their truth and the probe's drift apart by tens
# of microseconds (a CI run failed so).
TIMED := github.com/kubectl-mesh/kubectl-mesh/bpf github.com/kubectl-mesh/kubectl-mesh/probe/agent
unit: build
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -x -F $(foreach p,$(TIMED),-e $(p)))
	$(GO) test -count=1 -p 1 $(TIMED)

# Integration tests bring the lab up and down themselves; one package at a time, since they
# share the one lab.
e2e: deps build kube
	$(GO) test -count=1 -p 1 -tags e2e -timeout 60m ./e2e/...

test: deps vet unit e2e

# Go benchmarks of the packages, then the lab's and the load generator's side-by-side figures.
# docs/benchmarks.md records the latest numbers and the exact commands.
bench: build kube
	$(GO) test -run '^$$' -bench . -skip 'ProbeOverhead|ProbeLatency|ProbeIdle' -benchtime 2s -count 5 ./... | tee bench.out
	$(MAKE) bench-probe bench-lab bench-loadgen

# The probe's accuracy table (against the proxy fixture's own records), its cost at 2000 rps (costs
# and maximum throughput; then the client's latency side by side) and its CPU with no traffic
# (docs/benchmarks.md, "Probe"). Root. These whole-experiment benchmarks are skipped by `bench`,
# whose -count 5 would repeat each.
bench-probe: build
	$(GO) test -count=1 -run 'TestEndToEnd(Outbound)?ProxyAddedLatency' -v ./probe/agent > bench-probe.out 2>&1 || { tail -50 bench-probe.out; exit 1; }
	@sed -n 's/^ *//; /^accuracy, ms/p; /^|/p; /^--- .*Outbound.*\/delay/p; /outbound proxy added p50/p; /growth over delay 0/p' bench-probe.out
	$(GO) test -count=1 -run '^$$' -bench ProbeOverhead -benchtime 1x ./probe/agent | tee -a bench-probe.out
	$(GO) test -count=1 -run '^$$' -bench ProbeLatency -benchtime 1x ./probe/agent | tee -a bench-probe.out
	$(GO) test -count=1 ./probe/agent -run '^$$' -bench ProbeIdle -benchtime 1x -args -overhead.reps=3 | tee -a bench-probe.out

bench-lab: build kube
	bash scripts/bench-lab.sh 3
	$(GO) test -count=1 -tags e2e -run '^$$' -bench WebhookAdmission -benchtime 1x ./e2e/

bench-loadgen: build
	bash scripts/bench-loadgen.sh

# Release archives (linux/darwin/windows x amd64/arm64, with LICENSE) and dist/mesh.yaml for
# krew-index. `make dist VERSION=v0.2.0` overrides krew.yaml's version.
dist:
	bash scripts/dist.sh

demo: deps build
	bash scripts/demo.sh

clean:
	rm -rf $(BIN) bench.out bench-probe.out dist
