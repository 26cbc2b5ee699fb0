package smps

import "time"

// One coherent example run: an Istio mesh measured with fortio, its SMPS
// documents linked by id, and the companion OverheadReport named by the
// result's details_uri. Each constructor returns a fresh value, so tests may
// mutate it.

const (
	exampleRunID        = "run-20250601t120000z-istio"
	exampleTestID       = "test-fortio-http-1000rps"
	exampleResultID     = "result-" + exampleRunID
	exampleMeshConfigID = "meshcfg-istio-1-26-1"
	exampleEnvID        = "env-kind-3node"
	exampleReportFile   = exampleRunID + ".overhead.yaml"
)

var (
	exampleStart = time.Date(2025, 6, 1, 12, 0, 0, 125000000, time.UTC)
	exampleEnd   = exampleStart.Add(exampleWindow)
)

const exampleWindow = 60 * time.Second

// Derived figures are computed the way a producer would, so the example is
// internally consistent.
func rps(requests int64) float64 { return float64(requests) / exampleWindow.Seconds() }

func cpuMsPer1000(millicores float64, requests int64) *float64 {
	return f64(millicores * exampleWindow.Seconds() / float64(requests) * 1000)
}

func exampleTestConfig() *PerformanceTestConfig {
	return &PerformanceTestConfig{
		SMPVersion: Version,
		ID:         exampleTestID,
		Name:       "fortio HTTP/1.1 1000 rps",
		Labels:     map[string]string{"kubectl-mesh.io/run": exampleRunID},
		Clients: []Client{{
			Internal:      true,
			LoadGenerator: "fortio",
			Protocol:      ProtocolHTTP,
			Connections:   16,
			RPS:           1000,
			Headers:       map[string]string{"X-Request-Source": "kubectl-mesh"},
			Body:          `{"payload":"` + "0123456789abcdef" + `"}`,
			ContentType:   "application/json",
			EndpointURLs:  []string{"http://echo.mesh-test.svc.cluster.local:8080/echo?size=1024&delay=0"},
		}},
		Duration: "60s",
	}
}

func exampleResult() *PerformanceTestResult {
	return &PerformanceTestResult{
		SMPVersion:   Version,
		ID:           exampleResultID,
		Labels:       map[string]string{"kubectl-mesh.io/run": exampleRunID},
		StartTime:    NewTimestamp(exampleStart),
		EndTime:      NewTimestamp(exampleEnd),
		LatenciesMs:  &Latency{Min: 0.412, Average: 1.873, P50: 1.604, P90: 2.911, P99: 6.25, Max: 21.7},
		ActualQPS:    999.6,
		DetailsURI:   exampleReportFile,
		TestID:       exampleTestID,
		MeshConfigID: exampleMeshConfigID,
		EnvID:        exampleEnvID,
	}
}

func exampleMeshConfig() *ServiceMeshConfig {
	return &ServiceMeshConfig{
		SMPVersion:     Version,
		ID:             exampleMeshConfigID,
		IngressGateway: &IngressGateway{Count: 1, CPUMcores: 35, MemMB: 48, RPS: 0, BPS: 0},
		Sidecar:        &Sidecar{Count: 4, CPUMcores: 412, MemMB: 221, RPS: 2000, BPS: 2150000},
		MeshControlPlane: &MeshControlPlane{
			Count: 1, CPUMcores: 18, MemMB: 96, Endpoints: 14, Services: 9, Sidecars: 4,
			VirtualServices: 0, DestinationRules: 0,
		},
		MeshTelemetryEnabled: true,
		MTLSEnabled:          true,
		ProxyConcurrency:     2,
		MeshBuild:            "1.26.1",
		ProxyBuild:           "1.26.1",
		ExpGroupUUID:         "6f1c1a64-2b0e-4d56-9a59-1f3c5d2e7b10",
		ExpUUID:              "0b8e4d3a-91f2-4c7e-8d11-7a2f6c9e4b55",
		Profile:              "default",
		MeshType:             MeshTypeIstio,
		ApplicationMetadata: &ApplicationMetadata{
			ApplicationName:     "echo",
			ApplicationVersion:  "1.0.0",
			ClusterName:         "kind-mesh",
			K8sVersionSupported: ">=1.29",
			ApplicationProtocol: ApplicationProtocolHTTP,
		},
	}
}

func exampleEnvironment() *EnvironmentConfig {
	return &EnvironmentConfig{
		SMPVersion:        Version,
		ID:                exampleEnvID,
		KubernetesVersion: "v1.34.1",
		Nodes: []Node{
			{Type: "kind-control-plane", Cores: 4, MemMB: 7936},
			{Type: "kind-worker", Cores: 4, MemMB: 7936},
			{Type: "kind-worker", Cores: 4, MemMB: 7936},
		},
		IndividualWorkloads: []IndividualWorkload{
			{Name: "echo", Count: 2, CPUMcores: 380, MemMB: 64},
			{Name: "fortio-client", Count: 1, CPUMcores: 610, MemMB: 40},
		},
		TrafficMetadata: &TrafficMetadata{
			HostEndpoint:  "echo.mesh-test.svc.cluster.local:8080",
			PrometheusURL: "http://prometheus.monitoring.svc:9090",
			UserAgent:     "fortio.org/fortio-1.75.3",
		},
	}
}

func exampleMesheryTestConfig() *MesheryTestConfig {
	return &MesheryTestConfig{
		Test: exampleTestConfig(),
		Mesh: &ServiceMesh{Type: MeshTypeIstio, Version: "1.26.1"},
	}
}

func f64(x float64) *float64 { return &x }

