//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/lab/demo"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// sidecarStats is the part of the lab sidecar's own account (GET :15000/stats) the tests read.
type sidecarStats struct {
	Requests  int `json:"requests"`
	Residence struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
	} `json:"residence_ms"`
	CPU struct {
		SinceResetSeconds float64 `json:"since_reset_seconds"`
	} `json:"cpu"`
}

// sidecarAdmin calls the sidecar's admin port through the API server's pod proxy.
func sidecarAdmin(ctx context.Context, cs kubernetes.Interface, ns, pod, method, path string) ([]byte, error) {
	req := cs.CoreV1().RESTClient().Get()
	if method == "POST" {
		req = cs.CoreV1().RESTClient().Post()
	}
	return req.Namespace(ns).Resource("pods").Name(fmt.Sprintf("%s:%d", pod, sidecar.AdminPort)).SubResource("proxy").Suffix(path).DoRaw(ctx)
}

// TestSidecarOverheadAccuracy is issue 7's proof on the lab: the demo application behind the lab
// sidecar with a configured delay of 0, 1 ms and 5 ms. For each, a perf run with a baseline past
// the proxy, and three comparisons with ground truth:
//   - the probe's proxy-added p50 against the sidecar's own per-request account of its
//     residence time over the same requests: within 100 us;
//   - the growth of the probe's p50 with the configured delay: by that delay within 100 us;
//   - the client-side difference with and without the proxy against the probe's p50, within the
//     noise of the client's view (see baselineTolerance).
//
// Then a probe is killed: `kubectl mesh overhead` reports it and the application keeps serving.
func TestSidecarOverheadAccuracy(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	ctx := context.Background()
	const ns = "e2e-demo"

	mustPlugin(t, l, "probe", "install", "--timeout", "3m")
	t.Cleanup(func() { plugin(context.Background(), t, l, "probe", "uninstall") })
	makeNamespace(t, cs, ns, nil)
	mustPlugin(t, l, "probe", "enable", "-n", ns)

	delays := []time.Duration{0, time.Millisecond, 5 * time.Millisecond}
	for _, d := range delays {
		o := demo.Options{Namespace: ns, Name: appName(d), ServiceTime: time.Millisecond,
			Sidecar: &sidecar.Options{Delay: d, CPUPerRequest: 200 * time.Microsecond}}
		if err := demo.Deploy(ctx, cs, o, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	probeP50, truthP50 := map[time.Duration]float64{}, map[time.Duration]float64{}
	for _, d := range delays {
		name := appName(d)
		pod := onlyPod(t, cs, ns, "app="+name)
		if _, err := sidecarAdmin(ctx, cs, ns, pod.Name, "POST", "reset"); err != nil {
			t.Fatalf("reset the sidecar's account: %v", err)
		}
		mustPlugin(t, l, "perf", "run", "svc/"+name+":"+demo.ServiceHTTP, "-n", ns, "--baseline", "svc/"+name+":"+demo.ServiceDirect,
			"--qps", "100", "--connections", "2", "--duration", "10s", "--warmup", "1s", "--name", name, "--output-dir", dir)
		raw, err := sidecarAdmin(ctx, cs, ns, pod.Name, "GET", "stats")
		if err != nil {
			t.Fatal(err)
		}
		var truth sidecarStats
		if err := json.Unmarshal(raw, &truth); err != nil {
			t.Fatalf("sidecar stats: %v", err)
		}
		rec, docs, err := runstore.Store{Client: cs}.Get(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		var o smps.OverheadReport
		if err := smps.Decode(bytes.NewReader(docs[perf.DocOverhead]), &o); err != nil {
			t.Fatal(err)
		}
		if len(o.Pods) != 1 || o.Pods[0].ProxyAddedLatencyMs == nil {
			t.Fatalf("delay %s: overhead report without proxy-added latency: %s", d, docs[perf.DocOverhead])
		}
		p := o.Pods[0]
		probe := p.ProxyAddedLatencyMs.P50
		probeP50[d], truthP50[d] = probe, truth.Residence.P50
		// The sidecar saw the warmup and the measured phase, as the probe's window did; with the
		// sidecar reset just before, both count the same requests.
		t.Logf("delay %s: probe proxy-added p50 %.3f ms over %d requests; sidecar residence p50 %.3f ms over %d requests; probe %s %s",
			d, probe, p.Requests, truth.Residence.P50, truth.Requests, p.Probe.Status, p.Probe.Message)
		if diff := math.Abs(probe - truth.Residence.P50); diff > 0.1 {
			t.Errorf("delay %s: probe p50 %.3f ms is %.0f us from the sidecar's own %.3f ms (limit 100 us)", d, probe, diff*1000, truth.Residence.P50)
		}
		// Proxy CPU: the probe's (CPU ms per 1000 requests over its window) against the sidecar's
		// own getrusage since the reset. Before the reset and during the baseline (which goes
		// past the proxy) the sidecar is idle, so both cover the same work.
		if p.ProxyCPUMsPer1000Requests == nil {
			t.Errorf("delay %s: no proxy CPU measured: %s", d, p.Probe.Message)
		} else {
			probeCPU := *p.ProxyCPUMsPer1000Requests * float64(p.Requests) / 1e6
			t.Logf("delay %s: proxy CPU %.3f s by the probe, %.3f s by the sidecar's own account", d, probeCPU, truth.CPU.SinceResetSeconds)
			if truth.CPU.SinceResetSeconds <= 0 || math.Abs(probeCPU-truth.CPU.SinceResetSeconds) > 0.15*truth.CPU.SinceResetSeconds {
				t.Errorf("delay %s: the probe's proxy CPU %.3f s is not within 15%% of the sidecar's %.3f s", d, probeCPU, truth.CPU.SinceResetSeconds)
			}
		}
		// Every request the sidecar handled is in the probe's figures: the run's reading waits
		// until the probe has decided the run's last requests (perf.coversRun; before it did, a
		// loaded lab once lost the last second, 995 of 1103).
		t.Logf("delay %s: the sidecar handled %d requests, the probe accounted for %d (+%d unmatched)", d, truth.Requests, p.Requests, p.Unmatched.Edge)
		if lost := int64(truth.Requests) - p.Requests - p.Unmatched.Edge; lost > int64(truth.Requests)/50 {
			t.Errorf("delay %s: %d of the sidecar's %d requests are missing from the probe's figures", d, lost, truth.Requests)
		}

		// The client's view: with minus without the proxy, against the probe.
		s := rec.Summary
		if s == nil || s.BaselineP50 == nil {
			t.Fatalf("delay %s: run without a baseline: %+v", d, s)
		}
		clientDiff := s.ClientP50 - *s.BaselineP50
		tol := baselineTolerance(s, probe)
		t.Logf("delay %s: client p50 %.3f ms with, %.3f ms without the proxy: difference %.3f ms, probe %.3f ms (tolerance %.3f ms)",
			d, s.ClientP50, *s.BaselineP50, clientDiff, probe, tol)
		if math.Abs(clientDiff-probe) > tol {
			t.Errorf("delay %s: client-side difference %.3f ms and the probe's %.3f ms disagree by more than the client's noise %.3f ms", d, clientDiff, probe, tol)
		}
		if _, err := os.Stat(filepath.Join(dir, name, "report.html")); err != nil {
			t.Errorf("no HTML report: %v", err)
		}
	}
	// The probe follows the configured delay: its p50 grows as the sidecar's own residence
	// grows, within 100 us. The residence must grow by most of the delay (80%), which tells
	// that the delay was applied at all; not by the whole delay: the residence without delay
	// includes the sidecar's own processing, which varied between runs by more than 100 us
	// (a CI run: 0.597 ms at delay 0, 5.483 ms at 5 ms, growth 4.886 ms). Against the delay
	// itself the growth is logged, not asserted: the sidecar holds each request on Go's timer
	// and then a high-resolution one (fixture.spin), which on a quiet lab overshoots by tens of
	// microseconds (1 ms grew by 1.019 ms, 5 ms by 5.000 ms) but during CI by 90-256 us (1.090,
	// 5.256 ms; the probe followed within 10 and 51 us). That is the proxy's own lateness, which
	// the probe must and does report; the sidecar's account is the exact reference.
	for _, d := range delays[1:] {
		growth, truthGrowth := probeP50[d]-probeP50[0], truthP50[d]-truthP50[0]
		t.Logf("configured delay %s: probe p50 grew by %.3f ms (%+.0f us from the delay), the sidecar's own residence by %.3f ms",
			d, growth, (growth-ms(d))*1000, truthGrowth)
		if math.Abs(growth-truthGrowth) > 0.1 {
			t.Errorf("configured delay %s: the probe's p50 grew by %.3f ms, the sidecar's residence by %.3f ms (limit 100 us)", d, growth, truthGrowth)
		}
		if truthGrowth < 0.8*ms(d) {
			t.Errorf("configured delay %s: the sidecar's residence grew by only %.3f ms: the delay was not applied", d, truthGrowth)
		}
	}

	// A probe killed: the overhead table says so, the command succeeds, the application serves.
	victim := onlyPod(t, cs, ns, "app="+appName(0))
	if err := killProbe(l, victim); err != nil {
		t.Fatal(err)
	}
	out, _, code := plugin(ctx, t, l, "overhead", "-n", ns, "-o", "json")
	if code != 0 {
		t.Fatalf("overhead with a killed probe: exit code %d", code)
	}
	var live smps.OverheadReport
	if err := smps.Decode(strings.NewReader(out), &live); err != nil {
		t.Fatal(err)
	}
	healthy := 0
	for _, p := range live.Pods {
		if p.Name == victim.Name {
			if p.Probe.Status == smps.ProbeOK {
				t.Errorf("the killed probe of %s is reported ok", p.Name)
			}
			t.Logf("killed probe reported as %s: %s", p.Probe.Status, p.Probe.Message)
		} else if p.Probe.Status != smps.ProbeFailed {
			healthy++
		}
	}
	if healthy != len(delays)-1 {
		t.Errorf("%d other probes answer, want %d", healthy, len(delays)-1)
	}
	// Kubernetes counts every container, native sidecars included, in a pod's readiness: until
	// the kubelet has restarted the probe the pod is out of its Services (a limit of the platform,
	// as for a killed istio-proxy). The probe has no readiness probe and never exits on its own
	// errors, so the gap is the kubelet's restart, a few seconds; then everything serves again.
	killed := time.Now()
	waitFor(t, time.Minute, "the pod Ready again after the probe's restart", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if restarts(p) <= restarts(victim) {
			return errorf("the probe of %s has not been restarted yet", victim.Name)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errorf("pod %s not Ready", victim.Name)
	})
	t.Logf("pod Ready again %s after the probe was killed", time.Since(killed).Round(100*time.Millisecond))
	// Ready is then published in the EndpointSlice, and kube-proxy programs it.
	waitFor(t, time.Minute, "the pod a ready endpoint again", func() error {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + appName(0)})
		if err != nil {
			return err
		}
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				if ep.TargetRef != nil && ep.TargetRef.Name == victim.Name && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					return nil
				}
			}
		}
		return errorf("no ready endpoint for %s", victim.Name)
	})
	time.Sleep(3 * time.Second) // kube-proxy's sync after the EndpointSlice change
	mustPlugin(t, l, "perf", "run", "svc/"+appName(0)+":"+demo.ServiceHTTP, "-n", ns, "--qps", "50", "--duration", "3s", "--warmup", "0s",
		"--name", "after-kill", "--output-dir", "")
}

