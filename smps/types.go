package smps

// Version is the SMPS release these types follow; write it into every
// document's smp_version.
const Version = "v0.6.1"

// Every SMPS struct below mirrors a proto3 message of SMPS v0.6.1. JSON keys
// are the snake_case proto field names and every field is `omitempty`, because
// proto3 does not serialise zero values: a document written here and one written
// by Meshery's generated structs look the same. Repeated messages are value
// slices (not slices of pointers) so that a JSON null element cannot produce a
// nil entry no proto message could hold. Singular sub-messages are pointers,
// which keeps proto's "absent" distinct from "present with zero values".

// PerformanceTestConfig describes what was run: the load profile.
type PerformanceTestConfig struct {
	// SMPVersion is the spec release, "v0.6.1" (Version). Required.
	SMPVersion string `json:"smp_version,omitempty"`
	// ID identifies this test configuration. Required.
	ID string `json:"id,omitempty"`
	// Name is a human-readable name.
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Clients are the load generators: one, or several for distributed load.
	Clients []Client `json:"clients,omitempty"`
	// Duration is how long the endpoints are under load, as a Go / fortio
	// duration string ("30s", "5m", "1h30m"; fortio also accepts "1d").
	Duration string `json:"duration,omitempty"`
}

// Client is PerformanceTestConfig.Client: one load generator.
type Client struct {
	// Internal is true when the load generator runs inside the cluster.
	Internal bool `json:"internal,omitempty"`
	// LoadGenerator names the tool, e.g. "fortio", "wrk2", "nighthawk".
	LoadGenerator string   `json:"load_generator,omitempty"`
	Protocol      Protocol `json:"protocol,omitempty"`
	// Connections is the number of concurrent connections.
	Connections int32 `json:"connections,omitempty"`
	// RPS is the requested rate in requests per second; 0 means "as fast as
	// possible" for fortio.
	RPS int64 `json:"rps,omitempty"`
	// Headers are extra request headers, name to value.
	Headers map[string]string `json:"headers,omitempty"`
	// Cookies are request cookies, name to value.
	Cookies map[string]string `json:"cookies,omitempty"`
	// Body is the request payload.
	Body string `json:"body,omitempty"`
	// ContentType is the payload's media type, e.g. "application/json".
	ContentType string `json:"content_type,omitempty"`
	// EndpointURLs are the absolute URLs under load, e.g.
	// "http://echo.default.svc:8080/" or "tcp://echo:9000".
	EndpointURLs []string `json:"endpoint_urls,omitempty"`
	// SSLCertificate is the PEM-encoded certificate used to trust the
	// endpoints (the document carries the content, not a path).
	SSLCertificate string `json:"ssl_certificate,omitempty"`
	// AdditionalOptions are load-generator specific options, verbatim (Meshery
	// puts a JSON object here).
	AdditionalOptions string `json:"additional_options,omitempty"`
}

