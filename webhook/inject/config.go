package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	probeconfig "github.com/kubectl-mesh/kubectl-mesh/probe/config"
)

// Labels and annotations this package reads or writes.
const (
	// LabelProbe on a namespace opts every pod in it in, with value ValueEnabled.
	LabelProbe = "kubectl-mesh.io/probe"
	// AnnotationProbe on a pod overrides the namespace label: ValueEnabled or ValueDisabled.
	AnnotationProbe = "kubectl-mesh.io/probe"
	// AnnotationStatus records what was injected, as JSON (see Status).
	AnnotationStatus = "kubectl-mesh.io/probe-status"
	// LabelAllowPSA=true on a namespace lets the probe in although the namespace enforces
	// baseline or restricted Pod Security (see the package documentation for when that is safe).
	LabelAllowPSA = "kubectl-mesh.io/probe-allow-psa"
	// LabelPSAEnforce is Pod Security Admission's enforce-level namespace label.
	LabelPSAEnforce = "pod-security.kubernetes.io/enforce"

	ValueEnabled  = "enabled"
	ValueDisabled = "disabled"
)

// The injected container's fixed identity. They are not configurable on purpose: kubectl-mesh
// finds the probe by name and scrapes it by port name, across every namespace.
const (
	ProbeContainerName = "mesh-probe"
	ProbePortName      = "mesh-probe"
	ProbePort          = 9464
)

// Defaults for Config.
const (
	DefaultVersion      = "v0.1.0"
	DefaultImage        = "ghcr.io/kubectl-mesh/mesh-probe:" + DefaultVersion
	DefaultOwnNamespace = "kubectl-mesh-system"
	DefaultLogLevel     = "info"
)

// Default resources: the probe only reads eBPF maps and serves a small HTTP endpoint, so it asks
// for little; the limits cap a runaway probe well below what could hurt the workload it measures.
var (
	DefaultCPURequest    = resource.MustParse("10m")
	DefaultMemoryRequest = resource.MustParse("32Mi")
	DefaultCPULimit      = resource.MustParse("200m")
	DefaultMemoryLimit   = resource.MustParse("64Mi")
)

var logLevels = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}

// Config is the operator-tunable part of injection. The zero value is valid: every empty field
// takes its default.
type Config struct {
	// Image of the probe. Default DefaultImage.
	Image string `json:"image,omitempty"`
	// Version is recorded in the status annotation, so `kubectl mesh` can tell probe versions
	// apart. Default: the image's tag, or DefaultVersion when the image is the default.
	Version string `json:"version,omitempty"`
	// ImagePullPolicy of the probe. Default IfNotPresent (set explicitly so the API server's
	// defaulting, which would pick Always for :latest, cannot change what we injected).
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Resources of the probe. A missing cpu or memory request or limit takes its default.
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// LogLevel of the probe: debug, info, warn or error. Default info.
	LogLevel string `json:"logLevel,omitempty"`
	// SampleAboveRPS is the probe's MESH_PROBE_SAMPLE_ABOVE_RPS: the request rate above which
	// it follows requests during part of each period only ("0": every request at any rate).
	// Empty: not set, the probe's default (docs/probe.md, "Sampling above a rate").
	SampleAboveRPS string `json:"sampleAboveRps,omitempty"`
	// OwnNamespace is where kubectl-mesh runs; it is never injected. Default
	// DefaultOwnNamespace.
	OwnNamespace string `json:"ownNamespace,omitempty"`
}

