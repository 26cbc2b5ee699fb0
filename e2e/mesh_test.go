//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes/meshestest"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func dynamicFor(t testing.TB, l *lab.Lab) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// helmHome keeps Helm's caches of the test out of the machine's.
func helmHome(t *testing.T) {
	d := t.TempDir()
	t.Setenv("HELM_CACHE_HOME", filepath.Join(d, "cache"))
	t.Setenv("HELM_CONFIG_HOME", filepath.Join(d, "config"))
	t.Setenv("HELM_DATA_HOME", filepath.Join(d, "data"))
}

// releaseRevisions counts the stored revisions of a Helm release.
func releaseRevisions(t testing.TB, cs kubernetes.Interface, ns, name string) int {
	t.Helper()
	l, err := cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

func mustContain(t testing.TB, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// removeLeftovers deletes what a failed run of a mesh test may leave: its releases (through the
// plugin), its namespaces and its cluster-wide objects.
func removeLeftovers(t *testing.T, l *lab.Lab, cs kubernetes.Interface, dyn dynamic.Interface, mesh string, nss []string, crds, validating, mutating []string) {
	ctx := context.Background()
	plugin(ctx, t, l, "uninstall", mesh, "-n", nss[0])
	for _, n := range crds {
		_ = dyn.Resource(crdGVR).Delete(ctx, n, metav1.DeleteOptions{})
	}
	for _, n := range validating {
		_ = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, n, metav1.DeleteOptions{})
	}
	for _, n := range mutating {
		_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, n, metav1.DeleteOptions{})
	}
	for _, n := range nss {
		_ = cs.CoreV1().Namespaces().Delete(ctx, n, metav1.DeleteOptions{})
	}
}

// waitPullFailure waits until a pod of the selector fails to pull its image (the lab has no
// registry, so the test charts' images never come).
func waitPullFailure(t testing.TB, cs kubernetes.Interface, ns, selector string) {
	t.Helper()
	waitFor(t, 2*time.Minute, "a pod "+selector+" failing to pull its image", func() error {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
					return nil
				}
			}
		}
		return fmt.Errorf("no pull failure yet")
	})
}

