package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Input is everything Decide looks at. It is plain data, so Decide is a pure function and the
// golden tests can feed it from YAML.
type Input struct {
	// Pod is the pod being created, as the API server sent it.
	Pod *corev1.Pod
	// Namespace is the admission request's namespace; the pod's own metadata.namespace is often
	// empty at creation. When empty, Pod.Namespace is used.
	Namespace string
	// NamespaceLabels carry the opt-in label, Pod Security levels, our PSA override and Istio's
	// injection labels.
	NamespaceLabels map[string]string
	// NamespaceAnnotations carry Linkerd's namespace-wide linkerd.io/inject and config.linkerd.io
	// annotations.
	NamespaceAnnotations map[string]string
	// NamespaceErr is set when the namespace could not be read. Opt-in and Pod Security cannot be
	// checked then, so only an explicit pod opt-out or a hard exclusion is decided; nothing is
	// injected.
	NamespaceErr error
	// NativeSidecars says the API server runs native sidecars (init containers with
	// restartPolicy Always; on by default since Kubernetes 1.29, see NativeSidecarsSupported).
	NativeSidecars bool
	// Config tunes the injected container; the zero value means all defaults.
	Config Config
}

// Decision is the outcome of Decide: what to do, why (Reason, for metrics and event reasons) and
// in words (Message, for events and logs), plus the patch that does it.
type Decision struct {
	Action  Action `json:"action"`
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
	// Warnings are shown to the user who created the pod (admission warnings). They are set when
	// the user asked for the probe and does not get it, and for unusable annotations.
	Warnings []string `json:"warnings,omitempty"`
	// Mesh is the detected mesh, set once the decision got as far as looking at it.
	Mesh *MeshInfo `json:"mesh,omitempty"`
	// Patch is the RFC 6902 patch against the incoming pod; empty unless Action is inject or
	// update.
	Patch []PatchOperation `json:"patch,omitempty"`
}

// Event reasons for the Kubernetes events a caller may record about a Decision.
const (
	EventProbeInjected = "ProbeInjected"
	EventProbeSkipped  = "ProbeSkipped"
)

// EventReason is the Kubernetes event reason for d: ProbeInjected when the pod is patched,
// ProbeSkipped otherwise.
func (d Decision) EventReason() string {
	if d.Action == ActionInject || d.Action == ActionUpdate {
		return EventProbeInjected
	}
	return EventProbeSkipped
}

// systemNamespaces are never injected: they run the control plane, and a broken probe there could
// take down the cluster the probe is supposed to observe.
var systemNamespaces = map[string]bool{
	"kube-system":     true,
	"kube-public":     true,
	"kube-node-lease": true,
}

