package smps

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// assertFieldErrors requires err to be a *ValidationError listing exactly
// want, in order: extra errors are as wrong as missing ones.
func assertFieldErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want *ValidationError with %q", err, want)
	}
	got := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		got[i] = f.Error()
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if err.Error() != strings.Join(want, "; ") {
		t.Errorf("Error() = %q", err.Error())
	}
}

type validationCase struct {
	name string
	doc  func() Document
	want []string
}

func runValidationCases(t *testing.T, cases []validationCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertFieldErrors(t, c.doc().Validate(), c.want)
		})
	}
}

func TestValidateExamples(t *testing.T) {
	for _, ex := range exampleDocs() {
		if err := ex.doc.Validate(); err != nil {
			t.Errorf("%s: %v", ex.name, err)
		}
	}
}

func result(mut func(r *PerformanceTestResult)) func() Document {
	return func() Document { r := exampleResult(); mut(r); return r }
}

func TestValidatePerformanceTestResult(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"missing version and id", func() Document { return &PerformanceTestResult{} }, []string{
			"result.smp_version: required (this package writes v0.6.1)",
			"result.id: required",
		}},
		{"placeholder version", result(func(r *PerformanceTestResult) { r.SMPVersion = "SMP_VERSION" }), []string{
			`result.smp_version: "SMP_VERSION" is not a version of the form vMAJOR.MINOR.PATCH (this package writes v0.6.1)`,
		}},
		{"other spec version is fine", result(func(r *PerformanceTestResult) { r.SMPVersion = "v0.7.0-rc.1" }), nil},
		{"blank id", result(func(r *PerformanceTestResult) { r.ID = " \t" }), []string{"result.id: required"}},
		{"p90 below p50", result(func(r *PerformanceTestResult) {
			r.LatenciesMs.P50, r.LatenciesMs.P90, r.LatenciesMs.P99 = 17, 12.5, 20
		}), []string{"result.latencies_ms.p90: 12.5 is less than p50 17.0"}},
		{"p50 below min", result(func(r *PerformanceTestResult) { r.LatenciesMs.Min = 1.7 }), []string{
			"result.latencies_ms.p50: 1.604 is less than min 1.7",
		}},
		{"p99 below p90", result(func(r *PerformanceTestResult) { r.LatenciesMs.P99 = 2.5 }), []string{
			"result.latencies_ms.p99: 2.5 is less than p90 2.911",
		}},
		{"max below p99", result(func(r *PerformanceTestResult) { r.LatenciesMs.Max = 5 }), []string{
			"result.latencies_ms.max: 5.0 is less than p99 6.25",
		}},
		{"average above max", result(func(r *PerformanceTestResult) { r.LatenciesMs.Average = 30 }), []string{
			"result.latencies_ms.average: 30.0 is outside [min 0.412, max 21.7]",
		}},
		{"average below min", result(func(r *PerformanceTestResult) { r.LatenciesMs.Average = 0.1 }), []string{
			"result.latencies_ms.average: 0.1 is outside [min 0.412, max 21.7]",
		}},
		{"negative latency", result(func(r *PerformanceTestResult) { r.LatenciesMs.Min = -1 }), []string{
			"result.latencies_ms.min: -1.0 is negative",
		}},
		{"NaN latency", result(func(r *PerformanceTestResult) { r.LatenciesMs.P99 = math.NaN() }), []string{
			"result.latencies_ms.p99: NaN is not a finite number",
		}},
		{"infinite latency", result(func(r *PerformanceTestResult) { r.LatenciesMs.Max = math.Inf(1) }), []string{
			"result.latencies_ms.max: +Inf is not a finite number",
		}},
		{"all-zero latency is consistent", result(func(r *PerformanceTestResult) { r.LatenciesMs = &Latency{} }), nil},
		{"negative qps", result(func(r *PerformanceTestResult) { r.ActualQPS = -3 }), []string{
			"result.actual_qps: -3.0 is negative",
		}},
		{"infinite qps", result(func(r *PerformanceTestResult) { r.ActualQPS = math.Inf(-1) }), []string{
			"result.actual_qps: -Inf is not a finite number",
		}},
		{"end before start", result(func(r *PerformanceTestResult) { r.EndTime = NewTimestamp(exampleStart.Add(-time.Minute)) }), []string{
			"result.end_time: 2025-06-01T11:59:00.125Z is before start_time 2025-06-01T12:00:00.125Z",
		}},
		{"end equal to start", result(func(r *PerformanceTestResult) { r.EndTime = NewTimestamp(exampleStart) }), nil},
		{"only a start time", result(func(r *PerformanceTestResult) { r.EndTime = nil }), nil},
		{"nanos out of range", result(func(r *PerformanceTestResult) { r.StartTime.Nanos = 1e9 }), []string{
			"result.start_time: nanos 1000000000 is outside 0..999999999",
		}},
		{"negative nanos", result(func(r *PerformanceTestResult) { r.EndTime.Nanos = -1 }), []string{
			"result.end_time: nanos -1 is outside 0..999999999",
		}},
		{"seconds out of range", result(func(r *PerformanceTestResult) { r.EndTime.Seconds = 253402300800 }), []string{
			"result.end_time: seconds 253402300800 is outside the protobuf Timestamp range (years 0001 to 9999)",
		}},
		{"details_uri not a URI", result(func(r *PerformanceTestResult) { r.DetailsURI = "%zz" }), []string{
			`result.details_uri: "%zz" is not a URI reference: invalid URL escape "%zz"`,
		}},
		{"details_uri absolute", result(func(r *PerformanceTestResult) { r.DetailsURI = "https://example.com/r/1.yaml" }), nil},
		{"nil", func() Document { return (*PerformanceTestResult)(nil) }, []string{"result: document is nil"}},
	})
}