// TestMeshIstioInstallUpgradeUninstall installs the Istio test charts from a chart repository
// served on 127.0.0.1, on the lab's API server: a leftover validating webhook is diagnosed, the
// install creates CRDs as templates and a custom resource in the next chart, the same version
// again changes nothing, another version upgrades, waiting diagnoses the real ImagePullBackOff of
// the chart's image (the lab has no registry), status sees the control plane, injection is
// turned on and off, and uninstall removes it, keeping the CRDs when asked.
func TestMeshIstioInstallUpgradeUninstall(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	dyn := dynamicFor(t, l)
	ctx := context.Background()
	helmHome(t)
	const ns, app = "e2e-mesh-istio", "e2e-mesh-istio-app"
	const crd = "istiotestpolicies.e2e.kubectl-mesh.io"
	url, _ := meshestest.Serve(t, "istio", "1.0.0", "1.1.0")
	t.Cleanup(func() {
		removeLeftovers(t, l, cs, dyn, "istio", []string{ns, app}, []string{crd}, []string{"istiod-default-validator"}, []string{"istio-sidecar-injector-" + ns})
	})
	install := func(args ...string) (string, string, int) {
		return plugin(ctx, t, l, append([]string{"install", "istio", "-n", ns, "--chart-repo", url}, args...)...)
	}

	// A validating webhook left by an earlier Istio blocks the install; the error says what it is
	// and what to do, and nothing is installed.
	leftover := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istiod-default-validator", Labels: map[string]string{"app": "istiod"}}}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, leftover, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := install("--version", "1.0.0", "--wait=false")
	if code != 1 {
		t.Fatalf("install over a leftover webhook: exit code %d", code)
	}
	mustContain(t, "the conflict's diagnosis", errOut, "leftover Istio validating webhook", "kubectl delete validatingwebhookconfiguration istiod-default-validator", "--take-ownership")
	if n := releaseRevisions(t, cs, ns, "istio-base"); n != 0 {
		t.Errorf("a refused install stored %d revisions of istio-base", n)
	}
	if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, "istiod-default-validator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Install 1.0.0: base's CRD, then istiod, whose custom resource of that CRD only installs
	// because discovery was refreshed in between.
	start := time.Now()
	out, _, code := install("--version", "1.0.0", "--wait=false")
	if code != 0 {
		t.Fatalf("install: exit code %d\n%s", code, out)
	}
	t.Logf("install of 2 charts: %s", time.Since(start).Round(time.Millisecond))
	mustContain(t, "install", out, "istio-base: installed chart base 1.0.0 in "+ns, "istiod: installed chart istiod 1.0.0 in "+ns, "istio 1.0.0 is installed in "+ns)
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "istiod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "kubectl-mesh.local/istio-test/pilot:1.0.0" {
		t.Errorf("istiod image %s", img)
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "e2e.kubectl-mesh.io", Version: "v1", Resource: "istiotestpolicies"}).Namespace(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("istiod's custom resource: %v", err)
	}
	// The mesh's own values: base's webhook points at istiod in this namespace, not istio-system.
	vw, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "istiod-default-validator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc := vw.Webhooks[0].ClientConfig.Service; svc == nil || svc.Namespace != ns {
		t.Errorf("validating webhook's service %+v, want namespace %s", svc, ns)
	}

	// The same version again changes nothing: no new revision.
	out, _, code = install("--version", "1.0.0", "--wait=false")
	if code != 0 {
		t.Fatalf("second install: exit code %d", code)
	}
	mustContain(t, "second install", out, "istio-base: unchanged", "istiod: unchanged", "nothing changed")
	for _, r := range []string{"istio-base", "istiod"} {
		if n := releaseRevisions(t, cs, ns, r); n != 1 {
			t.Errorf("release %s has %d revisions after a no-op, want 1", r, n)
		}
	}

	// Status finds it from the cluster's objects, and says why istiod is not ready.
	waitPullFailure(t, cs, ns, "app=istiod")
	out, _, code = plugin(ctx, t, l, "status")
	if code != 1 {
		t.Errorf("status with istiod not ready: exit code %d, want 1", code)
	}
	mustContain(t, "status", out, "istio", ns, "1.0.0", "Helm (release istiod)", "cannot pull image kubectl-mesh.local/istio-test/pilot:1.0.0")

	// Another version upgrades, and waiting shows, then fails with, the pull failure of the new
	// image, with the kubelet's reason.
	out, errOut, code = install("--version", "1.1.0", "--wait", "--timeout", "45s")
	if code != 1 {
		t.Fatalf("upgrade with an image that cannot be pulled: exit code %d, want 1", code)
	}
	mustContain(t, "upgrade", out, "istio-base: upgraded chart base 1.0.0 -> 1.1.0", "istiod: upgraded chart istiod 1.0.0 -> 1.1.0", "waiting: Deployment "+ns+"/istiod 0/1 ready")
	mustContain(t, "the readiness diagnosis", errOut, "not ready after 45s", "cannot pull image kubectl-mesh.local/istio-test/pilot:1.1.0", "kubelet:")
	if !strings.Contains(errOut, "ImagePullBackOff") && !strings.Contains(errOut, "ErrImagePull") {
		t.Errorf("the diagnosis names neither ImagePullBackOff nor ErrImagePull:\n%s", errOut)
	}
	if n := releaseRevisions(t, cs, ns, "istiod"); n != 2 {
		t.Errorf("istiod has %d revisions after the upgrade, want 2", n)
	}

	// Injection on and off, with Istio's own label.
	makeNamespace(t, cs, app, nil)
	mustPlugin(t, l, "inject", "enable", "-n", app, "--mesh", "istio")
	if n, _ := cs.CoreV1().Namespaces().Get(ctx, app, metav1.GetOptions{}); n.Labels["istio-injection"] != "enabled" {
		t.Errorf("inject enable: labels %v", n.Labels)
	}
	out, _, _ = plugin(ctx, t, l, "status", "-o", "json")
	mustContain(t, "status -o json", out, `"name": "`+app+`"`, `"istio": "istio-injection=enabled"`)
	// Another mesh's injection on the same namespace is refused.
	if _, errOut, code := plugin(ctx, t, l, "inject", "enable", "-n", app, "--mesh", "linkerd"); code != 1 || !strings.Contains(errOut, "already has istio injection on") {
		t.Errorf("linkerd injection over istio's: exit code %d\n%s", code, errOut)
	}
	mustPlugin(t, l, "inject", "disable", "-n", app, "--mesh", "istio")
	if n, _ := cs.CoreV1().Namespaces().Get(ctx, app, metav1.GetOptions{}); n.Labels["istio-injection"] != "" {
		t.Errorf("inject disable: labels %v", n.Labels)
	}

	// Uninstall keeping the CRDs: the releases and the namespace go, the CRD stays without
	// Helm's ownership; installing again adopts it, and a plain uninstall removes it.
	out = mustPlugin(t, l, "uninstall", "istio", "--keep-crds")
	mustContain(t, "uninstall --keep-crds", out, "istiod: removed", "istio-base: removed", "kept 1 CRDs: "+crd)
	kept, err := dyn.Resource(crdGVR).Get(ctx, crd, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CRD not kept: %v", err)
	}
	if a := kept.GetAnnotations(); a["meta.helm.sh/release-name"] != "" || a[meshes.AnnotationKeptFrom] != ns+"/istio-base" {
		t.Errorf("kept CRD's annotations %v", a)
	}
	waitFor(t, 2*time.Minute, "namespace "+ns+" removed", func() error {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if out, _, code := install("--wait=false"); code != 0 || !strings.Contains(out, "istio-base: installed chart base 1.1.0") {
		t.Fatalf("install after uninstall --keep-crds: exit code %d\n%s", code, out)
	}
	readopted, err := dyn.Resource(crdGVR).Get(ctx, crd, metav1.GetOptions{})
	if err != nil || readopted.GetAnnotations()["meta.helm.sh/release-name"] != "istio-base" {
		t.Errorf("CRD not adopted again: %v %v", err, readopted.GetAnnotations())
	}
	out = mustPlugin(t, l, "uninstall", "istio")
	mustContain(t, "uninstall", out, "istio removed")
	waitFor(t, time.Minute, "CRD removed", func() error {
		if _, err := dyn.Resource(crdGVR).Get(ctx, crd, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if out := mustPlugin(t, l, "uninstall", "istio"); !strings.Contains(out, "nothing to remove") {
		t.Errorf("second uninstall: %s", out)
	}
}

// TestMeshLinkerdAirGapped installs the Linkerd test charts from a local directory of packaged
// charts (the air-gapped way): the missing Gateway API CRDs stop it with a clear message,
// --gateway-api has linkerd-crds install them, the generated certificates chain and survive a
// re-install, and uninstall removes everything.
func TestMeshLinkerdAirGapped(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	dyn := dynamicFor(t, l)
	ctx := context.Background()
	helmHome(t)
	const ns = "e2e-mesh-linkerd"
	crds := []string{"linkerdtestservers.e2e.kubectl-mesh.io", "httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"}
	for _, n := range crds[1:] {
		if _, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{}); err == nil {
			t.Skipf("the lab already has the Gateway API CRD %s: not ours to remove", n)
		}
	}
	dir := t.TempDir()
	meshestest.Package(t, "linkerd", dir, "2026.1.1")
	t.Cleanup(func() {
		removeLeftovers(t, l, cs, dyn, "linkerd", []string{ns}, crds, nil, []string{"linkerd-proxy-injector-webhook-config"})
	})
	install := func(args ...string) (string, string, int) {
		return plugin(ctx, t, l, append([]string{"install", "linkerd", "-n", ns, "--chart", dir, "--version", "edge-26.1.1", "--wait=false"}, args...)...)
	}

	_, errOut, code := install()
	if code != 1 {
		t.Fatalf("install without the Gateway API CRDs: exit code %d", code)
	}
	mustContain(t, "the missing Gateway API CRDs", errOut, "Gateway API CRDs", "httproutes.gateway.networking.k8s.io", "--gateway-api")

	out, _, code := install("--gateway-api")
	if code != 0 {
		t.Fatalf("install --gateway-api: exit code %d", code)
	}
	mustContain(t, "install", out, "linkerd-crds: installed chart linkerd-crds 2026.1.1", "linkerd-control-plane: installed chart linkerd-control-plane 2026.1.1")
	for _, n := range crds {
		if _, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s: %v", n, err)
		}
	}
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil || nsObj.Labels["config.linkerd.io/admission-webhooks"] != "disabled" || nsObj.Labels["linkerd.io/is-control-plane"] != "true" {
		t.Errorf("control plane namespace labels %v (%v)", nsObj.Labels, err)
	}

	// The issuer in the cluster chains to the trust anchor the proxies get.
	issuerPEM := func() (string, string) {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "linkerd-identity-issuer", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "linkerd-identity-trust-roots", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["crt.pem"]), cm.Data["ca-bundle.crt"]
	}
	crt, anchors := issuerPEM()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(anchors)) {
		t.Fatalf("trust roots are no PEM certificates: %q", anchors)
	}
	b, _ := pem.Decode([]byte(crt))
	if b == nil {
		t.Fatalf("issuer certificate is no PEM: %q", crt)
	}
	issuer, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("issuer does not chain to the installed trust anchor: %v", err)
	}

	// Again: nothing changes, the certificates included.
	out, _, code = install("--gateway-api")
	if code != 0 {
		t.Fatalf("second install: exit code %d", code)
	}
	mustContain(t, "second install", out, "linkerd-crds: unchanged", "linkerd-control-plane: unchanged")
	if crt2, anchors2 := issuerPEM(); crt2 != crt || anchors2 != anchors {
		t.Error("a re-install replaced the certificates")
	}

	waitPullFailure(t, cs, ns, "linkerd.io/control-plane-component=destination")
	out, _, _ = plugin(ctx, t, l, "status")
	mustContain(t, "status", out, "linkerd", ns, "edge-26.1.1", "Helm (release linkerd-control-plane)", "linkerd-destination 0/1", "cannot pull image kubectl-mesh.local/linkerd-test/controller:edge-26.1.1")

	out = mustPlugin(t, l, "uninstall", "linkerd", "-n", ns)
	mustContain(t, "uninstall", out, "linkerd-control-plane: removed", "linkerd-crds: removed", "linkerd removed")
	waitFor(t, time.Minute, "CRDs removed", func() error {
		for _, n := range crds {
			if _, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s still there (%v)", n, err)
			}
		}
		return nil
	})
}

