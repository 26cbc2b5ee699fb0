package perf

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// The documents of a run: file names in the output directory and keys in the stored run.
const (
	DocTestConfig  = "smps-test-config.yaml"
	DocMeshConfig  = "smps-mesh-config.yaml"
	DocEnvironment = "smps-environment.yaml"
	DocResult      = "smps-result.yaml"
	// DocMeshery is the `test:`/`mesh:` document `mesheryctl perf apply -f` reads.
	DocMeshery = "meshery-test.yaml"
	// DocOverhead is the companion per-pod document the result's details_uri names.
	DocOverhead = "overhead.yaml"
	// DocLoad and DocBaselineLoad are the load generator's own results (histograms included).
	DocLoad         = "loadgen.json"
	DocBaselineLoad = "loadgen-baseline.json"
	// DocProbes holds the probes' raw snapshots, histograms included: what the HTML report
	// draws, and what any later analysis can merge differently.
	DocProbes = "probe-snapshots.json"
)

// DocumentOrder lists the documents in the order they are written and shown.
var DocumentOrder = []string{DocResult, DocTestConfig, DocMeshConfig, DocEnvironment, DocMeshery, DocOverhead, DocLoad, DocBaselineLoad, DocProbes}

// ProbeRecord is one pod's entry of DocProbes.
type ProbeRecord struct {
	Namespace string        `json:"namespace"`
	Pod       string        `json:"pod"`
	Error     string        `json:"error,omitempty"`
	Snapshot  *api.Snapshot `json:"snapshot,omitempty"`
}

// Mesh is what the run found in the target pods.
type Mesh struct {
	Type smps.MeshType
	// Name is the webhook's name for the mesh (inject.MeshIstio, ...), "" for none.
	Name string
	// ProxyContainer and ProxyImage of the first target pod that has a proxy.
	ProxyContainer, ProxyImage string
	// Sidecars counts the target pods with a proxy.
	Sidecars int
}

// DetectMesh finds the mesh of the target pods with the webhook's own detection, so that the
// run and the injected probe agree on which container is the proxy.
func DetectMesh(pods []corev1.Pod) Mesh {
	var m Mesh
	for i := range pods {
		info, _ := inject.DetectMesh(&pods[i], nil, nil)
		if info.State != inject.MeshPresent {
			continue
		}
		m.Sidecars++
		if m.Name != "" {
			continue
		}
		m.Name, m.ProxyContainer = string(info.Name), info.ProxyContainer
		switch info.Name {
		case inject.MeshIstio:
			m.Type = smps.MeshTypeIstio
		case inject.MeshLinkerd:
			m.Type = smps.MeshTypeLinkerd
		}
		spec := &pods[i].Spec
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			if c.Name == info.ProxyContainer {
				m.ProxyImage = c.Image
			}
		}
	}
	return m
}

// imageTag is the tag of an image reference ("" for a digest-only or untagged one).
func imageTag(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// Environment describes the cluster for the EnvironmentConfig.
func Environment(ctx context.Context, cs kubernetes.Interface) (*smps.EnvironmentConfig, error) {
	env := &smps.EnvironmentConfig{SMPVersion: smps.Version}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return nil, err
	}
	env.KubernetesVersion = v.GitVersion
	// Nodes are cluster-scoped: a user allowed to load a namespace may not list them. The
	// environment is then described without them rather than failing the run.
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, n := range nodes.Items {
			typ := n.Labels[corev1.LabelInstanceTypeStable]
			if typ == "" {
				typ = n.Status.NodeInfo.OperatingSystem + "/" + n.Status.NodeInfo.Architecture + " " + n.Status.NodeInfo.KernelVersion
			}
			env.Nodes = append(env.Nodes, smps.Node{
				Type:  typ,
				Cores: int32(n.Status.Capacity.Cpu().Value()),
				MemMB: n.Status.Capacity.Memory().Value() >> 20,
			})
		}
	}
	return env, nil
}

// Documents are a run's output, encoded.
type Documents map[string][]byte

// Inputs is everything the documents are made from.
type Inputs struct {
	Record   *runstore.Record
	Load     loadgen.Config
	Result   *loadgen.Result
	Baseline *loadgen.Result
	Mesh     Mesh
	Env      *smps.EnvironmentConfig
	Overhead *smps.OverheadReport
	Probes   []probes.PodSnapshot
	// IDs of the SMPS documents, fresh per run.
	TestID, ResultID, MeshConfigID, EnvID string
}