func testConfig(mut func(c *PerformanceTestConfig)) func() Document {
	return func() Document { c := exampleTestConfig(); mut(c); return c }
}

func TestValidatePerformanceTestConfig(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"missing id", testConfig(func(c *PerformanceTestConfig) { c.ID = "" }), []string{"test.id: required"}},
		{"bad duration", testConfig(func(c *PerformanceTestConfig) { c.Duration = "half a minute" }), []string{
			`test.duration: "half a minute" is not a duration such as "30s" or "5m": invalid duration half a minute`,
		}},
		{"negative duration", testConfig(func(c *PerformanceTestConfig) { c.Duration = "-30s" }), []string{
			`test.duration: "-30s" is negative`,
		}},
		{"fortio day duration", testConfig(func(c *PerformanceTestConfig) { c.Duration = "1d" }), nil},
		{"unknown protocol", testConfig(func(c *PerformanceTestConfig) { c.Clients[0].Protocol = 9 }), []string{
			"test.clients[0].protocol: 9 is not a known Protocol (0..4)",
		}},
		{"negative connections and rps", testConfig(func(c *PerformanceTestConfig) {
			c.Clients[0].Connections, c.Clients[0].RPS = -1, -100
		}), []string{
			"test.clients[0].connections: -1 is negative",
			"test.clients[0].rps: -100 is negative",
		}},
		{"relative endpoint", testConfig(func(c *PerformanceTestConfig) {
			c.Clients[0].EndpointURLs = append(c.Clients[0].EndpointURLs, "/echo")
		}), []string{`test.clients[0].endpoint_urls[1]: "/echo" is not an absolute URL (scheme://host[:port]/...)`}},
		{"unparsable endpoint", testConfig(func(c *PerformanceTestConfig) { c.Clients[0].EndpointURLs[0] = "http://[::1" }), []string{
			`test.clients[0].endpoint_urls[0]: "http://[::1" is not a URL: missing ']' in host`,
		}},
		{"tcp endpoint", testConfig(func(c *PerformanceTestConfig) {
			c.Clients[0].Protocol, c.Clients[0].EndpointURLs = ProtocolTCP, []string{"tcp://echo.mesh-test:9000"}
		}), nil},
		{"bad header name and value", testConfig(func(c *PerformanceTestConfig) {
			c.Clients[0].Headers = map[string]string{"Bad Header": "x", "X-Ok": "a\r\nInjected: yes"}
		}), []string{
			`test.clients[0].headers["Bad Header"]: not a valid HTTP header name`,
			`test.clients[0].headers["X-Ok"]: value contains characters not allowed in an HTTP header (CR, LF or other controls)`,
		}},
		{"bad cookies", testConfig(func(c *PerformanceTestConfig) {
			c.Clients[0].Cookies = map[string]string{"ok": `"quoted"`, "se;ssion": "x", "sid": "a;b"}
		}), []string{
			`test.clients[0].cookies["se;ssion"]: not a valid cookie name`,
			`test.clients[0].cookies["sid"]: value contains characters RFC 6265 does not allow in a cookie`,
		}},
		{"bad content type", testConfig(func(c *PerformanceTestConfig) { c.Clients[0].ContentType = "application/" }), []string{
			`test.clients[0].content_type: "application/" is not a media type: mime: expected token after slash`,
		}},
		{"errors in the second client", testConfig(func(c *PerformanceTestConfig) {
			c.Clients = append(c.Clients, Client{Protocol: -1, EndpointURLs: []string{"echo:8080"}})
		}), []string{
			"test.clients[1].protocol: -1 is not a known Protocol (0..4)",
			`test.clients[1].endpoint_urls[0]: "echo:8080" is not an absolute URL (scheme://host[:port]/...)`,
		}},
	})
}