// BenchmarkMeshStatus times `kubectl mesh status` in process against the lab with 50 namespaces
// that have Istio injection on, each with a pod carrying an Istio proxy as injected pods do (the
// pods are left unschedulable: only their objects matter to status), and the Istio test charts
// installed. Target: at most 1 s per status (docs/benchmarks.md records the figure).
//
//	go build -o /tmp/kubectl-mesh ./cmd/kubectl-mesh
//	MESH_BENCH_BIN=/tmp/kubectl-mesh MESH_E2E_KEEP_LAB=1 go test -count=1 -tags e2e -run '^$' -bench MeshStatus -benchtime 20x ./e2e/
func BenchmarkMeshStatus(b *testing.B) {
	l := newLab(b)
	cs := clientFor(b, l)
	ctx := context.Background()
	d := b.TempDir()
	b.Setenv("HELM_CACHE_HOME", filepath.Join(d, "cache"))
	b.Setenv("HELM_CONFIG_HOME", filepath.Join(d, "config"))
	const cp = "e2e-mesh-bench-istio"
	url, _ := meshestest.Serve(b, "istio", "1.0.0")
	if _, _, code := plugin(ctx, b, l, "install", "istio", "-n", cp, "--chart-repo", url, "--wait=false"); code != 0 {
		b.Fatalf("install: exit code %d", code)
	}
	b.Cleanup(func() { plugin(context.Background(), b, l, "uninstall", "istio", "-n", cp) })
	const n = 50
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("e2e-mesh-bench-%02d", i)
		makeNamespace(b, cs, name, map[string]string{"istio-injection": "enabled"})
		if _, err := cs.CoreV1().Pods(name).Create(ctx, injectedPod(name), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var out string
	b.ResetTimer()
	for b.Loop() {
		out, _, _ = plugin(ctx, b, l, "status")
	}
	b.StopTimer()
	if got := strings.Count(out, "e2e-mesh-bench-"); got < n {
		b.Fatalf("status listed %d of the %d namespaces:\n%s", got, n, out)
	}
	// In process, the client's connections outlive one command. A user pays for a new process,
	// kubeconfig loading and a TLS handshake each time: MESH_BENCH_BIN=path/to/kubectl-mesh times
	// that binary too, and reports the median of 10 runs.
	if bin := os.Getenv("MESH_BENCH_BIN"); bin != "" {
		var runs []time.Duration
		for i := 0; i < 10; i++ {
			start := time.Now()
			cmd := exec.Command(bin, "--kubeconfig", l.Kubeconfig(), "status")
			outb, err := cmd.Output()
			runs = append(runs, time.Since(start))
			if strings.Count(string(outb), "e2e-mesh-bench-") < n {
				b.Fatalf("%s status: %v\n%s", bin, err, outb)
			}
		}
		sort.Slice(runs, func(i, j int) bool { return runs[i] < runs[j] })
		b.ReportMetric(float64(runs[len(runs)/2].Microseconds())/1000, "process-ms")
		b.ReportMetric(float64(runs[len(runs)-1].Microseconds())/1000, "process-max-ms")
	}
}

// injectedPod is a pod as Istio's injector leaves it (the app, istio-init, istio-proxy with its
// environment), pinned to a node that does not exist so that it stays Pending.
func injectedPod(ns string) *corev1.Pod {
	env := []corev1.EnvVar{}
	for _, k := range []string{"PILOT_CERT_PROVIDER", "CA_ADDR", "POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "SERVICE_ACCOUNT", "HOST_IP",
		"ISTIO_CPU_LIMIT", "PROXY_CONFIG", "ISTIO_META_POD_PORTS", "ISTIO_META_APP_CONTAINERS", "GOMEMLIMIT", "GOMAXPROCS",
		"ISTIO_META_CLUSTER_ID", "ISTIO_META_NODE_NAME", "ISTIO_META_INTERCEPTION_MODE", "ISTIO_META_WORKLOAD_NAME", "ISTIO_META_OWNER", "ISTIO_META_MESH_ID", "TRUST_DOMAIN"} {
		env = append(env, corev1.EnvVar{Name: k, Value: "value-of-" + strings.ToLower(k)})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns, Labels: map[string]string{"app": "reviews", "security.istio.io/tlsMode": "istio"},
			Annotations: map[string]string{"sidecar.istio.io/status": `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"]}`}},
		Spec: corev1.PodSpec{
			NodeSelector:   map[string]string{"kubectl-mesh.io/bench": "no-such-node"},
			InitContainers: []corev1.Container{{Name: "istio-init", Image: "kubectl-mesh.local/istio-test/proxyv2:1.0.0", Args: []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"}}},
			Containers: []corev1.Container{
				{Name: "reviews", Image: lab.ImageRef("mesh-echo"), Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
				{Name: "istio-proxy", Image: "kubectl-mesh.local/istio-test/proxyv2:1.0.0", Args: []string{"proxy", "sidecar", "--domain", ns + ".svc.cluster.local"}, Env: env,
					Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}},
			},
		},
	}
}
