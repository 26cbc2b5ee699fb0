//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/internal/apply"
	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/manifests"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/check"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// installWebhook applies the embedded manifests (what `kubectl mesh probe install` applies) and
// waits for both replicas. Short certificate lifetimes make rotation happen during the test.
func installWebhook(t testing.TB, l *lab.Lab, cs kubernetes.Interface, extraArgs ...string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	// A previous test's uninstall may still be deleting the namespace.
	waitFor(t, 2*time.Minute, "namespace "+manifests.Namespace+" not terminating", func() error {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, manifests.Namespace, metav1.GetOptions{})
		if err == nil && ns.DeletionTimestamp != nil {
			return fmt.Errorf("still terminating")
		}
		return nil
	})
	objs, err := manifests.Render(manifests.Options{ExtraWebhookArgs: extraArgs})
	if err != nil {
		t.Fatal(err)
	}
	ap, err := apply.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ap.Delete(context.Background(), objs); err != nil {
			t.Logf("uninstall: %v", err)
		}
	})
	waitAvailable(t, cs, manifests.Namespace, manifests.WebhookDeployment, 2, 120*time.Second)
	// Ready pods are not yet a webhook the API server reaches (endpoints, proxy rules, caBundle):
	// wait until a dry-run admission comes back with the probe.
	makeNamespace(t, cs, "e2e-webhook-check", nil)
	if err := check.WaitAdmission(ctx, cs, "e2e-webhook-check", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// The caBundle is written by the webhook itself at start-up.
	waitFor(t, 30*time.Second, "caBundle in the webhook configuration", func() error {
		c, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manifests.WebhookConfig, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range c.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return fmt.Errorf("webhook %s has no caBundle yet", w.Name)
			}
		}
		return nil
	})
}

func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func waitAvailable(t testing.TB, cs kubernetes.Interface, ns, name string, replicas int32, d time.Duration) {
	t.Helper()
	waitFor(t, d, "deployment "+ns+"/"+name, func() error {
		dep, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if dep.Status.AvailableReplicas != replicas || dep.Status.UpdatedReplicas != replicas || dep.Status.ObservedGeneration < dep.Generation {
			pods, _ := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			var states []string
			for _, p := range pods.Items {
				states = append(states, p.Name+":"+string(p.Status.Phase))
			}
			return fmt.Errorf("%d/%d available; pods %v", dep.Status.AvailableReplicas, replicas, states)
		}
		return nil
	})
}

func makeNamespace(t testing.TB, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// probeContainer finds the injected probe among the pod's containers and native sidecars.
func probeContainer(p *corev1.Pod) (*corev1.Container, bool) {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == inject.ProbeContainerName {
			return &p.Spec.InitContainers[i], true
		}
	}
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == inject.ProbeContainerName {
			return &p.Spec.Containers[i], false
		}
	}
	return nil, false
}

// webhookCalls is the API server's count of calls to the webhook's namespace-selected entry.
func webhookCalls(t testing.TB, cs kubernetes.Interface) float64 {
	return apiserverCounter(t, cs, "apiserver_admission_webhook_admission_duration_seconds_count{", `name="namespace.probe.kubectl-mesh.io"`)
}

func barePod(ns, name string) *corev1.Pod {
	d, _ := lab.EchoWorkload(ns, name, 1)
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: *d.Spec.Template.Spec.DeepCopy()}
}

func hasEvent(cs kubernetes.Interface, ns, reason, kind string) error {
	evs, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	var seen []string
	for _, e := range evs.Items {
		if e.Reason == reason && e.InvolvedObject.Kind == kind {
			return nil
		}
		seen = append(seen, e.InvolvedObject.Kind+"/"+e.Reason)
	}
	return fmt.Errorf("no %s event on a %s; events: %v", reason, kind, seen)
}