// PerformanceTestResult describes what was measured.
type PerformanceTestResult struct {
	// SMPVersion is the spec release, "v0.6.1" (Version). Required.
	SMPVersion string `json:"smp_version,omitempty"`
	// ID identifies this result. Required.
	ID     string            `json:"id,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// StartTime and EndTime bound the measurement, in UTC.
	StartTime *Timestamp `json:"start_time,omitempty"`
	EndTime   *Timestamp `json:"end_time,omitempty"`
	// LatenciesMs are client-observed request latencies in milliseconds (true
	// milliseconds: fortio reports seconds, convert with DurationMs or *1000).
	LatenciesMs *Latency `json:"latencies_ms,omitempty"`
	// ActualQPS is the achieved rate, in requests per second.
	ActualQPS float64 `json:"actual_qps,omitempty"`
	// DetailsURI points at more detail about this result. kubectl-mesh puts
	// the OverheadReport (per-pod proxy overhead) there. It is a URI
	// reference resolved against the location of this result document (RFC
	// 3986 section 5), so a bare file name such as "run-42.overhead.yaml"
	// means "the file beside this one".
	DetailsURI string `json:"details_uri,omitempty"`
	// TestID, MeshConfigID and EnvID are the ids of the PerformanceTestConfig,
	// ServiceMeshConfig and EnvironmentConfig this result belongs to.
	TestID       string `json:"test_id,omitempty"`
	MeshConfigID string `json:"mesh_config_id,omitempty"`
	EnvID        string `json:"env_id,omitempty"`
}

// Latency is PerformanceTestResult.Latency. All values are milliseconds.
type Latency struct {
	Min     float64 `json:"min,omitempty"`
	Average float64 `json:"average,omitempty"`
	P50     float64 `json:"p50,omitempty"`
	P90     float64 `json:"p90,omitempty"`
	P99     float64 `json:"p99,omitempty"`
	Max     float64 `json:"max,omitempty"`
}

// CPU is PerformanceTestResult.CPU. SMPS v0.6.1 defines it but no field uses
// it; it is here so the spec is complete and for callers that want the shape.
type CPU struct {
	// CPUMcores is CPU capacity in millicores.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	// The rest are shares of CPU time in percent (0-100), as /proc/stat
	// based tools report them.
	User              float64 `json:"user,omitempty"`
	Nice              float64 `json:"nice,omitempty"`
	System            float64 `json:"system,omitempty"`
	Idle              float64 `json:"idle,omitempty"`
	IOWait            float64 `json:"iowait,omitempty"`
	HardwareInterrupt float64 `json:"hardware_interrupt,omitempty"`
	SoftwareInterrupt float64 `json:"software_interrupt,omitempty"`
	Steal             float64 `json:"steal,omitempty"`
}

// Memory is PerformanceTestResult.Memory (defined, unused by SMPS). MiB.
type Memory struct {
	MemTotalMB float64 `json:"mem_total_mb,omitempty"`
	MemFreeMB  float64 `json:"mem_free_mb,omitempty"`
	MemUsedMB  float64 `json:"mem_used_mb,omitempty"`
}

// Swap is PerformanceTestResult.Swap (defined, unused by SMPS). MiB.
type Swap struct {
	SwapTotalMB float64 `json:"swap_total_mb,omitempty"`
	SwapFreeMB  float64 `json:"swap_free_mb,omitempty"`
	SwapUsedMB  float64 `json:"swap_used_mb,omitempty"`
}

// ServiceMeshConfig describes the mesh under test.
//
// Units throughout: cpu_mcores in millicores, mem_mb in MiB (the spec says
// "MB"; this package fills it from Kubernetes quantities, which are binary),
// rps in requests per second, bps in bytes per second.
type ServiceMeshConfig struct {
	// SMPVersion is the spec release, "v0.6.1" (Version). Required.
	SMPVersion string `json:"smp_version,omitempty"`
	// ID identifies this mesh configuration. Required.
	ID                   string            `json:"id,omitempty"`
	Labels               map[string]string `json:"labels,omitempty"`
	IngressGateway       *IngressGateway   `json:"ingress_gateway,omitempty"`
	Sidecar              *Sidecar          `json:"sidecar,omitempty"`
	MeshTelemetry        *MeshTelemetry    `json:"mesh_telemetry,omitempty"`
	MeshPolicy           *MeshPolicy       `json:"mesh_policy,omitempty"`
	MeshControlPlane     *MeshControlPlane `json:"mesh_control_plane,omitempty"`
	MeshPolicyEnabled    bool              `json:"mesh_policy_enabled,omitempty"`
	MeshTelemetryEnabled bool              `json:"mesh_telemetry_enabled,omitempty"`
	MTLSEnabled          bool              `json:"mtls_enabled,omitempty"`
	// ProxyConcurrency is the proxy's worker thread count (0: the proxy's
	// default).
	ProxyConcurrency int32 `json:"proxy_concurrency,omitempty"`
	// MeshBuild and ProxyBuild are the control plane and proxy versions.
	MeshBuild  string `json:"mesh_build,omitempty"`
	ProxyBuild string `json:"proxy_build,omitempty"`
	// ExpGroupUUID and ExpUUID identify an experiment group and experiment;
	// when set they must be canonical UUIDs.
	ExpGroupUUID string `json:"exp_group_uuid,omitempty"`
	ExpUUID      string `json:"exp_uuid,omitempty"`
	// Profile is the mesh installation profile, e.g. Istio's "default".
	Profile             string               `json:"profile,omitempty"`
	MeshType            MeshType             `json:"mesh_type,omitempty"`
	ApplicationMetadata *ApplicationMetadata `json:"application_metadata,omitempty"`
}

// IngressGateway is ServiceMeshConfig.IngressGateway.
type IngressGateway struct {
	// Count is the number of gateway pods.
	Count int32 `json:"count,omitempty"`
	// CPUMcores is the CPU used by the gateways, in millicores.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	// MemMB is the memory used by the gateways, in MiB.
	MemMB int32 `json:"mem_mb,omitempty"`
	// RPS is the traffic through the gateways, in requests per second.
	RPS int32 `json:"rps,omitempty"`
	// BPS is the traffic through the gateways, in bytes per second.
	BPS int32 `json:"bps,omitempty"`
}

// EgressGateway is ServiceMeshConfig.EgressGateway. SMPS v0.6.1 defines the
// message but ServiceMeshConfig has no field of this type. Units as
// IngressGateway.
type EgressGateway struct {
	Count     int32 `json:"count,omitempty"`
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	MemMB     int32 `json:"mem_mb,omitempty"`
	RPS       int32 `json:"rps,omitempty"`
	BPS       int32 `json:"bps,omitempty"`
}

// Sidecar is ServiceMeshConfig.Sidecar: all sidecar proxies except gateways.
type Sidecar struct {
	// Count is the number of sidecars.
	Count int32 `json:"count,omitempty"`
	// CPUMcores is the CPU of all sidecars together, in millicores.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	// MemMB is the memory of all sidecars together, in MiB.
	MemMB int32 `json:"mem_mb,omitempty"`
	// RPS is the total request rate through all sidecars, requests/second.
	RPS int32 `json:"rps,omitempty"`
	// BPS is the total byte rate through all sidecars, bytes/second.
	BPS int32 `json:"bps,omitempty"`
}

// MeshTelemetry is ServiceMeshConfig.MeshTelemetry: the telemetry pods.
type MeshTelemetry struct {
	Count int32 `json:"count,omitempty"`
	// CPUMcores in millicores; MemMB in MiB.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	MemMB     int32 `json:"mem_mb,omitempty"`
	// RPS is the total rate through all proxies, requests/second.
	RPS int32 `json:"rps,omitempty"`
}

// MeshPolicy is ServiceMeshConfig.MeshPolicy: the policy pods.
type MeshPolicy struct {
	Count int32 `json:"count,omitempty"`
	// CPUMcores in millicores; MemMB in MiB.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	MemMB     int32 `json:"mem_mb,omitempty"`
	// RPS is the total rate through all proxies, requests/second.
	RPS int32 `json:"rps,omitempty"`
	// CacheHitRate is the policy cache hit rate in percent (0-100). The spec
	// gives no unit; an int32 cannot hold a 0-1 ratio, so percent it is.
	CacheHitRate int32 `json:"cache_hit_rate,omitempty"`
}

// MeshControlPlane is ServiceMeshConfig.MeshControlPlane.
type MeshControlPlane struct {
	// Count is the number of control plane pods.
	Count int32 `json:"count,omitempty"`
	// CPUMcores in millicores; MemMB in MiB.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	MemMB     int32 `json:"mem_mb,omitempty"`
	// Object counts the control plane distributes.
	Endpoints        int32 `json:"endpoints,omitempty"`
	Services         int32 `json:"services,omitempty"`
	Sidecars         int32 `json:"sidecars,omitempty"`
	VirtualServices  int32 `json:"virtual_services,omitempty"`
	DestinationRules int32 `json:"destination_rules,omitempty"`
	// LDSLatencyMs and CDSLatencyMs are how long a listener / cluster change
	// takes to reach 90% of proxies, in milliseconds.
	LDSLatencyMs int32 `json:"lds_latency_ms,omitempty"`
	CDSLatencyMs int32 `json:"cds_latency_ms,omitempty"`
}

// ApplicationMetadata describes the application deployed for the test.
type ApplicationMetadata struct {
	ApplicationName     string              `json:"application_name,omitempty"`
	ApplicationVersion  string              `json:"application_version,omitempty"`
	HelmchartName       string              `json:"helmchart_name,omitempty"`
	HelmchartVersion    string              `json:"helmchart_version,omitempty"`
	CNABSpecVersion     string              `json:"cnabspec_version,omitempty"`
	ComposeVersion      string              `json:"compose_version,omitempty"`
	ClusterName         string              `json:"cluster_name,omitempty"`
	K8sVersionSupported string              `json:"k8s_version_supported,omitempty"`
	ApplicationProtocol ApplicationProtocol `json:"application_protocol,omitempty"`
}

// EnvironmentConfig describes where the test ran.
type EnvironmentConfig struct {
	// SMPVersion is the spec release, "v0.6.1" (Version). Required.
	SMPVersion string `json:"smp_version,omitempty"`
	// ID identifies this environment. Required.
	ID     string            `json:"id,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// KubernetesVersion is the server version, e.g. "v1.34.1".
	KubernetesVersion   string               `json:"kubernetes_version,omitempty"`
	Nodes               []Node               `json:"nodes,omitempty"`
	IndividualWorkloads []IndividualWorkload `json:"individual_workloads,omitempty"`
	TrafficMetadata     *TrafficMetadata     `json:"traffic_metadata,omitempty"`
}