// WithDefaults returns c with every empty field set to its default. It does not modify c.
func (c Config) WithDefaults() Config {
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.Version == "" {
		c.Version = imageTag(c.Image)
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.OwnNamespace == "" {
		c.OwnNamespace = DefaultOwnNamespace
	}
	c.Resources = corev1.ResourceRequirements{
		Requests: withDefaultQuantities(c.Resources.Requests, DefaultCPURequest, DefaultMemoryRequest),
		Limits:   withDefaultQuantities(c.Resources.Limits, DefaultCPULimit, DefaultMemoryLimit),
		Claims:   c.Resources.Claims,
	}
	return c
}

// withDefaultQuantities copies l (the caller's map is never shared with a pod) and fills a
// missing cpu or memory entry.
func withDefaultQuantities(l corev1.ResourceList, cpu, mem resource.Quantity) corev1.ResourceList {
	out := make(corev1.ResourceList, len(l)+2)
	for k, v := range l {
		out[k] = v.DeepCopy()
	}
	if _, ok := out[corev1.ResourceCPU]; !ok {
		out[corev1.ResourceCPU] = cpu.DeepCopy()
	}
	if _, ok := out[corev1.ResourceMemory]; !ok {
		out[corev1.ResourceMemory] = mem.DeepCopy()
	}
	return out
}

// ResourceFlags are the probe's resources as command-line strings (mesh-webhook's
// --probe-cpu-request and friends, which `kubectl mesh probe install` passes on); empty means
// the default.
type ResourceFlags struct {
	CPURequest, CPULimit, MemoryRequest, MemoryLimit string
}

// Resources parses the flags into requirements for Config.Resources, naming the flag of a
// malformed quantity. Whether requests fit their limits is Validate's (after defaults).
func (f ResourceFlags) Resources() (corev1.ResourceRequirements, error) {
	var r corev1.ResourceRequirements
	for _, q := range []struct {
		flag, value string
		list        *corev1.ResourceList
		name        corev1.ResourceName
	}{
		{"--probe-cpu-request", f.CPURequest, &r.Requests, corev1.ResourceCPU},
		{"--probe-cpu-limit", f.CPULimit, &r.Limits, corev1.ResourceCPU},
		{"--probe-memory-request", f.MemoryRequest, &r.Requests, corev1.ResourceMemory},
		{"--probe-memory-limit", f.MemoryLimit, &r.Limits, corev1.ResourceMemory},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			return r, fmt.Errorf("%s %q: not a Kubernetes quantity (e.g. 50m or 0.5 for CPU, 64Mi for memory)", q.flag, q.value)
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = v
	}
	return r, nil
}

// Args returns the flags for mesh-webhook's command line.
func (f ResourceFlags) Args() []string {
	var args []string
	for _, a := range []struct{ flag, value string }{
		{"--probe-cpu-request", f.CPURequest}, {"--probe-cpu-limit", f.CPULimit},
		{"--probe-memory-request", f.MemoryRequest}, {"--probe-memory-limit", f.MemoryLimit},
	} {
		if a.value != "" {
			args = append(args, a.flag+"="+a.value)
		}
	}
	return args
}

// imageTag returns the tag of an image reference, or "unknown" when it has none (a digest-only
// or untagged reference).
func imageTag(image string) string {
	ref := image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash && colon+1 < len(ref) {
		return ref[colon+1:]
	}
	return "unknown"
}

// Validate reports the first problem of the defaulted configuration. An invalid configuration
// must be caught at start-up (NewHandler calls this); Decide checks again and refuses to inject
// rather than produce a pod the API server would reject.
func (c Config) Validate() error {
	return c.WithDefaults().validate()
}

// validate checks an already defaulted configuration.
func (c Config) validate() error {
	if strings.ContainsAny(c.Image, " \t\r\n") {
		return fmt.Errorf("image %q contains whitespace", c.Image)
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("imagePullPolicy %q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if !logLevels[c.LogLevel] {
		return fmt.Errorf("logLevel %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.SampleAboveRPS != "" {
		if _, err := probeconfig.ParseSampleAboveRPS(c.SampleAboveRPS); err != nil {
			return fmt.Errorf("sampleAboveRps %q: %v", c.SampleAboveRPS, err)
		}
	}
	if errs := validation.IsDNS1123Label(c.OwnNamespace); len(errs) > 0 {
		return fmt.Errorf("ownNamespace %q: %s", c.OwnNamespace, strings.Join(errs, "; "))
	}
	for name, req := range c.Resources.Requests {
		if req.Sign() < 0 {
			return fmt.Errorf("resources.requests.%s is negative", name)
		}
		if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
			return fmt.Errorf("resources.requests.%s (%s) exceeds its limit (%s)", name, req.String(), lim.String())
		}
	}
	for name, lim := range c.Resources.Limits {
		if lim.Sign() < 0 {
			return fmt.Errorf("resources.limits.%s is negative", name)
		}
	}
	return nil
}