func meshConfig(mut func(m *ServiceMeshConfig)) func() Document {
	return func() Document { m := exampleMeshConfig(); mut(m); return m }
}

func TestValidateServiceMeshConfig(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"missing version", meshConfig(func(m *ServiceMeshConfig) { m.SMPVersion = "" }), []string{
			"mesh_config.smp_version: required (this package writes v0.6.1)",
		}},
		{"unknown mesh type", meshConfig(func(m *ServiceMeshConfig) { m.MeshType = 13 }), []string{
			"mesh_config.mesh_type: 13 is not a known ServiceMesh.Type (0..12)",
		}},
		{"unknown application protocol", meshConfig(func(m *ServiceMeshConfig) { m.ApplicationMetadata.ApplicationProtocol = 3 }), []string{
			"mesh_config.application_metadata.application_protocol: 3 is not a known ApplicationProtocol (0..2)",
		}},
		{"negative resources", meshConfig(func(m *ServiceMeshConfig) {
			m.IngressGateway.Count = -1
			m.Sidecar.CPUMcores = -412
			m.MeshTelemetry = &MeshTelemetry{MemMB: -1}
			m.MeshControlPlane.LDSLatencyMs = -5
			m.ProxyConcurrency = -2
		}), []string{
			"mesh_config.ingress_gateway.count: -1 is negative",
			"mesh_config.sidecar.cpu_mcores: -412 is negative",
			"mesh_config.mesh_telemetry.mem_mb: -1 is negative",
			"mesh_config.mesh_control_plane.lds_latency_ms: -5 is negative",
			"mesh_config.proxy_concurrency: -2 is negative",
		}},
		{"cache hit rate over 100", meshConfig(func(m *ServiceMeshConfig) { m.MeshPolicy = &MeshPolicy{CacheHitRate: 101} }), []string{
			"mesh_config.mesh_policy.cache_hit_rate: 101 is outside 0..100 (percent)",
		}},
		{"bad uuids", meshConfig(func(m *ServiceMeshConfig) { m.ExpUUID, m.ExpGroupUUID = "exp-1", "6f1c1a642b0e4d569a591f3c5d2e7b10" }), []string{
			`mesh_config.exp_group_uuid: "6f1c1a642b0e4d569a591f3c5d2e7b10" is not a UUID (8-4-4-4-12 hex digits)`,
			`mesh_config.exp_uuid: "exp-1" is not a UUID (8-4-4-4-12 hex digits)`,
		}},
	})
}

