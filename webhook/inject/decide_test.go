package inject

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiversion "k8s.io/apimachinery/pkg/version"
)

func basePod(ns string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
}

var enabledNS = map[string]string{LabelProbe: ValueEnabled}

func TestDecidePrecedence(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name     string
		in       func() Input
		want     Reason
		warnings int
	}{
		{"nil pod", func() Input { return Input{Namespace: "a"} }, ReasonMalformedPod, 0},
		{"no namespace", func() Input { return Input{Pod: basePod("")} }, ReasonMalformedPod, 0},
		{"pod namespace used when input has none", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: enabledNS}
		}, ReasonInjected, 0},
		{"invalid config", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: enabledNS, Config: Config{LogLevel: "loud"}}
		}, ReasonInvalidConfig, 1},
		{"kube-public", func() Input { return Input{Pod: basePod("kube-public"), NamespaceLabels: enabledNS} }, ReasonSystemNamespace, 0},
		{"kube-node-lease", func() Input { return Input{Pod: basePod("kube-node-lease"), NamespaceLabels: enabledNS} }, ReasonSystemNamespace, 0},
		{"default own namespace", func() Input {
			return Input{Pod: basePod(DefaultOwnNamespace), NamespaceLabels: enabledNS}
		}, ReasonOwnNamespace, 0},
		{"opt-out beats namespace error", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{AnnotationProbe: ValueDisabled}
			return Input{Pod: p, NamespaceErr: errors.New("boom")}
		}, ReasonPodOptedOut, 0},
		{"namespace error, pod opted in: warned", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{AnnotationProbe: ValueEnabled}
			return Input{Pod: p, NamespaceErr: errors.New("boom")}
		}, ReasonNamespaceUnavailable, 1},
		{"namespace error, no opt-in: quiet", func() Input {
			return Input{Pod: basePod("a"), NamespaceErr: errors.New("boom")}
		}, ReasonNamespaceUnavailable, 0},
		{"namespace label other than enabled", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: "true"}}
		}, ReasonNamespaceNotEnabled, 0},
		{"hostNetwork with pod opt-in", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{AnnotationProbe: ValueEnabled}
			p.Spec.HostNetwork = true
			return Input{Pod: p}
		}, ReasonHostNetwork, 1},
		{"windows", func() Input {
			p := basePod("a")
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonUnsupportedOS, 1},
		{"explicit linux", func() Input {
			p := basePod("a")
			p.Spec.OS = &corev1.PodOS{Name: corev1.Linux}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonInjected, 0},
		{"PSA baseline", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: ValueEnabled, LabelPSAEnforce: "baseline"}}
		}, ReasonPodSecurity, 1},
		{"PSA invalid level counts as restricted", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: ValueEnabled, LabelPSAEnforce: "Privileged"}}
		}, ReasonPodSecurity, 1},
		{"PSA privileged", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: ValueEnabled, LabelPSAEnforce: "privileged"}}
		}, ReasonInjected, 0},
		{"PSA allow label must be true", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: ValueEnabled, LabelPSAEnforce: "baseline", LabelAllowPSA: "yes"}}
		}, ReasonPodSecurity, 1},
		{"PSA beats pod opt-in", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{AnnotationProbe: ValueEnabled}
			return Input{Pod: p, NamespaceLabels: map[string]string{LabelPSAEnforce: "restricted"}}
		}, ReasonPodSecurity, 1},
		{"PSA warn level does not block", func() Input {
			return Input{Pod: basePod("a"), NamespaceLabels: map[string]string{LabelProbe: ValueEnabled, "pod-security.kubernetes.io/warn": "restricted"}}
		}, ReasonInjected, 0},
		{"port name conflict", func() Input {
			p := basePod("a")
			p.Spec.InitContainers = []corev1.Container{{Name: "side", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: ProbePortName, ContainerPort: 1}}}}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonPortConflict, 1},
		{"pod label opts in", func() Input {
			p := basePod("a")
			p.Labels = map[string]string{LabelProbe: ValueEnabled}
			return Input{Pod: p}
		}, ReasonInjected, 0},
		{"pod label opts out", func() Input {
			p := basePod("a")
			p.Labels = map[string]string{LabelProbe: ValueDisabled}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonPodOptedOut, 0},
		{"annotation beats label", func() Input {
			p := basePod("a")
			p.Labels = map[string]string{LabelProbe: ValueEnabled}
			p.Annotations = map[string]string{AnnotationProbe: ValueDisabled}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonPodOptedOut, 0},
		{"invalid annotation falls back to the label", func() Input {
			p := basePod("a")
			p.Labels = map[string]string{LabelProbe: ValueDisabled}
			p.Annotations = map[string]string{AnnotationProbe: "off"}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonPodOptedOut, 1},
		{"no TCP port", func() Input {
			p := basePod("a")
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonNoAppPorts, 1},
		{"every port outside Istio's includeInboundPorts", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{annIstioStatus: "{}", annIstioIncludeInbound: "9000"}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonProbeConfigRejected, 1},
		{"unusable port annotation still injects, with a warning", func() Input {
			p := basePod("a")
			p.Annotations = map[string]string{annLinkerdInject: "enabled", annLinkerdSkipInbound: "1,x,2-1,70000,3"}
			return Input{Pod: p, NamespaceLabels: enabledNS}
		}, ReasonInjected, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in())
			if d.Reason != tt.want {
				t.Fatalf("reason %s, want %s: %s", d.Reason, tt.want, d.Message)
			}
			checkDecisionShape(t, d)
			if len(d.Warnings) != tt.warnings {
				t.Errorf("warnings %q, want %d", d.Warnings, tt.warnings)
			}
		})
	}
}