// baselineTolerance is the noise of the client-side difference: two separate runs' p50s, each
// uncertain by the spread of its own distribution around the median. It is taken as half the
// larger p50-to-p90 spread of the two runs, never below 300 us (the pod-network hops the client's
// view includes and the probe's does not, e.g. kube-proxy's DNAT, and the drift between two runs a
// few seconds apart), plus 5% of the proxy-added latency itself: a client that waits longer for
// its answer wakes later (timer slack, idle CPUs' exit latency, the scheduler), so its view of a
// long delay overshoots by more. CI runs read the client-side difference 257 and 329 us above the
// probe at 5 ms (134 us at 0 ms, 9 us at 1 ms) while the probe agreed with the sidecar's own
// account within 51 and 25 us: the client's view is the noisy one, and the probe's accuracy is
// asserted against that account, within 100 us, above.
func baselineTolerance(s *runstore.Summary, proxyAdded float64) float64 {
	spread := math.Max(s.ClientP90-s.ClientP50, *s.BaselineP90-*s.BaselineP50)
	return math.Max(0.3, spread/2) + 0.05*proxyAdded
}

func appName(d time.Duration) string {
	return fmt.Sprintf("echo-delay-%dms", d/time.Millisecond)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// onlyPod returns the one running pod that matches the selector.
func onlyPod(t testing.TB, cs kubernetes.Interface, ns, selector string) *corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		t.Fatalf("%d running pods match %s, want 1", len(live), selector)
	}
	return &live[0]
}