// Decide is the whole injection policy. The checks run in a fixed order and the first that
// matches decides; the package documentation lists them. Decide never fails: every input,
// however odd, yields a Decision with a reason and a message.
func Decide(in Input) Decision {
	cfg := in.Config.WithDefaults()
	if err := cfg.validate(); err != nil {
		return decided(ReasonInvalidConfig, "injector configuration is invalid: %v", err).warn("the injector is misconfigured")
	}
	pod := in.Pod
	if pod == nil {
		return decided(ReasonMalformedPod, "the request carries no pod")
	}
	ns := in.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	switch {
	case ns == "":
		return decided(ReasonMalformedPod, "the pod has no namespace")
	case systemNamespaces[ns]:
		return decided(ReasonSystemNamespace, "namespace %s is a Kubernetes system namespace and is never injected", ns)
	case ns == cfg.OwnNamespace:
		return decided(ReasonOwnNamespace, "namespace %s is kubectl-mesh's own namespace and is never injected", ns)
	}

	// Opt-in: the pod's choice overrides the namespace label in both directions.
	podOpt, podSource, warnings := podChoice(pod)
	if podOpt == ValueDisabled {
		return decided(ReasonPodOptedOut, "pod %s=%s opts the pod out", podSource, ValueDisabled).addWarnings(warnings)
	}
	explicit := podOpt == ValueEnabled
	if in.NamespaceErr != nil {
		d := decided(ReasonNamespaceUnavailable, "namespace %s could not be read, so opt-in and Pod Security cannot be checked: %v", ns, in.NamespaceErr)
		if explicit {
			d = d.warn("namespace " + ns + " could not be read")
		}
		return d.addWarnings(warnings)
	}
	var source string
	switch {
	case explicit:
		source = fmt.Sprintf("pod %s=%s", podSource, ValueEnabled)
	case in.NamespaceLabels[LabelProbe] == ValueEnabled:
		source = fmt.Sprintf("namespace label %s=%s", LabelProbe, ValueEnabled)
	default:
		return decided(ReasonNamespaceNotEnabled, "namespace %s is not labelled %s=%s and the pod has no %s=%s annotation or label",
			ns, LabelProbe, ValueEnabled, AnnotationProbe, ValueEnabled).addWarnings(warnings)
	}

	// From here on the user asked for the probe, so every skip is also a warning.
	if pod.Spec.HostNetwork {
		return decided(ReasonHostNetwork, "the pod uses hostNetwork; the probe would observe the node's network, not the pod's").
			warn("hostNetwork pods are never injected").addWarnings(warnings)
	}
	if pod.Spec.OS != nil && pod.Spec.OS.Name != "" && pod.Spec.OS.Name != corev1.Linux {
		return decided(ReasonUnsupportedOS, "the pod runs on %s; the eBPF probe runs on Linux only", pod.Spec.OS.Name).
			warn("the probe runs on Linux only").addWarnings(warnings)
	}
	psaNote := ""
	if level, enforced := psaEnforced(in.NamespaceLabels); enforced {
		if in.NamespaceLabels[LabelAllowPSA] != "true" {
			return decided(ReasonPodSecurity, "namespace %s enforces Pod Security %q (%s); the probe needs CAP_BPF, "+
				"CAP_PERFMON and CAP_NET_ADMIN, which baseline and restricted reject, so the pod would be refused; "+
				"label the namespace %s=true only if its PSA exemptions admit the probe",
				ns, level, LabelPSAEnforce, LabelAllowPSA).
				warn(fmt.Sprintf("namespace enforces Pod Security %s; see label %s", truncate(level, 32), LabelAllowPSA)).
				addWarnings(warnings)
		}
		psaNote = fmt.Sprintf("; Pod Security %q overridden by namespace label %s=true", level, LabelAllowPSA)
	}

	mesh, meshWarnings := DetectMesh(pod, in.NamespaceLabels, in.NamespaceAnnotations)
	warnings = append(warnings, meshWarnings...)
	ports := appPorts(pod)
	env := probeEnv(cfg, mesh, ports)

	if probes := findProbes(pod); len(probes) > 0 {
		d := decideExisting(pod, probes, mesh, env)
		d.Mesh = &mesh
		return d.addWarnings(warnings)
	}
	skip := func(d Decision) Decision {
		d.Mesh = &mesh
		return d.addWarnings(warnings)
	}
	if conflict := portConflict(pod); conflict != "" {
		return skip(decided(ReasonPortConflict, "%s; the probe serves on port %d named %s", conflict, ProbePort, ProbePortName).
			warn(fmt.Sprintf("port %d or port name %s is already used", ProbePort, ProbePortName)))
	}
	if len(ports) == 0 {
		return skip(decided(ReasonNoAppPorts, "no container declares a TCP port; the probe measures requests to declared ports and would have none").
			warn("declare the app's containerPorts to measure it"))
	}
	if err := validateProbeEnv(env); err != nil {
		return skip(decided(ReasonProbeConfigRejected, "the probe would reject the configuration this pod gives it: %v", err).
			warn("the probe would reject this pod's configuration"))
	}

	native := in.NativeSidecars
	idx, where := len(pod.Spec.Containers), "as a container"
	if native {
		idx, where = len(pod.Spec.InitContainers), "as a native sidecar"
		if mesh.NativeProxy {
			// After the mesh's native proxy: sidecars start in order, so the proxy and its
			// traffic redirection are in place when the probe attaches, and at shutdown the
			// probe, stopping first, still sees the proxy drain.
			idx = mesh.proxyIndex + 1
			where += " after " + mesh.ProxyContainer
		}
	}
	st := Status{
		Container: ProbeContainerName, Image: cfg.Image, Version: cfg.Version, Native: native,
		Mesh: mesh.Name, MeshState: mesh.State, ConfigHash: configHash(env),
	}
	d := decided(ReasonInjected, "injected %s %s (%s); %s%s",
		ProbeContainerName, where, source, describeMesh(mesh), psaNote)
	d.Mesh = &mesh
	d.Patch = injectPatch(pod, probeContainer(cfg, native, env), native, idx, st)
	return d.addWarnings(warnings)
}

