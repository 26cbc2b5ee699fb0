package inject

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// testCase is one testdata/*.yaml input.
type testCase struct {
	NativeSidecars bool             `json:"nativeSidecars"`
	Config         Config           `json:"config,omitempty"`
	Namespace      corev1.Namespace `json:"namespace"`
	Pod            corev1.Pod       `json:"pod"`
	Expect         struct {
		Reason Reason `json:"reason"`
	} `json:"expect"`
}

func loadCase(t testing.TB, path string) testCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tc testCase
	if err := yaml.UnmarshalStrict(b, &tc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tc
}

func caseFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test cases in testdata: %v", err)
	}
	return files
}

func (tc testCase) input(pod *corev1.Pod) Input {
	return Input{
		Pod:                  pod,
		Namespace:            tc.Namespace.Name,
		NamespaceLabels:      tc.Namespace.Labels,
		NamespaceAnnotations: tc.Namespace.Annotations,
		NativeSidecars:       tc.NativeSidecars,
		Config:               tc.Config,
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyPatch applies ops to doc with an independent RFC 6902 implementation, then decodes the
// result strictly, so a patch that produces a field a pod does not have fails.
func applyPatch(t testing.TB, doc []byte, ops []PatchOperation) (*corev1.Pod, []byte) {
	t.Helper()
	raw, err := EncodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", raw, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying patch %s: %v", raw, err)
	}
	pod := &corev1.Pod{}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(pod); err != nil {
		t.Fatalf("patched pod does not decode: %v\n%s", err, out)
	}
	return pod, out
}

// checkProbe checks that pod carries exactly one well-formed probe, where it belongs.
func checkProbe(t testing.TB, pod *corev1.Pod, native bool) {
	t.Helper()
	probes := findProbes(pod)
	if len(probes) != 1 {
		t.Fatalf("want exactly one %s container, got %d", ProbeContainerName, len(probes))
	}
	names := map[string]bool{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if names[c.Name] {
			t.Errorf("duplicate container name %q", c.Name)
		}
		names[c.Name] = true
	}
	at := probes[0]
	c := at.container
	if at.native != native {
		t.Errorf("probe in initContainers = %v, want %v", at.native, native)
	}
	if native != isNativeSidecar(c) {
		t.Errorf("probe restartPolicy = %v, want native sidecar %v", c.RestartPolicy, native)
	}
	if mesh, _ := DetectMesh(pod, nil, nil); native && mesh.NativeProxy && at.index < mesh.proxyIndex {
		t.Errorf("probe at initContainers[%d] is before the native proxy at [%d]", at.index, mesh.proxyIndex)
	}
	st, err := ParseStatus(pod.Annotations[AnnotationStatus])
	if err != nil {
		t.Fatalf("status annotation: %v", err)
	}
	if st.Image != c.Image || st.Native != native {
		t.Errorf("status %+v does not describe the container (image %s, native %v)", st, c.Image, native)
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("probe has no security context")
	}
	if got := capNames(sc.Capabilities.Add); got != "BPF,NET_ADMIN,PERFMON" {
		t.Errorf("capabilities add %s", got)
	}
	if got := capNames(sc.Capabilities.Drop); got != "ALL" {
		t.Errorf("capabilities drop %s", got)
	}
	if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("security context %+v", sc)
	}
	// One mount: the empty read-only directory over the service-account token's path, which
	// keeps the token out of the probe (and the ServiceAccount plugin from changing the pod
	// after us). Nothing else, and nothing from the host.
	if len(c.VolumeMounts) != 1 || len(c.VolumeDevices) != 0 || c.VolumeMounts[0].Name != TokenShadowVolume ||
		c.VolumeMounts[0].MountPath != serviceAccountTokenPath || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("probe mounts %v %v; it must mount only the empty directory over the token", c.VolumeMounts, c.VolumeDevices)
	}
	shadows := 0
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("pod has hostPath volume %s", v.Name)
		}
		if v.Name == TokenShadowVolume {
			shadows++
			if v.EmptyDir == nil {
				t.Errorf("volume %s is not an emptyDir: %+v", v.Name, v.VolumeSource)
			}
		}
	}
	if shadows != 1 {
		t.Errorf("pod has %d volumes %s, want 1", shadows, TokenShadowVolume)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != ProbePort || c.Ports[0].Name != ProbePortName {
		t.Errorf("ports %+v", c.Ports)
	}
	// No readiness probe: the probe's readiness would gate the workload's traffic.
	if c.ReadinessProbe != nil {
		t.Errorf("the probe has a readiness probe: while it restarts, the workload would leave its Services")
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz"} {
		if probe != nil && probe.HTTPGet != nil && strings.HasPrefix(probe.HTTPGet.Path, "/app-health/"+ProbeContainerName+"/") {
			continue // rewritten by Istio's injector to go through pilot-agent; that is fine
		}
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.StrVal != ProbePortName {
			t.Errorf("probe for %s: %+v", path, probe)
		}
	}
	if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
		t.Error("probe pod shares a host namespace")
	}
}

func capNames(cs []corev1.Capability) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// compareGolden compares got with the golden file, or rewrites it with -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s is stale (rerun with -update if the change is intended); first difference at line %d:\n got: %s\nwant: %s", path, i+1, g, w)
		}
	}
}