func environment(mut func(e *EnvironmentConfig)) func() Document {
	return func() Document { e := exampleEnvironment(); mut(e); return e }
}

func TestValidateEnvironmentConfig(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"missing id", environment(func(e *EnvironmentConfig) { e.ID = "" }), []string{"environment.id: required"}},
		{"negative node figures", environment(func(e *EnvironmentConfig) { e.Nodes[1].Cores, e.Nodes[2].MemMB = -4, -1 }), []string{
			"environment.nodes[1].cores: -4 is negative",
			"environment.nodes[2].mem_mb: -1 is negative",
		}},
		{"negative workload figures", environment(func(e *EnvironmentConfig) { e.IndividualWorkloads[0].Count = -2 }), []string{
			"environment.individual_workloads[0].count: -2 is negative",
		}},
		{"bad load balancer IP", environment(func(e *EnvironmentConfig) { e.TrafficMetadata.LoadBalanceIP = "10.0.0.300" }), []string{
			`environment.traffic_metadata.load_balance_ip: "10.0.0.300" is not an IP address`,
		}},
		{"IPv6 load balancer", environment(func(e *EnvironmentConfig) { e.TrafficMetadata.LoadBalanceIP = "fd00::1" }), nil},
		{"relative prometheus URL", environment(func(e *EnvironmentConfig) { e.TrafficMetadata.PrometheusURL = "prometheus:9090" }), []string{
			`environment.traffic_metadata.prometheus_url: "prometheus:9090" is not an absolute URL (scheme://host[:port]/...)`,
		}},
	})
}

func TestValidateMesheryTestConfig(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"no test", func() Document { return &MesheryTestConfig{Mesh: &ServiceMesh{Type: MeshTypeIstio}} }, []string{"test: required"}},
		{"no mesh is a baseline run", func() Document { return &MesheryTestConfig{Test: exampleTestConfig()} }, nil},
		{"errors in both parts", func() Document {
			m := exampleMesheryTestConfig()
			m.Test.ID = ""
			m.Mesh.Type = 99
			return m
		}, []string{
			"test.id: required",
			"mesh.type: 99 is not a known ServiceMesh.Type (0..12)",
		}},
		{"nil", func() Document { return (*MesheryTestConfig)(nil) }, []string{"meshery_test_config: document is nil"}},
		{"service mesh alone", func() Document { return &ServiceMesh{Type: -1} }, []string{
			"mesh.type: -1 is not a known ServiceMesh.Type (0..12)",
		}},
	})
}

func report(mut func(r *OverheadReport)) func() Document {
	return func() Document { r := exampleOverheadReport(); mut(r); return r }
}