func TestReasonsTable(t *testing.T) {
	all := Reasons()
	if len(all) != len(reasons) || !slices.IsSortedFunc(all, func(a, b ReasonInfo) int { return strings.Compare(string(a.Reason), string(b.Reason)) }) {
		t.Fatalf("Reasons() = %v", all)
	}
	for _, r := range all {
		if r.Summary == "" || r.Action == "" || strings.ToLower(string(r.Reason)) != string(r.Reason) {
			t.Errorf("bad entry %+v", r)
		}
	}
	if _, ok := Reason("nope").Info(); ok {
		t.Error("unknown reason has info")
	}
	if got := (Decision{Action: ActionUpdate}).EventReason(); got != EventProbeInjected {
		t.Errorf("update event %s", got)
	}
	if got := (Decision{Action: ActionSkip}).EventReason(); got != EventProbeSkipped {
		t.Errorf("skip event %s", got)
	}
}

func TestDetectMesh(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	uid := int64(1000650000)
	tests := []struct {
		name    string
		pod     func(*corev1.Pod)
		nsLabel map[string]string
		nsAnn   map[string]string
		check   func(t *testing.T, m MeshInfo, warnings []string)
	}{
		{"pod opts out of istio", func(p *corev1.Pod) { p.Labels = map[string]string{annIstioInject: "false"} },
			map[string]string{labelIstioInjection: "enabled"}, nil, wantMesh(MeshNone, MeshAbsent)},
		{"istio-injection=disabled beats istio.io/rev", nil,
			map[string]string{labelIstioInjection: "disabled", labelIstioRev: "canary"}, nil, wantMesh(MeshNone, MeshAbsent)},
		{"istio.io/rev", nil, map[string]string{labelIstioRev: "canary"}, nil, wantMesh(MeshIstio, MeshExpected)},
		{"pod label sidecar.istio.io/inject=true", func(p *corev1.Pod) { p.Labels = map[string]string{annIstioInject: "true"} },
			nil, nil, wantMesh(MeshIstio, MeshExpected)},
		{"istio status annotation alone", func(p *corev1.Pod) { p.Annotations = map[string]string{annIstioStatus: "{}"} },
			nil, nil, wantMesh(MeshIstio, MeshExpected)},
		{"linkerd namespace enabled, pod disabled", func(p *corev1.Pod) { p.Annotations = map[string]string{annLinkerdInject: "disabled"} },
			nil, map[string]string{annLinkerdInject: "enabled"}, wantMesh(MeshNone, MeshAbsent)},
		{"linkerd ingress mode", func(p *corev1.Pod) { p.Annotations = map[string]string{annLinkerdInject: "ingress"} },
			nil, nil, wantMesh(MeshLinkerd, MeshExpected)},
		{"linkerd annotations, pod over namespace", func(p *corev1.Pod) {
			p.Annotations = map[string]string{annLinkerdInject: "enabled", annLinkerdOutboundPort: "5140", annLinkerdAdminPort: "bad"}
		}, nil, map[string]string{annLinkerdOutboundPort: "6140", annLinkerdInboundPort: "6143", annLinkerdSkipInbound: "80"},
			func(t *testing.T, m MeshInfo, w []string) {
				if m.OutboundPort != 5140 || m.InboundPort != 6143 || m.AdminPort != LinkerdAdminPort || m.ExcludeInboundPorts != "80,4190-4191" || len(w) != 1 {
					t.Errorf("%+v %q", m, w)
				}
			}},
		{"init container named istio-proxy without restartPolicy is no proxy", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: IstioProxyContainer}}
		}, nil, nil, wantMesh(MeshNone, MeshAbsent)},
		{"istio proxy uid from the proxy", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: IstioProxyContainer, RestartPolicy: &always,
				SecurityContext: &corev1.SecurityContext{RunAsUser: &uid}}}
		}, nil, nil, func(t *testing.T, m MeshInfo, _ []string) {
			if m.State != MeshPresent || !m.NativeProxy || m.ProxyUID != uid || m.proxyIndex != 0 {
				t.Errorf("%+v", m)
			}
		}},
		{"istio include inbound list and empty", func(p *corev1.Pod) {
			p.Annotations = map[string]string{annIstioStatus: "{}", annIstioIncludeInbound: "9090, 8080"}
		}, nil, nil, func(t *testing.T, m MeshInfo, _ []string) {
			if m.IncludeInboundPorts != "8080,9090" {
				t.Errorf("include %q", m.IncludeInboundPorts)
			}
		}},
		{"istio include inbound empty means none", func(p *corev1.Pod) {
			p.Annotations = map[string]string{annIstioStatus: "{}", annIstioIncludeInbound: ""}
		}, nil, nil, func(t *testing.T, m MeshInfo, _ []string) {
			if m.IncludeInboundPorts != "" {
				t.Errorf("include %q", m.IncludeInboundPorts)
			}
		}},
		{"present beats expected", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: LinkerdProxyContainer})
		}, map[string]string{labelIstioInjection: "enabled"}, nil, wantMesh(MeshLinkerd, MeshPresent)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePod("a")
			if tt.pod != nil {
				tt.pod(p)
			}
			m, w := DetectMesh(p, tt.nsLabel, tt.nsAnn)
			tt.check(t, m, w)
		})
	}
	if m, _ := DetectMesh(nil, nil, nil); m.Name != MeshNone {
		t.Errorf("nil pod: %+v", m)
	}
}