func exampleOverheadReport() *OverheadReport {
	r := NewOverheadReport(exampleRunID, exampleStart, exampleEnd)
	r.ResultID = exampleResultID
	echoA := PodOverhead{
		Namespace: "mesh-test", Name: "echo-7d9c8b5f4-abcde", ProxyContainer: "istio-proxy",
		OverheadStats: OverheadStats{
			Requests:                  30012,
			RPS:                       rps(30012),
			ProxyAddedLatencyMs:       &TailLatencyMs{P50: 0.381, P90: 0.622, P99: 1.94, P999: 4.8, Max: 11.2},
			RequestPathMs:             &PercentilesMs{P50: 0.214, P90: 0.35, P99: 1.1},
			ResponsePathMs:            &PercentilesMs{P50: 0.162, P90: 0.27, P99: 0.84},
			EdgeMs:                    &PercentilesMs{P50: 0.512, P90: 0.901, P99: 2.6},
			AppMs:                     &PercentilesMs{P50: 0.121, P90: 0.27, P99: 0.7},
			ProxyCPUMillicores:        f64(101.5),
			ProxyCPUMsPer1000Requests: cpuMsPer1000(101.5, 30012),
			Unmatched:                 UnmatchedCounts{Edge: 3, App: 0},
		},
		Probe: ProbeHealth{Status: ProbeOK},
	}
	echoB := PodOverhead{
		Namespace: "mesh-test", Name: "echo-7d9c8b5f4-fghij", ProxyContainer: "istio-proxy",
		OverheadStats: OverheadStats{
			Requests:                  29980,
			RPS:                       rps(29980),
			ProxyAddedLatencyMs:       &TailLatencyMs{P50: 0.377, P90: 0.641, P99: 2.03, P999: 5.1, Max: 12.9},
			RequestPathMs:             &PercentilesMs{P50: 0.211, P90: 0.36, P99: 1.15},
			ResponsePathMs:            &PercentilesMs{P50: 0.16, P90: 0.28, P99: 0.9},
			EdgeMs:                    &PercentilesMs{P50: 0.509, P90: 0.93, P99: 2.7},
			AppMs:                     &PercentilesMs{P50: 0.12, P90: 0.28, P99: 0.71},
			ProxyCPUMillicores:        f64(99.8),
			ProxyCPUMsPer1000Requests: cpuMsPer1000(99.8, 29980),
			Unmatched:                 UnmatchedCounts{Edge: 1, App: 2},
		},
		Probe: ProbeHealth{Status: ProbeDegraded, LostEvents: 17, Message: "ring buffer full for 0.4s at 12:00:31"},
		Note:  "17 lost events: latency percentiles cover 99.9% of exchanges",
	}
	client := PodOverhead{
		Namespace: "load", Name: "fortio-client-0", ProxyContainer: "istio-proxy",
		OverheadStats: OverheadStats{
			Requests:  0,
			RPS:       0,
			Unmatched: UnmatchedCounts{},
		},
		Probe: ProbeHealth{Status: ProbeFailed, Message: "pod has hostNetwork: true; no pod edge to attach to"},
	}
	r.Pods = []PodOverhead{echoA, echoB, client}
	r.Namespaces = []NamespaceOverhead{
		{
			Namespace: "mesh-test", Pods: 2,
			OverheadStats: OverheadStats{
				Requests:                  echoA.Requests + echoB.Requests,
				RPS:                       rps(echoA.Requests + echoB.Requests),
				ProxyAddedLatencyMs:       &TailLatencyMs{P50: 0.379, P90: 0.633, P99: 1.99, P999: 4.95, Max: 12.9},
				RequestPathMs:             &PercentilesMs{P50: 0.212, P90: 0.355, P99: 1.12},
				ResponsePathMs:            &PercentilesMs{P50: 0.161, P90: 0.275, P99: 0.87},
				EdgeMs:                    &PercentilesMs{P50: 0.51, P90: 0.915, P99: 2.65},
				AppMs:                     &PercentilesMs{P50: 0.12, P90: 0.275, P99: 0.705},
				ProxyCPUMillicores:        f64(101.5 + 99.8),
				ProxyCPUMsPer1000Requests: cpuMsPer1000(101.5+99.8, echoA.Requests+echoB.Requests),
				Unmatched:                 UnmatchedCounts{Edge: 4, App: 2},
			},
		},
		{Namespace: "load", Pods: 1},
	}
	b := NewBaseline(PercentilesMs{P50: 1.604, P90: 2.911, P99: 6.25}, PercentilesMs{P50: 0.84, P90: 1.52, P99: 3.9})
	b.WithProxyResultID = exampleResultID
	b.WithoutProxyResultID = "result-run-20250601t114500z-baseline"
	r.Baseline = &b
	return r
}

// exampleDocs is the full example set, named as its golden files are.
func exampleDocs() []struct {
	name string
	doc  Document
	new  func() Document
} {
	return []struct {
		name string
		doc  Document
		new  func() Document
	}{
		{"performance-test-config", exampleTestConfig(), func() Document { return new(PerformanceTestConfig) }},
		{"performance-test-result", exampleResult(), func() Document { return new(PerformanceTestResult) }},
		{"service-mesh-config", exampleMeshConfig(), func() Document { return new(ServiceMeshConfig) }},
		{"environment-config", exampleEnvironment(), func() Document { return new(EnvironmentConfig) }},
		{"meshery-test-config", exampleMesheryTestConfig(), func() Document { return new(MesheryTestConfig) }},
		{"overhead-report", exampleOverheadReport(), func() Document { return new(OverheadReport) }},
	}
}