// decideExisting handles a pod that already has a container named mesh-probe: reinvocation, or a
// manifest copied from an injected pod, or a container of the user's own.
func decideExisting(pod *corev1.Pod, probes []probeLocation, mesh MeshInfo, env []corev1.EnvVar) Decision {
	if len(probes) > 1 {
		return decided(ReasonProbePresent, "the pod has %d containers named %s; leaving them alone", len(probes), ProbeContainerName).warn(unmanagedWarning)
	}
	raw, ok := pod.Annotations[AnnotationStatus]
	if !ok {
		return decided(ReasonProbePresent, "the pod already has a %s container without the %s annotation, so it is not ours; leaving it alone",
			ProbeContainerName, AnnotationStatus).warn(unmanagedWarning)
	}
	st, err := ParseStatus(raw)
	if err != nil {
		return decided(ReasonProbePresent, "the pod already has a %s container but %v; leaving it alone", ProbeContainerName, err).warn(unmanagedWarning)
	}

	at := probes[0]
	path := listPath(at.native) + "/" + strconv.Itoa(at.index)
	next := st
	next.Mesh, next.MeshState, next.ConfigHash = mesh.Name, mesh.State, configHash(env)
	needsMove := at.native && mesh.NativeProxy && mesh.proxyIndex > at.index
	if next == st && !needsMove {
		return decided(ReasonAlreadyInjected, "%s is already injected and up to date; %s", ProbeContainerName, describeMesh(mesh))
	}

	if next.ConfigHash != st.ConfigHash {
		if err := validateProbeEnv(env); err != nil {
			// The pod is not created yet, so the probe can still be taken out; leaving it would
			// leave a probe that never starts and a pod that never becomes ready.
			d := decided(ReasonRemoved, "removed %s injected earlier: the pod as changed since gives it a configuration it rejects: %v", ProbeContainerName, err).
				warn("the probe would reject this pod's configuration")
			d.Patch = []PatchOperation{
				{Op: "remove", Path: path},
				{Op: "remove", Path: "/metadata/annotations/" + escapePointer(AnnotationStatus)},
			}
			// And the empty volume the probe mounted over the token path, which nothing else uses.
			if i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TokenShadowVolume }); i >= 0 {
				d.Patch = append(d.Patch, PatchOperation{Op: "remove", Path: "/spec/volumes/" + strconv.Itoa(i)})
			}
			return d
		}
	}
	var ops []PatchOperation
	var what []string
	if next.ConfigHash != st.ConfigHash {
		ops = envPatch(path, at.container.Env, env)
		what = append(what, "reconfigured it")
	}
	if needsMove {
		// "move" keeps the container as it is, including changes other webhooks made to it.
		// After removing index at.index the proxy sits at proxyIndex-1, so proxyIndex is the
		// slot right after it.
		ops = append(ops, PatchOperation{Op: "move", From: path, Path: listPath(true) + "/" + strconv.Itoa(mesh.proxyIndex)})
		what = append(what, "moved it after "+mesh.ProxyContainer)
	}
	if next != st {
		ops = append(ops, setAnnotation(pod, AnnotationStatus, next.String()))
		if len(what) == 0 {
			what = append(what, "updated its status")
		}
	}
	d := decided(ReasonUpdated, "%s was injected earlier; %s; %s", ProbeContainerName, strings.Join(what, " and "), describeMesh(mesh))
	d.Patch = ops
	return d
}