func TestValidateOverheadReport(t *testing.T) {
	runValidationCases(t, []validationCase{
		{"type identity", report(func(r *OverheadReport) { r.APIVersion, r.Kind = "v1", "Report" }), []string{
			`report.apiVersion: "v1" is not "kubectl-mesh.io/v1alpha1"`,
			`report.kind: "Report" is not "OverheadReport"`,
		}},
		{"missing run id and window", report(func(r *OverheadReport) { r.RunID, r.Window = "", Window{} }), []string{
			"report.runId: required",
			"report.window.start: required",
			"report.window.end: required",
		}},
		{"window backwards", report(func(r *OverheadReport) { r.Window.Start, r.Window.End = r.Window.End, r.Window.Start }), []string{
			"report.window.end: 2025-06-01T12:00:00.125Z is before start 2025-06-01T12:01:00.125Z",
		}},
		{"window beyond RFC 3339", report(func(r *OverheadReport) { r.Window.End = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), []string{
			"report.window.end: 10000-01-01T00:00:00Z is outside years 0001 to 9999",
		}},
		{"pod identity", report(func(r *OverheadReport) {
			r.Pods[0].Namespace = "Mesh_Test"
			r.Pods[1].Name = ""
			r.Pods[2].ProxyContainer = ""
		}), []string{
			`report.pods[0].namespace: "Mesh_Test" is not a DNS-1123 label: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			"report.pods[1].name: required",
			"report.pods[2].proxyContainer: required",
			`report.namespaces[0].pods: 2, but the report has 1 pod entries in namespace "mesh-test"`,
			"report.namespaces[0].requests: 59992 is not the sum over its pods, 29980",
			"report.namespaces[0].unmatched.edge: 4 is not the sum over its pods, 1",
			`report.pods[0].namespace: "Mesh_Test" has no entry in namespaces`,
		}},
		{"duplicate pod", report(func(r *OverheadReport) {
			r.Pods = append(r.Pods, r.Pods[2])
			r.Namespaces[1].Pods = 2
		}), []string{"report.pods[3]: duplicate of pods[2] (load/fortio-client-0)"}},
		{"latency without requests", report(func(r *OverheadReport) {
			r.Pods[2].ProxyAddedLatencyMs = &TailLatencyMs{P50: 1, P90: 1, P99: 1, P999: 1, Max: 1}
			r.Pods[2].RequestPathMs = &PercentilesMs{}
			r.Pods[2].ProxyCPUMsPer1000Requests = f64(3)
			r.Pods[2].EdgeMs = &PercentilesMs{P50: 1, P90: 2, P99: 3} // edge-only exchanges may exist
		}), []string{
			"report.pods[2].proxyAddedLatencyMs: present, but requests is 0: there are no exchanges to compute it from",
			"report.pods[2].requestPathMs: present, but requests is 0: there are no exchanges to compute it from",
			"report.pods[2].proxyCpuMsPer1000Requests: present, but requests is 0: there are no exchanges to compute it from",
		}},
		{"tail latency out of order", report(func(r *OverheadReport) { r.Pods[0].ProxyAddedLatencyMs.P999 = 1.5 }), []string{
			"report.pods[0].proxyAddedLatencyMs.p999: 1.5 is less than p99 1.94",
		}},
		{"percentiles out of order", report(func(r *OverheadReport) { r.Namespaces[0].AppMs.P90 = 0.1 }), []string{
			"report.namespaces[0].appMs.p90: 0.1 is less than p50 0.12",
		}},
		{"NaN and negative figures", report(func(r *OverheadReport) {
			r.Pods[0].ResponsePathMs.P50 = math.NaN()
			r.Pods[0].RPS = -1
			r.Pods[1].ProxyCPUMillicores = f64(-0.5)
			r.Pods[1].EdgeMs.P99 = math.Inf(1)
		}), []string{
			"report.pods[0].rps: -1.0 is negative",
			"report.pods[0].responsePathMs.p50: NaN is not a finite number",
			"report.pods[1].edgeMs.p99: +Inf is not a finite number",
			"report.pods[1].proxyCpuMillicores: -0.5 is negative",
		}},
		{"negative counts", report(func(r *OverheadReport) {
			r.Pods[2].Requests = -1
			r.Pods[2].Unmatched.App = -2
			r.Pods[2].Probe.LostEvents = -3
		}), []string{
			"report.pods[2].requests: -1 is negative",
			"report.pods[2].unmatched.app: -2 is negative",
			"report.pods[2].probe.lostEvents: -3 is negative",
			"report.namespaces[1].requests: 0 is not the sum over its pods, -1",
			"report.namespaces[1].unmatched.app: 0 is not the sum over its pods, -2",
		}},
		{"probe status", report(func(r *OverheadReport) { r.Pods[0].Probe.Status = ""; r.Pods[1].Probe.Status = "fine" }), []string{
			"report.pods[0].probe.status: required (ok, degraded or failed)",
			`report.pods[1].probe.status: "fine" is not one of ok, degraded, failed`,
		}},
		{"namespace aggregate does not add up", report(func(r *OverheadReport) {
			r.Namespaces[0].Pods = 3
			r.Namespaces[0].Requests++
			r.Namespaces[0].Unmatched = UnmatchedCounts{Edge: 3, App: 3}
		}), []string{
			`report.namespaces[0].pods: 3, but the report has 2 pod entries in namespace "mesh-test"`,
			"report.namespaces[0].requests: 59993 is not the sum over its pods, 59992",
			"report.namespaces[0].unmatched.edge: 3 is not the sum over its pods, 4",
			"report.namespaces[0].unmatched.app: 3 is not the sum over its pods, 2",
		}},
		{"outbound adds up", report(func(r *OverheadReport) {
			r.Pods[0].Outbound = &OverheadStats{Requests: 10, RPS: 1, ProxyAddedLatencyMs: &TailLatencyMs{P50: 0.2, P90: 0.3, P99: 0.4, P999: 0.5, Max: 0.6}}
			r.Pods[1].Outbound = &OverheadStats{Requests: 5, Unmatched: UnmatchedCounts{App: 1}}
			r.Namespaces[0].Outbound = &OverheadStats{Requests: 15, RPS: 1, Unmatched: UnmatchedCounts{App: 1}}
		}), nil},
		{"outbound wrong", report(func(r *OverheadReport) {
			cpu := 3.0
			r.Pods[0].Outbound = &OverheadStats{Requests: 10, ProxyCPUMillicores: &cpu}
			r.Pods[2].Outbound = &OverheadStats{Requests: 0, RequestPathMs: &PercentilesMs{P50: 1, P90: 2, P99: 3}}
			r.Namespaces[0].Outbound = &OverheadStats{Requests: 11}
		}), []string{
			"report.pods[0].outbound.proxyCpuMillicores: present: the proxy's CPU is reported once, in the inbound figures",
			"report.pods[2].outbound.requestPathMs: present, but requests is 0: there are no exchanges to compute it from",
			"report.namespaces[0].outbound.requests: 11 is not the sum over its pods, 10",
			"report.namespaces[1].outbound: missing, but 1 of its pods have outbound figures",
		}},
		{"duplicate namespace", report(func(r *OverheadReport) { r.Namespaces = append(r.Namespaces, r.Namespaces[1]) }), []string{
			"report.namespaces[2]: duplicate of namespaces[1] (load)",
		}},
		{"pod without namespace aggregate", report(func(r *OverheadReport) { r.Namespaces = r.Namespaces[:1] }), []string{
			`report.pods[2].namespace: "load" has no entry in namespaces`,
		}},
		{"empty namespace aggregate is fine", report(func(r *OverheadReport) {
			r.Namespaces = append(r.Namespaces, NamespaceOverhead{Namespace: "idle"})
		}), nil},
		{"no pods at all", report(func(r *OverheadReport) { r.Pods, r.Namespaces, r.Baseline = nil, nil, nil }), nil},
		{"baseline difference wrong", report(func(r *OverheadReport) {
			r.Baseline.DifferenceMs.P90 = -r.Baseline.DifferenceMs.P90
		}), []string{
			"report.baseline.differenceMs.p90: -1.391 is not withProxyMs - withoutProxyMs = 2.911 - 1.52 = 1.391",
		}},
		{"baseline rounded to microseconds is fine", report(func(r *OverheadReport) { r.Baseline.DifferenceMs.P50 = 0.764 }), nil},
		{"baseline may be negative", report(func(r *OverheadReport) {
			b := NewBaseline(PercentilesMs{P50: 1, P90: 2, P99: 3}, PercentilesMs{P50: 1.1, P90: 2, P99: 3.2})
			r.Baseline = &b
		}), nil},
		{"baseline inputs invalid", report(func(r *OverheadReport) {
			r.Baseline.WithoutProxyMs.P99 = 1
			r.Baseline.DifferenceMs.P50 = math.NaN()
		}), []string{
			"report.baseline.withoutProxyMs.p99: 1.0 is less than p90 1.52",
			"report.baseline.differenceMs.p50: NaN is not a finite number",
			"report.baseline.differenceMs.p99: 2.35 is not withProxyMs - withoutProxyMs = 6.25 - 1.0 = 5.25",
		}},
	})
}
