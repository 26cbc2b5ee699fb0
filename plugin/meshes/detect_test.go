package meshes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-mesh/kubectl-mesh/internal/apply"
)

// fixture reads a recorded installation (testdata/detect) into what Collect would have listed.
func fixture(t *testing.T, name string) (*Snapshot, []corev1.Pod) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "detect", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := apply.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s := &Snapshot{}
	var pods []corev1.Pod
	conv := runtime.DefaultUnstructuredConverter
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			err = conv.FromUnstructured(o.Object, &d)
			s.Deployments = append(s.Deployments, d)
		case "DaemonSet":
			var d appsv1.DaemonSet
			err = conv.FromUnstructured(o.Object, &d)
			s.DaemonSets = append(s.DaemonSets, d)
		case "ConfigMap":
			var c corev1.ConfigMap
			err = conv.FromUnstructured(o.Object, &c)
			s.ConfigMaps = append(s.ConfigMaps, c)
		case "Namespace":
			var n corev1.Namespace
			err = conv.FromUnstructured(o.Object, &n)
			s.Namespaces = append(s.Namespaces, n)
		case "Pod":
			var p corev1.Pod
			err = conv.FromUnstructured(o.Object, &p)
			pods = append(pods, p)
		case "MutatingWebhookConfiguration":
			s.MutatingWebhooks = append(s.MutatingWebhooks, o.GetName())
		default:
			t.Fatalf("%s: unexpected kind %s", name, o.GetKind())
		}
		if err != nil {
			t.Fatalf("%s: %s %s: %v", name, o.GetKind(), o.GetName(), err)
		}
	}
	return s, pods
}

func detect(t *testing.T, mesh, file string) []ControlPlane {
	t.Helper()
	m, err := Lookup(mesh)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := fixture(t, file)
	return m.Detect(s)
}

func TestIstioDetectHelmInstall(t *testing.T) {
	cps := detect(t, "istio", "istio-helm.yaml")
	if len(cps) != 1 {
		t.Fatalf("want one control plane, got %+v", cps)
	}
	cp := cps[0]
	if cp.Namespace != "istio-system" || cp.Revision != "default" || cp.Version != "1.28.0" || cp.InstalledBy != "Helm (release istiod)" {
		t.Errorf("got %s/%s version %q by %q", cp.Namespace, cp.Revision, cp.Version, cp.InstalledBy)
	}
	if !cp.Healthy() || cp.Injector != "istio-sidecar-injector" || len(cp.Notes) != 0 {
		t.Errorf("healthy %v, injector %q, notes %v", cp.Healthy(), cp.Injector, cp.Notes)
	}
	if !OwnedBy(Must("istio"), cp) {
		t.Error("a release named istiod is kubectl-mesh's own")
	}
	// The namespace with istio-injection=enabled is recognised; linkerd's setting is not there.
	s, _ := fixture(t, "istio-helm.yaml")
	for _, ns := range s.Namespaces {
		on, how := Must("istio").Injection().EnabledOn(&ns)
		if want := ns.Name == "bookinfo"; on != want || (on && how != "istio-injection=enabled") {
			t.Errorf("namespace %s: injection %v (%s)", ns.Name, on, how)
		}
		if on, _ := Must("linkerd").Injection().EnabledOn(&ns); on {
			t.Errorf("namespace %s: linkerd injection seen", ns.Name)
		}
	}
}

func TestIstioDetectIstioctlRevision(t *testing.T) {
	cps := detect(t, "istio", "istio-istioctl-revision.yaml")
	if len(cps) != 1 {
		t.Fatalf("want one control plane, got %+v", cps)
	}
	cp := cps[0]
	if cp.Revision != "1-22-3" || cp.Version != "1.22.3" || cp.InstalledBy != "istioctl" {
		t.Errorf("got revision %q version %q by %q", cp.Revision, cp.Version, cp.InstalledBy)
	}
	if cp.Injector != "istio-sidecar-injector-1-22-3" || len(cp.Notes) != 0 {
		t.Errorf("injector %q, notes %v", cp.Injector, cp.Notes)
	}
	// istiod's rollout is stuck (1 of 2 updated pods ready counts, the new one is not): not healthy.
	if cp.Healthy() {
		t.Error("a Deployment with an unavailable replica mid-rollout reported healthy")
	}
	if len(cp.Components) != 2 || cp.Components[1].Name != "istio-cni-node" || !cp.Components[1].Ready() {
		t.Errorf("components %+v: want istiod and a ready istio-cni-node", cp.Components)
	}
	if OwnedBy(Must("istio"), cp) {
		t.Error("an istioctl install taken for kubectl-mesh's own")
	}
	s, _ := fixture(t, "istio-istioctl-revision.yaml")
	for _, ns := range s.Namespaces {
		if on, how := Must("istio").Injection().EnabledOn(&ns); on != (ns.Name == "shop") || (on && how != "istio.io/rev=1-22-3") {
			t.Errorf("namespace %s: injection %v (%s)", ns.Name, on, how)
		}
	}
}