// podChoice is the pod's own opt-in or opt-out: the annotation kubectl-mesh.io/probe, else the
// label of the same name (a label lets the webhook configuration's objectSelector act on it
// before the API server even calls us). An invalid value is ignored with a warning.
func podChoice(pod *corev1.Pod) (value, source string, warnings []string) {
	for _, c := range []struct {
		kind string
		m    map[string]string
		key  string
	}{{"annotation", pod.Annotations, AnnotationProbe}, {"label", pod.Labels, LabelProbe}} {
		v, ok := c.m[c.key]
		if !ok {
			continue
		}
		if v == ValueEnabled || v == ValueDisabled {
			return v, c.kind + " " + c.key, warnings
		}
		warnings = append(warnings, fmt.Sprintf("kubectl-mesh: ignored %s %s=%q (want %s or %s)",
			c.kind, c.key, truncate(v, 32), ValueEnabled, ValueDisabled))
	}
	return "", "", warnings
}

// probeLocation is where a container named mesh-probe is.
type probeLocation struct {
	native    bool // in initContainers
	index     int
	container *corev1.Container
}

func findProbes(pod *corev1.Pod) []probeLocation {
	var out []probeLocation
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == ProbeContainerName {
			out = append(out, probeLocation{true, i, &pod.Spec.InitContainers[i]})
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ProbeContainerName {
			out = append(out, probeLocation{false, i, &pod.Spec.Containers[i]})
		}
	}
	return out
}

// portConflict describes a container that already declares the probe's port number or name.
// Containers share the pod's network namespace, so the probe could not bind, and a named port
// would become ambiguous for Services and scrapers.
func portConflict(pod *corev1.Pod) string {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.ContainerPort == ProbePort || p.Name == ProbePortName {
					return fmt.Sprintf("container %s already declares port %d (%q)", c.Name, p.ContainerPort, p.Name)
				}
			}
		}
	}
	return ""
}

// psaEnforced returns the namespace's Pod Security enforce level and whether it rejects the
// probe. Anything but privileged does: baseline and restricted forbid added capabilities, and PSA
// evaluates an invalid level as restricted.
func psaEnforced(labels map[string]string) (level string, enforced bool) {
	level, ok := labels[LabelPSAEnforce]
	return level, ok && level != "privileged"
}

func describeMesh(m MeshInfo) string {
	if m.Name == MeshNone {
		return "no mesh detected"
	}
	return fmt.Sprintf("mesh %s %s (%s)", m.Name, m.State, strings.Join(m.Evidence, ", "))
}

func decided(r Reason, format string, args ...any) Decision {
	return Decision{Action: reasons[r].Action, Reason: r, Message: fmt.Sprintf(format, args...)}
}

const unmanagedWarning = "the pod already has a " + ProbeContainerName + " container not injected by kubectl-mesh"

// warn adds a warning for the user who created the pod. Warnings are short (the API asks for
// at most 120 characters and may truncate past 256) and end with the reason to look up; the
// full story is in the message, which goes to events and logs.
func (d Decision) warn(short string) Decision {
	d.Warnings = append(d.Warnings, fmt.Sprintf("kubectl-mesh probe not injected: %s (%s)", short, d.Reason))
	return d
}

// truncate shortens user-provided text quoted in warnings.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (d Decision) addWarnings(w []string) Decision {
	d.Warnings = append(d.Warnings, w...)
	return d
}