func wantMesh(name MeshName, state MeshState) func(*testing.T, MeshInfo, []string) {
	return func(t *testing.T, m MeshInfo, _ []string) {
		t.Helper()
		if m.Name != name || m.State != state {
			t.Errorf("mesh %s/%s, want %s/%s (%v)", m.Name, m.State, name, state, m.Evidence)
		}
	}
}

func TestParsePortList(t *testing.T) {
	tests := []struct {
		in, want string
		bad      int
	}{
		{"", "", 0},
		{" 80 , 443,, ", "80,443", 0},
		{"3306-3309,3310,25,1-1", "1,25,3306-3310", 0},
		{"10-20,15-30,31", "10-31", 0},
		{"0,65536,-1,a,5-4,1-x,65535", "65535", 6},
	}
	for _, tt := range tests {
		got, bad := parsePortList(tt.in)
		if got.String() != tt.want || len(bad) != tt.bad {
			t.Errorf("parsePortList(%q) = %q, bad %q; want %q, %d bad", tt.in, got, bad, tt.want, tt.bad)
		}
	}
	w := portListWarning("x", []string{"a", "b", "c", "d", strings.Repeat("e", 100)})
	if !strings.Contains(w, "and 2 more") || len(w) > 120 {
		t.Errorf("warning %q", w)
	}
}