func TestLinkerdDetectCLIInstall(t *testing.T) {
	cps := detect(t, "linkerd", "linkerd-cli.yaml")
	if len(cps) != 1 {
		t.Fatalf("want one control plane, got %+v", cps)
	}
	cp := cps[0]
	if cp.Namespace != "linkerd" || cp.Version != "edge-25.11.3" || cp.InstalledBy != "linkerd CLI" {
		t.Errorf("got %s version %q by %q", cp.Namespace, cp.Version, cp.InstalledBy)
	}
	var names []string
	for _, c := range cp.Components {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "linkerd-destination,linkerd-identity,linkerd-proxy-injector" {
		t.Errorf("components %v", names)
	}
	if !cp.Healthy() || cp.Injector != "linkerd-proxy-injector-webhook-config" || len(cp.Notes) != 0 {
		t.Errorf("healthy %v, injector %q, notes %v", cp.Healthy(), cp.Injector, cp.Notes)
	}
	if OwnedBy(Must("linkerd"), cp) {
		t.Error("a linkerd CLI install taken for kubectl-mesh's own")
	}
	s, _ := fixture(t, "linkerd-cli.yaml")
	for _, ns := range s.Namespaces {
		if on, _ := Must("linkerd").Injection().EnabledOn(&ns); on != (ns.Name == "emojivoto") {
			t.Errorf("namespace %s: linkerd injection %v", ns.Name, on)
		}
	}
}

func TestLinkerdDetectHelmInstallMissingInjector(t *testing.T) {
	cps := detect(t, "linkerd", "linkerd-helm-broken.yaml")
	if len(cps) != 1 {
		t.Fatalf("want one control plane, got %+v", cps)
	}
	cp := cps[0]
	if cp.Version != "edge-25.10.1" || cp.InstalledBy != "Helm (release linkerd-control-plane)" || !OwnedBy(Must("linkerd"), cp) {
		t.Errorf("version %q by %q", cp.Version, cp.InstalledBy)
	}
	notes := strings.Join(cp.Notes, "; ")
	for _, want := range []string{"no proxy-injector Deployment", "no linkerd-proxy-injector-webhook-config webhook"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
}

// No mesh sees another's control plane: each fixture is detected by exactly one mesh.
func TestDetectIsolatesMeshes(t *testing.T) {
	for file, mesh := range map[string]string{"istio-helm.yaml": "istio", "istio-istioctl-revision.yaml": "istio", "linkerd-cli.yaml": "linkerd", "linkerd-helm-broken.yaml": "linkerd"} {
		for _, m := range All() {
			s, _ := fixture(t, file)
			got := len(m.Detect(s)) > 0
			if got != (m.Name() == mesh) {
				t.Errorf("%s: mesh %s detected %v", file, m.Name(), got)
			}
		}
	}
}

func TestSummarizeCountsProxiesPerNamespace(t *testing.T) {
	istioSnap, _ := fixture(t, "istio-helm.yaml")
	linkerdSnap, _ := fixture(t, "linkerd-cli.yaml")
	nss := append(append([]corev1.Namespace{}, istioSnap.Namespaces...), linkerdSnap.Namespaces...)
	pod := func(ns, name string, containers ...string) corev1.Pod {
		p := corev1.Pod{}
		p.Namespace, p.Name = ns, name
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	native := pod("emojivoto", "web-2", "web", "mesh-probe")
	native.Spec.InitContainers = []corev1.Container{{Name: "linkerd-proxy"}}
	done := pod("bookinfo", "job-1", "job", "istio-proxy")
	done.Status.Phase = corev1.PodSucceeded
	pods := []corev1.Pod{
		pod("bookinfo", "reviews-1", "reviews", "istio-proxy"),
		pod("bookinfo", "reviews-2", "reviews", "istio-proxy", "mesh-probe"),
		pod("bookinfo", "legacy", "legacy"),
		done,
		pod("emojivoto", "web-1", "linkerd-proxy", "web"),
		native,
		pod("default", "plain", "app"),
	}
	all := []Mesh{Must("istio"), Must("linkerd")}
	st := Summarize(all, []Snapshot{*istioSnap, *linkerdSnap}, nss, pods, append(istioSnap.MutatingWebhooks, linkerdSnap.MutatingWebhooks...), nil)
	if len(st.ControlPlanes) != 2 {
		t.Fatalf("control planes: %+v", st.ControlPlanes)
	}
	got := map[string]NamespaceStatus{}
	for _, ns := range st.Namespaces {
		got[ns.Name] = ns
	}
	if _, ok := got["default"]; ok {
		t.Error("a namespace with neither injection nor proxies listed")
	}
	b := got["bookinfo"]
	if b.Pods != 3 || b.Meshed["istio"] != 2 || b.Meshed["linkerd"] != 0 || b.Probed != 1 || b.Injection["istio"] != "istio-injection=enabled" {
		t.Errorf("bookinfo: %+v", b)
	}
	e := got["emojivoto"]
	if e.Pods != 2 || e.Meshed["linkerd"] != 2 || e.Probed != 1 || e.Injection["linkerd"] != "linkerd.io/inject=enabled" {
		t.Errorf("emojivoto: %+v", e)
	}
}

func Must(name string) Mesh {
	m, err := Lookup(name)
	if err != nil {
		panic(err)
	}
	return m
}
