package inject

import (
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestReinvocationIstioNative plays the webhook chain with reinvocationPolicy IfNeeded: we inject
// while Istio is only expected, Istio's injector then adds a native istio-proxy after our probe
// and rewrites our probe's health checks, and we are invoked again. The second pass must
// reconfigure and move the probe without undoing Istio's changes, and a third pass must change
// nothing.
func TestReinvocationIstioNative(t *testing.T) {
	tc := loadCase(t, "testdata/istio-expected.yaml")
	d := Decide(tc.input(&tc.Pod))
	if d.Reason != ReasonInjected || d.Mesh.State != MeshExpected {
		t.Fatalf("first pass: %s (%s)", d.Reason, d.Message)
	}
	pod, _ := applyPatch(t, mustJSON(t, &tc.Pod), d.Patch)

	// Istio's injector: init container, native proxy appended after our probe, status
	// annotation, its probe rewrite of every other container, and an env var of its own.
	always := corev1.ContainerRestartPolicyAlways
	pod.Spec.InitContainers = append([]corev1.Container{{Name: "istio-init", Image: "istio/proxyv2"}}, pod.Spec.InitContainers...)
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{
		Name: IstioProxyContainer, Image: "istio/proxyv2", RestartPolicy: &always,
		Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}},
	})
	pod.Annotations[annIstioStatus] = `{"initContainers":["istio-init","istio-proxy"]}`
	probe := &pod.Spec.InitContainers[1]
	probe.LivenessProbe.HTTPGet.Path = "/app-health/mesh-probe/livez"
	probe.LivenessProbe.HTTPGet.Port = intstr.FromInt32(15020)
	probe.Env = append(probe.Env, corev1.EnvVar{Name: "ISTIO_META_FOO", Value: "bar"})
	doc := mustJSON(t, pod)

	d = Decide(tc.input(pod))
	if d.Reason != ReasonUpdated || d.Mesh.State != MeshPresent || !d.Mesh.NativeProxy {
		t.Fatalf("second pass: %s (%s)", d.Reason, d.Message)
	}
	checkDecisionShape(t, d)
	t.Logf("second pass: %s\n%s", d.Message, mustJSON(t, d.Patch))
	for _, op := range d.Patch {
		if op.Op == "add" && (op.Path == "/spec/initContainers" || op.Path == "/spec/initContainers/-") {
			t.Errorf("second pass adds a container: %+v", op)
		}
	}
	pod, _ = applyPatch(t, doc, d.Patch)
	checkProbe(t, pod, true)
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == ProbeContainerName })
	if pod.Spec.InitContainers[i-1].Name != IstioProxyContainer {
		t.Errorf("probe at initContainers[%d] is not right after istio-proxy: %v", i, containerNames(pod.Spec.InitContainers))
	}
	probe = &pod.Spec.InitContainers[i]
	if probe.LivenessProbe.HTTPGet.Path != "/app-health/mesh-probe/livez" || env(probe, "ISTIO_META_FOO") != "bar" {
		t.Error("the update undid Istio's changes to the probe container")
	}
	if env(probe, EnvMesh) != string(MeshIstio) || env(probe, EnvProxyContainer) != IstioProxyContainer {
		t.Errorf("probe not configured for Istio: mesh %q proxy %q", env(probe, EnvMesh), env(probe, EnvProxyContainer))
	}
	st, err := ParseStatus(pod.Annotations[AnnotationStatus])
	if err != nil || st.MeshState != MeshPresent {
		t.Errorf("status %+v, %v", st, err)
	}

	d = Decide(tc.input(pod))
	if d.Reason != ReasonAlreadyInjected || len(d.Patch) != 0 {
		t.Fatalf("third pass: %s with %d ops (%s)", d.Reason, len(d.Patch), d.Message)
	}
}