func TestAppPorts(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := basePod("a")
	p.Spec.Containers = append(p.Spec.Containers,
		corev1.Container{Name: "dns", Ports: []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 53}}},
		corev1.Container{Name: IstioProxyContainer, Ports: []corev1.ContainerPort{{ContainerPort: 15090}}},
		corev1.Container{Name: "dup", Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}},
	)
	p.Spec.InitContainers = []corev1.Container{
		{Name: "job", Ports: []corev1.ContainerPort{{ContainerPort: 1111}}},
		{Name: "side", RestartPolicy: &always, Ports: []corev1.ContainerPort{{ContainerPort: 2222}}},
		{Name: ProbeContainerName, RestartPolicy: &always, Ports: []corev1.ContainerPort{{ContainerPort: ProbePort}}},
	}
	if got := appPorts(p); !slices.Equal(got, []int32{53, 2222, 8080}) {
		t.Errorf("appPorts = %v", got)
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Image != DefaultImage || c.Version != DefaultVersion || c.ImagePullPolicy != corev1.PullIfNotPresent ||
		c.LogLevel != "info" || c.OwnNamespace != DefaultOwnNamespace {
		t.Errorf("defaults %+v", c)
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.String() != "10m" {
		t.Errorf("cpu request %s", q.String())
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "64Mi" {
		t.Errorf("memory limit %s", q.String())
	}
	mine := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("48Mi")}
	c = Config{Resources: corev1.ResourceRequirements{Requests: mine}}.WithDefaults()
	c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if q := mine[corev1.ResourceMemory]; q.String() != "48Mi" {
		t.Error("WithDefaults shares the caller's resource map")
	}

	for image, tag := range map[string]string{
		"ghcr.io/a/b:v1.2":              "v1.2",
		"localhost:5000/probe":          "unknown",
		"localhost:5000/probe:dev":      "dev",
		"probe@sha256:abcd":             "unknown",
		"probe:v3@sha256:abcd":          "v3",
		"registry.example.com/x/probe:": "unknown",
	} {
		if got := imageTag(image); got != tag {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, tag)
		}
	}

	bad := []Config{
		{Image: "a b"},
		{ImagePullPolicy: "Sometimes"},
		{LogLevel: "trace"},
		{OwnNamespace: "Not_A_Namespace"},
		{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}},
		{Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("-1")}}},
	}
	for _, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", b)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func TestNativeSidecarsSupported(t *testing.T) {
	for _, tt := range []struct {
		info *apiversion.Info
		want bool
	}{
		{nil, false},
		{&apiversion.Info{GitVersion: "v1.28.9"}, false},
		{&apiversion.Info{GitVersion: "v1.29.0"}, true},
		{&apiversion.Info{GitVersion: "v1.37.2+k3s1"}, true},
		{&apiversion.Info{Major: "1", Minor: "30+"}, true},
		{&apiversion.Info{Major: "1", Minor: "27+"}, false},
		{&apiversion.Info{GitVersion: "garbage"}, false},
	} {
		if got := NativeSidecarsSupported(tt.info); got != tt.want {
			t.Errorf("NativeSidecarsSupported(%+v) = %v", tt.info, got)
		}
	}
}
