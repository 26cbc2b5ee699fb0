package perf

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

func testInputs() Inputs {
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	res := &loadgen.Result{
		Kind: loadgen.KindResult, StartTime: t0, EndTime: t0.Add(10 * time.Second), Requests: 1000, ActualQPS: 100,
		LatencyMs: loadgen.LatencyMs{Min: 0.2, Avg: 0.9, P50: 0.8, P90: 1.2, P99: 2.5, Max: 4},
	}
	cpu, per1k := 30.0, 12.0
	o := smps.NewOverheadReport("r1", t0, t0.Add(20*time.Second))
	stats := smps.OverheadStats{Requests: 1000, RPS: 50, ProxyAddedLatencyMs: &smps.TailLatencyMs{P50: 0.1, P90: 0.2, P99: 0.4, P999: 0.5, Max: 0.6},
		ProxyCPUMillicores: &cpu, ProxyCPUMsPer1000Requests: &per1k}
	o.Pods = []smps.PodOverhead{{Namespace: "demo", Name: "echo-1", ProxyContainer: "istio-proxy", OverheadStats: stats, Probe: smps.ProbeHealth{Status: smps.ProbeOK}}}
	o.Namespaces = []smps.NamespaceOverhead{{Namespace: "demo", Pods: 1, OverheadStats: stats}}
	return Inputs{
		Record: &runstore.Record{Name: "r1", Namespace: "demo", Labels: map[string]string{"suite": "x"}},
		Load:   loadgen.Config{URL: "http://echo.demo.svc:80/", Protocol: loadgen.HTTP, QPS: 100, Connections: 4, Duration: 10 * time.Second},
		Result: res, Overhead: o,
		Mesh:   Mesh{Type: smps.MeshTypeIstio, Name: "istio", ProxyContainer: "istio-proxy", ProxyImage: "docker.io/istio/proxyv2:1.28.0", Sidecars: 1},
		Env:    &smps.EnvironmentConfig{SMPVersion: smps.Version, KubernetesVersion: "v1.37.2", Nodes: []smps.Node{{Type: "linux/amd64", Cores: 2, MemMB: 24000}}},
		TestID: "t", ResultID: "r", MeshConfigID: "m", EnvID: "e",
	}
}

func TestBuildDocuments(t *testing.T) {
	docs, err := BuildDocuments(testInputs())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DocResult, DocTestConfig, DocMeshConfig, DocEnvironment, DocMeshery, DocOverhead, DocLoad} {
		if len(docs[name]) == 0 {
			t.Errorf("%s missing", name)
		}
	}
	var mesh smps.ServiceMeshConfig
	if err := smps.Decode(bytes.NewReader(docs[DocMeshConfig]), &mesh); err != nil {
		t.Fatal(err)
	}
	// 12 CPU ms per 1000 requests, 1000 requests over the 10 s run: 1.2 CPU ms/s, 1 millicore;
	// 1000 requests in 10 s: 100 rps, whatever the probes' (longer) window.
	if mesh.MeshType != smps.MeshTypeIstio || mesh.ProxyBuild != "1.28.0" || mesh.Sidecar.Count != 1 || mesh.Sidecar.RPS != 100 || mesh.Sidecar.CPUMcores != 1 {
		t.Errorf("mesh config = %+v sidecar %+v", mesh, mesh.Sidecar)
	}
	var res smps.PerformanceTestResult
	if err := smps.Decode(bytes.NewReader(docs[DocResult]), &res); err != nil {
		t.Fatal(err)
	}
	if res.LatenciesMs.P99 != 2.5 || res.DetailsURI != DocOverhead || res.TestID != "t" || res.EnvID != "e" || res.MeshConfigID != "m" || res.Labels["suite"] != "x" {
		t.Errorf("result = %+v", res)
	}
	if !strings.Contains(string(docs[DocMeshery]), "type: 3") {
		t.Errorf("meshery test config must name the mesh by its integer type:\n%s", docs[DocMeshery])
	}
	if !strings.Contains(string(docs[DocOverhead]), "resultId: r") {
		t.Errorf("overhead report must link back to the result:\n%s", docs[DocOverhead])
	}
}

func TestBuildDocumentsRefusesInvalid(t *testing.T) {
	in := testInputs()
	in.Overhead.Namespaces[0].Pods = 2 // disagrees with the pod entries
	if _, err := BuildDocuments(in); err == nil || !strings.Contains(err.Error(), DocOverhead) {
		t.Errorf("an invalid overhead report must be refused, got %v", err)
	}
}

func TestDetectMeshNone(t *testing.T) {
	m := DetectMesh([]corev1.Pod{{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}})
	if m.Name != "" || m.Sidecars != 0 || m.Type != smps.MeshTypeInvalid {
		t.Errorf("DetectMesh(no proxy) = %+v", m)
	}
	m = DetectMesh([]corev1.Pod{{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "linkerd-proxy", Image: "cr.l5d.io/linkerd/proxy:edge-25.1.1"}}}}})
	if m.Type != smps.MeshTypeLinkerd || m.ProxyImage == "" || m.Sidecars != 1 {
		t.Errorf("DetectMesh(linkerd) = %+v", m)
	}
}