// killProbe kills the probe container's task through the lab's containerd, by container ID.
func killProbe(l *lab.Lab, pod *corev1.Pod) error {
	for _, st := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if st.Name != inject.ProbeContainerName {
			continue
		}
		id := strings.TrimPrefix(st.ContainerID, "containerd://")
		out, err := exec.Command("ctr", "--address", l.ContainerdSocket(), "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr task kill %s: %v: %s", id, err, out)
		}
		return nil
	}
	return fmt.Errorf("pod %s has no %s container status", pod.Name, inject.ProbeContainerName)
}

// TestCaddySidecar: an unmodified third-party proxy (Caddy, built here from its Go module) in the
// sidecar position behind the same REDIRECT. There is no ground truth inside Caddy; the probe
// must still see the proxy, pair every request, and measure a positive proxy-added time that the
// client's with/without difference confirms within the client's noise.
func TestCaddySidecar(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	ctx := context.Background()
	if err := l.EnsureCaddy(testWriter{t}); err != nil {
		t.Fatalf("build caddy: %v", err)
	}
	// Up on a running lab imports the images again, mesh-caddy now included.
	if _, err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	const ns = "e2e-caddy"
	mustPlugin(t, l, "probe", "install", "--timeout", "3m")
	t.Cleanup(func() { plugin(context.Background(), t, l, "probe", "uninstall") })
	makeNamespace(t, cs, ns, nil)
	mustPlugin(t, l, "probe", "enable", "-n", ns)
	o := demo.Options{Namespace: ns, Name: "echo", ServiceTime: time.Millisecond, Sidecar: &sidecar.Options{Proxy: sidecar.ProxyCaddy}}
	if err := demo.Deploy(ctx, cs, o, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	mustPlugin(t, l, "perf", "run", "svc/echo:"+demo.ServiceHTTP, "-n", ns, "--baseline", "svc/echo:"+demo.ServiceDirect,
		"--qps", "100", "--connections", "2", "--duration", "10s", "--warmup", "1s", "--name", "caddy", "--output-dir", "")
	rec, docs, err := runstore.Store{Client: cs}.Get(ctx, ns, "caddy")
	if err != nil {
		t.Fatal(err)
	}
	var o2 smps.OverheadReport
	if err := smps.Decode(bytes.NewReader(docs[perf.DocOverhead]), &o2); err != nil {
		t.Fatal(err)
	}
	if len(o2.Pods) != 1 || o2.Pods[0].ProxyAddedLatencyMs == nil {
		t.Fatalf("no proxy-added latency measured for Caddy: %s", docs[perf.DocOverhead])
	}
	p := o2.Pods[0]
	s := rec.Summary
	added := p.ProxyAddedLatencyMs.P50
	clientDiff := s.ClientP50 - *s.BaselineP50
	t.Logf("caddy: probe proxy-added p50 %.3f ms p99 %.3f ms over %d requests (%d unmatched at the edge); client difference p50 %.3f ms",
		added, p.ProxyAddedLatencyMs.P99, p.Requests, p.Unmatched.Edge, clientDiff)
	if p.ProxyContainer != sidecar.ProxyContainerName || added <= 0 {
		t.Errorf("proxy %q, proxy-added p50 %.3f ms", p.ProxyContainer, added)
	}
	// The measured requests: the run's and its warmup's, all seen by the probe.
	if want := s.Requests; p.Requests+p.Unmatched.Edge < want {
		t.Errorf("the probe accounted for %d (+%d unmatched) of the %d measured requests", p.Requests, p.Unmatched.Edge, want)
	}
	if tol := baselineTolerance(s, added); math.Abs(clientDiff-added) > tol {
		t.Errorf("client-side difference %.3f ms and the probe's %.3f ms disagree by more than the client's noise %.3f ms", clientDiff, added, tol)
	}
}

// restarts is the probe container's restart count.
func restarts(p *corev1.Pod) int32 {
	for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st.Name == inject.ProbeContainerName {
			return st.RestartCount
		}
	}
	return -1
}
