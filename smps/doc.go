// Package smps reads, writes and validates Service Mesh Performance
// Specification (SMPS) v0.6.1 documents, and kubectl-mesh's companion
// OverheadReport.
//
// # Documents
//
// SMPS (upstream service-mesh-performance/service-mesh-performance, protos/)
// describes a performance test in four documents: PerformanceTestConfig (what
// was run), PerformanceTestResult (what was measured), ServiceMeshConfig (the
// mesh under test) and EnvironmentConfig (where it ran). MesheryTestConfig is
// the `test:` / `mesh:` input file of `mesheryctl perf apply -f`. The upstream
// Go module is not used; the types are written from the proto field list.
//
// # Wire format
//
// The SMPS types serialise the way Meshery's protoc-generated structs do with
// encoding/json, so Meshery can read what kubectl-mesh writes:
//
//   - keys are the snake_case proto field names (smp_version, latencies_ms);
//   - every field is omitempty, as proto3 omits zero values;
//   - enums are integers (mesh_type: 3 is ISTIO); names are also accepted on
//     decode;
//   - google.protobuf.Timestamp is the object {"seconds": N, "nanos": N}, not
//     an RFC 3339 string: upstream's generated structs hold a
//     *timestamppb.Timestamp, whose exported fields encoding/json writes as
//     that object (checked against upstream spec/*.pb.go). RFC 3339 strings,
//     which protojson would write, are accepted on decode.
//
// # Units
//
// Latencies are milliseconds (true milliseconds: Meshery's own export writes
// fortio's seconds into latencies_ms; DurationMs converts), CPU is
// millicores, memory is MiB, rates are per second, durations are Go / fortio
// duration strings such as "30s". Each field's comment states its unit.
//
// # Companion report
//
// SMPS has nowhere to put per-pod proxy overhead, percentiles above p99, error
// or mismatch counts, or a with/without-proxy baseline. OverheadReport
// (apiVersion kubectl-mesh.io/v1alpha1) holds them. A PerformanceTestResult's
// details_uri names the report's file, as a URI reference relative to the
// result document (a bare file name means "beside it"), and the report's
// resultId names the result.
//
// # Reading and writing
//
// Encode validates and then writes JSON or YAML (YAML through sigs.k8s.io/yaml
// from the JSON form, so keys are identical). Decode accepts either, strictly:
// unknown fields, duplicate keys and multi-document YAML are errors. Validate
// reports every problem with a field path, e.g.
//
//	result.latencies_ms.p90: 12.5 is less than p50 17.0
package smps

import "time"

// DurationMs converts a duration to the float milliseconds SMPS latencies
// use, keeping sub-millisecond precision (time.Duration.Milliseconds would
// truncate to whole milliseconds).
func DurationMs(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