// TestWebhookInjectsSkipsAndFailsOpen is issue 3's integration test on the lab's real API server.
func TestWebhookInjectsSkipsAndFailsOpen(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	cs, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	installWebhook(t, l, cs, "--cert-validity=45s", "--ca-validity=24h")

	// Opted-in namespace: a Deployment's pod carries the probe as a native sidecar and runs.
	ns := "e2e-inject"
	makeNamespace(t, cs, ns, map[string]string{inject.LabelProbe: inject.ValueEnabled})
	d, _ := lab.EchoWorkload(ns, "echo", 1)
	createDeployment(ctx, t, cs, d)
	waitAvailable(t, cs, ns, "echo", 1, 120*time.Second)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods: %v %v", err, pods)
	}
	pod := &pods.Items[0]
	c, native := probeContainer(pod)
	if c == nil {
		t.Fatalf("pod %s has no probe container; annotations %v", pod.Name, pod.Annotations)
	}
	if !native || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("probe is not a native sidecar on a 1.37 server")
	}
	if pod.Annotations[inject.AnnotationStatus] == "" {
		t.Errorf("no %s annotation", inject.AnnotationStatus)
	}
	waitFor(t, 30*time.Second, "ProbeInjected event", func() error { return hasEvent(cs, ns, inject.EventProbeInjected, "ReplicaSet") })
	// The probe holds no service-account token (an empty directory shadows its path), and so the
	// ServiceAccount plugin leaves the pod alone after the webhook: one call per pod, not two.
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.Name != inject.TokenShadowVolume {
			t.Errorf("the probe mounts the pod's token (volume %s)", m.Name)
		}
	}
	callsBefore := webhookCalls(t, cs)
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, barePod(ns, "once"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if calls := webhookCalls(t, cs) - callsBefore; calls != 1 {
		t.Errorf("creating one pod called the webhook %.0f times, want 1", calls)
	}

	// Pod Security restricted: no probe (it would be rejected), and the skip is recorded.
	psa := "e2e-inject-restricted"
	makeNamespace(t, cs, psa, map[string]string{inject.LabelProbe: inject.ValueEnabled, "pod-security.kubernetes.io/enforce": "restricted"})
	rd, _ := lab.EchoWorkload(psa, "echo", 1)
	rd.Spec.Template.Spec.SecurityContext.RunAsNonRoot = ptr.To(true)
	createDeployment(ctx, t, cs, rd)
	waitAvailable(t, cs, psa, "echo", 1, 120*time.Second)
	waitFor(t, 30*time.Second, "ProbeSkipped event", func() error { return hasEvent(cs, psa, inject.EventProbeSkipped, "ReplicaSet") })
	rp, _ := cs.CoreV1().Pods(psa).List(ctx, metav1.ListOptions{})
	for _, p := range rp.Items {
		if c, _ := probeContainer(&p); c != nil {
			t.Errorf("probe injected into %s in a restricted namespace", p.Name)
		}
	}

	// Certificate rotation while pods are being created: no admission is lost. The serving
	// certificate lives 45s and is renewed with 15s left, so a 40s stream of creations spans a
	// rotation; every pod must carry the probe.
	sec0, err := cs.CoreV1().Secrets(manifests.Namespace).Get(ctx, manifests.TLSSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rot := "e2e-rotation"
	makeNamespace(t, cs, rot, map[string]string{inject.LabelProbe: inject.ValueEnabled})
	var created []string
	end := time.Now().Add(40 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		name := fmt.Sprintf("p%03d", i)
		p := barePod(rot, name)
		if err := lab.CreateWithRetry(ctx, 20*time.Second, func(ctx context.Context) error {
			// Server-side dry run would skip events; a real create is what the rotation must survive.
			_, err := cs.CoreV1().Pods(rot).Create(ctx, p, metav1.CreateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		created = append(created, name)
		time.Sleep(500 * time.Millisecond)
	}
	sec1, err := cs.CoreV1().Secrets(manifests.Namespace).Get(ctx, manifests.TLSSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sec0.Data["tls.crt"], sec1.Data["tls.crt"]) {
		t.Fatal("the serving certificate was not rotated during the test window")
	}
	var missing []string
	for _, name := range created {
		p, err := cs.CoreV1().Pods(rot).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := probeContainer(p); c == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d pods created across a certificate rotation lack the probe: %v", len(missing), len(created), missing)
	}
	t.Logf("%d pods created across a certificate rotation, all injected", len(created))
	_ = cs.CoreV1().Pods(rot).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})

	// Webhook down: pods are still created (failurePolicy Ignore), without the probe, and the
	// API server counts the fail-open.
	before := failOpenCount(t, cs)
	scale, err := cs.AppsV1().Deployments(manifests.Namespace).GetScale(ctx, manifests.WebhookDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 0
	if _, err := cs.AppsV1().Deployments(manifests.Namespace).UpdateScale(ctx, manifests.WebhookDeployment, scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Up to the 30 s grace period of each pod plus the kubelet's cleanup, which on a loaded
	// 2-core machine has exceeded a minute.
	waitFor(t, 2*time.Minute, "webhook pods gone", func() error {
		ps, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=mesh-webhook"})
		if err != nil {
			return err
		}
		if len(ps.Items) > 0 {
			return fmt.Errorf("%d webhook pods left", len(ps.Items))
		}
		return nil
	})
	down := barePod(ns, "while-webhook-down")
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, down, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod creation failed while the webhook was down: %v", err)
	}
	if err := lab.WaitPodRunning(ctx, cs, ns, down.Name, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	got, _ := cs.CoreV1().Pods(ns).Get(ctx, down.Name, metav1.GetOptions{})
	if c, _ := probeContainer(got); c != nil {
		t.Fatal("a pod created while the webhook was down has a probe?")
	}
	if after := failOpenCount(t, cs); after <= before {
		t.Fatalf("apiserver_admission_webhook_fail_open_count did not grow (%v -> %v): the skip is invisible", before, after)
	}
}

// failOpenCount reads the API server's count of admissions that failed open on our webhooks.
func failOpenCount(t testing.TB, cs kubernetes.Interface) float64 {
	return apiserverCounter(t, cs, "apiserver_admission_webhook_fail_open_count", "probe.kubectl-mesh.io")
}

// apiserverCounter sums the API server's metric series that start with prefix and mention label.
func apiserverCounter(t testing.TB, cs kubernetes.Interface, prefix, label string) float64 {
	t.Helper()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	var total float64
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, label) {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil {
				total += v
			}
		}
	}
	return total
}