// TestReinvocationLinkerdClassic: a server without native sidecars, Linkerd expected through the
// namespace annotation, then its injector adds linkerd-proxy with a non-default inbound port.
func TestReinvocationLinkerdClassic(t *testing.T) {
	tc := loadCase(t, "testdata/no-native-sidecars.yaml")
	tc.Namespace.Annotations = map[string]string{annLinkerdInject: "enabled"}
	d := Decide(tc.input(&tc.Pod))
	if d.Reason != ReasonInjected || d.Mesh.Name != MeshLinkerd || d.Mesh.State != MeshExpected {
		t.Fatalf("first pass: %s %+v", d.Reason, d.Mesh)
	}
	pod, _ := applyPatch(t, mustJSON(t, &tc.Pod), d.Patch)

	pod.Spec.Containers = append([]corev1.Container{{
		Name: LinkerdProxyContainer, Image: "cr.l5d.io/linkerd/proxy",
		Env: []corev1.EnvVar{{Name: envLinkerdInboundAddr, Value: "[::]:4999"}},
	}}, pod.Spec.Containers...)
	doc := mustJSON(t, pod)

	d = Decide(tc.input(pod))
	if d.Reason != ReasonUpdated || d.Mesh.InboundPort != 4999 {
		t.Fatalf("second pass: %s inbound %d (%s)", d.Reason, d.Mesh.InboundPort, d.Message)
	}
	for _, op := range d.Patch {
		if op.Op == "move" {
			t.Errorf("a regular container never moves: %+v", op)
		}
	}
	pod, _ = applyPatch(t, doc, d.Patch)
	checkProbe(t, pod, false)
	probe := findProbes(pod)[0].container
	if env(probe, EnvProxyInboundPort) != "4999" {
		t.Errorf("probe env not updated: %v", probe.Env)
	}
	if st, err := ParseStatus(pod.Annotations[AnnotationStatus]); err != nil || st.MeshState != MeshPresent {
		t.Errorf("status %+v, %v", st, err)
	}
	if d = Decide(tc.input(pod)); d.Reason != ReasonAlreadyInjected || len(d.Patch) != 0 {
		t.Fatalf("third pass: %s (%s)", d.Reason, d.Message)
	}
}

// TestReinvocationRemovesRejectedProbe: a later webhook makes the pod's only port bypass the
// proxy, a configuration the probe refuses; the probe injected on the first pass is taken out
// rather than left to crash-loop, and further passes leave the pod alone.
func TestReinvocationRemovesRejectedProbe(t *testing.T) {
	tc := loadCase(t, "testdata/no-native-sidecars.yaml")
	tc.Namespace.Annotations = map[string]string{annLinkerdInject: "enabled"}
	d := Decide(tc.input(&tc.Pod))
	if d.Reason != ReasonInjected {
		t.Fatalf("first pass: %s (%s)", d.Reason, d.Message)
	}
	pod, _ := applyPatch(t, mustJSON(t, &tc.Pod), d.Patch)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: LinkerdProxyContainer, Image: "cr.l5d.io/linkerd/proxy"})
	pod.Annotations[annLinkerdSkipInbound] = "8080"
	doc := mustJSON(t, pod)

	d = Decide(tc.input(pod))
	if d.Reason != ReasonRemoved || d.Action != ActionRemove || d.EventReason() != EventProbeSkipped || len(d.Warnings) == 0 {
		t.Fatalf("second pass: %s %s (%s)", d.Reason, d.Action, d.Message)
	}
	checkDecisionShape(t, d)
	pod, _ = applyPatch(t, doc, d.Patch)
	if len(findProbes(pod)) != 0 || pod.Annotations[AnnotationStatus] != "" || len(pod.Spec.Volumes) != len(tc.Pod.Spec.Volumes) {
		t.Fatalf("probe, status or volume left behind: %v, volumes %v", containerNames(pod.Spec.Containers), pod.Spec.Volumes)
	}
	if d = Decide(tc.input(pod)); d.Reason != ReasonProbeConfigRejected || len(d.Patch) != 0 {
		t.Fatalf("third pass: %s (%s)", d.Reason, d.Message)
	}
}

// TestStaleStatusAnnotation: a manifest copied from an injected pod keeps the status annotation
// but not the container; the probe is injected and the annotation replaced.
func TestStaleStatusAnnotation(t *testing.T) {
	tc := loadCase(t, "testdata/plain.yaml")
	tc.Pod.Annotations = map[string]string{AnnotationStatus: `{"container":"mesh-probe","image":"old","configHash":"x"}`}
	d := Decide(tc.input(&tc.Pod))
	if d.Reason != ReasonInjected {
		t.Fatalf("%s: %s", d.Reason, d.Message)
	}
	pod, _ := applyPatch(t, mustJSON(t, &tc.Pod), d.Patch)
	checkProbe(t, pod, true)
}

// TestStatusWithoutContainerMatch: a status annotation that is not ours makes the container
// unmanaged.
func TestStatusNotOurs(t *testing.T) {
	tc := loadCase(t, "testdata/already-probed.yaml")
	for _, bad := range []string{"{", `{"container":"other","configHash":"x"}`, `{"container":"mesh-probe"}`} {
		pod := tc.Pod.DeepCopy()
		pod.Annotations[AnnotationStatus] = bad
		if d := Decide(tc.input(pod)); d.Reason != ReasonProbePresent || len(d.Warnings) == 0 {
			t.Errorf("status %q: %s", bad, d.Reason)
		}
	}
	pod := tc.Pod.DeepCopy()
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ProbeContainerName})
	if d := Decide(tc.input(pod)); d.Reason != ReasonProbePresent {
		t.Errorf("two probes: %s", d.Reason)
	}
}

func env(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return "<unset>"
}

func containerNames(cs []corev1.Container) string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	b, _ := json.Marshal(names)
	return string(b)
}