// Node is EnvironmentConfig.Node: one cluster node.
type Node struct {
	// Type is the machine or instance type, e.g. "n2-standard-4".
	Type string `json:"type,omitempty"`
	// Cores is the node's CPU count (whole cores).
	Cores int32 `json:"cores,omitempty"`
	// MemMB is the node's memory capacity in MiB.
	MemMB int64 `json:"mem_mb,omitempty"`
}

// IndividualWorkload is EnvironmentConfig.IndividualWorkload: one workload
// running beside the test.
type IndividualWorkload struct {
	Name string `json:"name,omitempty"`
	// Count is the number of replicas.
	Count int32 `json:"count,omitempty"`
	// CPUMcores in millicores; MemMB in MiB.
	CPUMcores int32 `json:"cpu_mcores,omitempty"`
	MemMB     int32 `json:"mem_mb,omitempty"`
}

// TrafficMetadata is how traffic reached the application.
type TrafficMetadata struct {
	LoadBalanceName string `json:"load_balance_name,omitempty"`
	// LoadBalanceIP must be an IP address when set.
	LoadBalanceIP string `json:"load_balance_ip,omitempty"`
	HostEndpoint  string `json:"host_endpoint,omitempty"`
	// PrometheusURL must be an absolute URL when set.
	PrometheusURL      string `json:"prometheus_url,omitempty"`
	HTTPHeaders        string `json:"http_headers,omitempty"`
	UserAgent          string `json:"user_agent,omitempty"`
	PingHealthEndpoint string `json:"ping_health_endpoint,omitempty"`
}

// ServiceMesh names a mesh implementation and version.
type ServiceMesh struct {
	Type        MeshType          `json:"type,omitempty"`
	Version     string            `json:"version,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// MesheryTestConfig is the input document `mesheryctl perf apply -f` reads:
// the test to run and the mesh to run it against (`mesh: {type: 3}` is Istio).
type MesheryTestConfig struct {
	Test *PerformanceTestConfig `json:"test,omitempty"`
	Mesh *ServiceMesh           `json:"mesh,omitempty"`
}