// BuildDocuments writes the SMPS documents and the overhead report of a run. Every document is
// validated by the smps encoder: an invalid one is an error here, never a file.
func BuildDocuments(in Inputs) (Documents, error) {
	rec := in.Record
	labels := map[string]string{"kubectl-mesh.io/run": rec.Name, "kubectl-mesh.io/namespace": rec.Namespace}
	for k, v := range rec.Labels {
		labels[k] = v
	}
	client := in.Load.SMPSClient()
	// The generator runs as a pod of the cluster.
	client.Internal = true
	test := &smps.PerformanceTestConfig{
		SMPVersion: smps.Version, ID: in.TestID, Name: rec.Name, Labels: labels,
		Clients:  []smps.Client{client},
		Duration: in.Load.Duration.String(),
	}
	mesh := &smps.ServiceMeshConfig{SMPVersion: smps.Version, ID: in.MeshConfigID, Labels: labels, MeshType: in.Mesh.Type}
	if in.Mesh.Name != "" {
		mesh.ProxyBuild = imageTag(in.Mesh.ProxyImage)
		mesh.MeshBuild = mesh.ProxyBuild
		sc := &smps.Sidecar{Count: int32(in.Mesh.Sidecars)}
		// The probes' window is whole slots around the run, longer than the run itself, so rates
		// are taken over the run: requests and proxy CPU time divided by the measured phase.
		if o, secs := in.Overhead, in.Result.EndTime.Sub(in.Result.StartTime).Seconds(); o != nil && secs > 0 {
			var cpuMs, requests float64
			for _, p := range o.Pods {
				requests += float64(p.Requests)
				if p.ProxyCPUMsPer1000Requests != nil {
					cpuMs += *p.ProxyCPUMsPer1000Requests * float64(p.Requests) / 1000
				}
			}
			sc.CPUMcores = clampInt32(math.Round(cpuMs / secs))
			sc.RPS = clampInt32(math.Round(requests / secs))
		}
		mesh.Sidecar = sc
	}
	env := *in.Env
	env.ID, env.Labels = in.EnvID, labels

	result := &smps.PerformanceTestResult{
		SMPVersion: smps.Version, ID: in.ResultID, Labels: labels,
		TestID: in.TestID, MeshConfigID: in.MeshConfigID, EnvID: in.EnvID,
	}
	in.Result.FillSMPS(result)
	if in.Overhead != nil {
		// Relative: the documents are written side by side and stored side by side.
		result.DetailsURI = DocOverhead
	}
	meshery := &smps.MesheryTestConfig{Test: test, Mesh: &smps.ServiceMesh{Type: in.Mesh.Type, Version: mesh.MeshBuild}}

	docs := Documents{}
	for name, doc := range map[string]smps.Document{
		DocTestConfig: test, DocMeshConfig: mesh, DocEnvironment: &env, DocResult: result, DocMeshery: meshery,
	} {
		var b bytes.Buffer
		if err := smps.Encode(&b, doc, smps.YAML); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		docs[name] = b.Bytes()
	}
	if in.Overhead != nil {
		in.Overhead.ResultID = in.ResultID
		var b bytes.Buffer
		if err := smps.Encode(&b, in.Overhead, smps.YAML); err != nil {
			return nil, fmt.Errorf("%s: %w", DocOverhead, err)
		}
		docs[DocOverhead] = b.Bytes()
	}
	if len(in.Probes) > 0 {
		var recs []ProbeRecord
		for _, ps := range in.Probes {
			if !ps.Probed || ps.Pod == nil {
				continue
			}
			pr := ProbeRecord{Namespace: ps.Pod.Namespace, Pod: ps.Pod.Name, Snapshot: ps.Snapshot}
			if ps.Err != nil {
				pr.Error = ps.Err.Error()
			}
			recs = append(recs, pr)
		}
		b, err := jsonIndent(recs)
		if err != nil {
			return nil, err
		}
		docs[DocProbes] = b
	}
	for name, r := range map[string]*loadgen.Result{DocLoad: in.Result, DocBaselineLoad: in.Baseline} {
		if r == nil {
			continue
		}
		b, err := jsonIndent(r)
		if err != nil {
			return nil, err
		}
		docs[name] = b
	}
	return docs, nil
}

func clampInt32(f float64) int32 {
	switch {
	case math.IsNaN(f) || f < 0:
		return 0
	case f > math.MaxInt32:
		return math.MaxInt32
	}
	return int32(f)
}

// Summarize fills the record's headline figures.
func Summarize(res, baseline *loadgen.Result, o *smps.OverheadReport, pods int) *runstore.Summary {
	s := &runstore.Summary{
		Requests: res.Requests, Errors: res.Errors, ActualQPS: res.ActualQPS,
		ClientP50: res.LatencyMs.P50, ClientP90: res.LatencyMs.P90, ClientP99: res.LatencyMs.P99,
		Pods: pods,
	}
	if baseline != nil {
		s.BaselineP50, s.BaselineP90, s.BaselineP99 = &baseline.LatencyMs.P50, &baseline.LatencyMs.P90, &baseline.LatencyMs.P99
	}
	if o == nil {
		return s
	}
	for _, p := range o.Pods {
		if p.Probe.Status != smps.ProbeFailed {
			s.Probed++
		}
	}
	var cpu float64
	haveCPU := false
	for _, n := range o.Namespaces {
		if t := n.ProxyAddedLatencyMs; t != nil && s.ProxyAddedP50 == nil {
			s.ProxyAddedP50, s.ProxyAddedP90, s.ProxyAddedP99 = &t.P50, &t.P90, &t.P99
		}
		if n.ProxyCPUMillicores != nil {
			cpu += *n.ProxyCPUMillicores
			haveCPU = true
		}
	}
	if haveCPU {
		s.ProxyCPUMillicores = &cpu
	}
	return s
}

// startEnd are the measured phase's bounds.
func startEnd(r *loadgen.Result) (time.Time, time.Time) { return r.StartTime.UTC(), r.EndTime.UTC() }
