//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// plugin runs `kubectl mesh ARGS` in process against the lab and returns stdout, stderr and the
// documented exit code.
func plugin(ctx context.Context, t testing.TB, l *lab.Lab, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := cmd.NewCmdMesh(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs(append([]string{"--kubeconfig", l.Kubeconfig()}, args...))
	err := root.ExecuteContext(ctx)
	if err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	t.Logf("kubectl mesh %s -> %d\n%s", strings.Join(args, " "), cmd.ExitCode(err), strings.TrimSpace(errOut.String()))
	return out.String(), errOut.String(), cmd.ExitCode(err)
}

func mustPlugin(t testing.TB, l *lab.Lab, args ...string) string {
	t.Helper()
	out, _, code := plugin(context.Background(), t, l, args...)
	if code != 0 {
		t.Fatalf("kubectl mesh %s: exit code %d", strings.Join(args, " "), code)
	}
	return out
}

// TestPerfRunStoredListedCompared: the probe installed and enabled with the plugin, a perf run
// against a real Deployment without a mesh, its documents valid and stored, list, get and
// compare, the overhead table, Ctrl-C keeping a partial result, and a run listed after its
// plugin process was killed.
func TestPerfRunStoredListedCompared(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	ctx := context.Background()
	const ns = "e2e-perf"

	mustPlugin(t, l, "probe", "install", "--timeout", "3m")
	t.Cleanup(func() { plugin(context.Background(), t, l, "probe", "uninstall") })
	makeNamespace(t, cs, ns, nil)
	d, svc := lab.EchoWorkload(ns, "echo", 2)
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createDeployment(ctx, t, cs, d)
	waitAvailable(t, cs, ns, "echo", 2, 2*time.Minute)

	// Enabling lists the running pods without the probe and --restart rolls them.
	out := mustPlugin(t, l, "probe", "enable", "-n", ns, "--restart")
	if !strings.Contains(out, "Deployment/echo restarted") {
		t.Fatalf("probe enable --restart did not restart the echo Deployment:\n%s", out)
	}
	waitFor(t, 2*time.Minute, "echo pods carrying a Ready probe", func() error { return probedAndReady(cs, ns, "app=echo", 2) })

	port := svc.Spec.Ports[0].Port
	target := "svc/echo:" + itoa(int(port)) + "/perf"
	dir := t.TempDir()
	start := time.Now()
	out, _, code := plugin(ctx, t, l, "perf", "run", target, "-n", ns, "--qps", "100", "--duration", "10s", "--warmup", "1s",
		"--name", "p1", "--labels", "suite=e2e", "--output-dir", dir, "-o", "json")
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("perf run exit code %d", code)
	}
	t.Logf("perf run of 10s (+1s warmup) took %s", took.Round(time.Millisecond))
	var rec runstore.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("perf run -o json: %v\n%s", err, out)
	}
	s := rec.Summary
	if rec.Status != runstore.Succeeded || s == nil {
		t.Fatalf("run status %s, summary %+v, message %q", rec.Status, s, rec.Message)
	}
	if s.Requests < 900 || s.Requests > 1100 || s.Errors != 0 {
		t.Errorf("10 s at 100 qps gave %d requests, %d errors", s.Requests, s.Errors)
	}
	if s.Pods != 2 || s.Probed != 2 {
		t.Errorf("probes answered for %d of %d pods, want 2 of 2", s.Probed, s.Pods)
	}
	if s.ProxyAddedP50 != nil {
		t.Errorf("no mesh, yet a proxy-added p50 of %v ms", *s.ProxyAddedP50)
	}

	// Every document validates, and the probes counted the requests the generator sent.
	for _, name := range []string{perf.DocResult, perf.DocTestConfig, perf.DocMeshConfig, perf.DocEnvironment, perf.DocMeshery, perf.DocOverhead} {
		b, err := os.ReadFile(filepath.Join(dir, "p1", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := smps.Decode(bytes.NewReader(b), docFor(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var o smps.OverheadReport
	b, _ := os.ReadFile(filepath.Join(dir, "p1", perf.DocOverhead))
	if err := smps.Decode(bytes.NewReader(b), &o); err != nil {
		t.Fatal(err)
	}
	var seen int64
	for _, p := range o.Pods {
		seen += p.Requests
		if p.Probe.Status != smps.ProbeOK || p.ProxyAddedLatencyMs != nil {
			t.Errorf("pod %s: probe %+v, proxy-added %+v; want ok and none", p.Name, p.Probe, p.ProxyAddedLatencyMs)
		}
	}
	// The probe's window covers warmup and the smoke traffic is elsewhere: at least the measured
	// requests, at most those plus the warmup's 100.
	if seen < s.Requests || seen > s.Requests+150 {
		t.Errorf("probes saw %d requests, the generator sent %d measured (+~100 warmup)", seen, s.Requests)
	}

	// A second run with a baseline (the same Service: a difference within noise), then list,
	// get and compare from the stored runs.
	mustPlugin(t, l, "perf", "run", target, "-n", ns, "--qps", "100", "--duration", "5s", "--warmup", "0s",
		"--name", "p2", "--baseline", target, "--output-dir", "")
	out = mustPlugin(t, l, "perf", "list", "-n", ns, "-o", "json")
	var list struct{ Items []runstore.Record }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 2 {
		t.Fatalf("perf list: %v, %d items\n%s", err, len(list.Items), out)
	}
	if list.Items[1].Summary == nil || list.Items[1].Summary.BaselineP50 == nil {
		t.Errorf("p2 has no baseline: %+v", list.Items[1].Summary)
	}
	if out := mustPlugin(t, l, "perf", "list", "-A", "-l", "suite=e2e"); !strings.Contains(out, "p1") || strings.Contains(out, "p2") {
		t.Errorf("perf list -l suite=e2e:\n%s", out)
	}
	out = mustPlugin(t, l, "perf", "get", "p1", "-n", ns, "--show", perf.DocResult)
	var res smps.PerformanceTestResult
	if err := smps.Decode(strings.NewReader(out), &res); err != nil || res.DetailsURI != perf.DocOverhead {
		t.Errorf("stored result: %v, details_uri %q", err, res.DetailsURI)
	}
	if out := mustPlugin(t, l, "perf", "compare", "p1", "p2", "-n", ns); !strings.Contains(out, "client p50 (ms)") {
		t.Errorf("perf compare:\n%s", out)
	}

	// The live table lists both pods with a healthy probe.
	out = mustPlugin(t, l, "overhead", "-n", ns, "--window", "1m")
	if n := strings.Count(out, "echo-"); n < 2 {
		t.Errorf("overhead -n %s lists %d echo pods:\n%s", ns, n, out)
	}

	// Ctrl-C: the context is cancelled mid-run; the generator writes its partial result.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		waitForJobRunning(cs, ns, "p3")
		time.Sleep(4 * time.Second)
		cancel()
	}()
	_, _, code = plugin(cctx, t, l, "perf", "run", target, "-n", ns, "--qps", "50", "--duration", "60s", "--warmup", "0s", "--name", "p3", "--output-dir", "")
	cancel()
	if code != cmd.ExitInterrupted {
		t.Errorf("interrupted run: exit code %d, want %d", code, cmd.ExitInterrupted)
	}
	p3, _, err := runstore.Store{Client: cs}.Get(ctx, ns, "p3")
	if err != nil {
		t.Fatal(err)
	}
	if p3.Status != runstore.Partial || p3.Summary == nil || p3.Summary.Requests == 0 {
		t.Errorf("interrupted run stored as %s with %+v", p3.Status, p3.Summary)
	}

	// The plugin process killed mid-run: the run is still listed.
	bin := filepath.Join(l.BinDir, "kubectl-mesh")
	c := exec.Command(bin, "--kubeconfig", l.Kubeconfig(), "perf", "run", target, "-n", ns, "--qps", "20", "--duration", "30s", "--name", "p4", "--output-dir", "")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitForJobRunning(cs, ns, "p4")
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()
	out = mustPlugin(t, l, "perf", "list", "-n", ns)
	if !strings.Contains(out, "p4") {
		t.Errorf("a run whose plugin was killed is not listed:\n%s", out)
	}
	_ = cs.BatchV1().Jobs(ns).Delete(ctx, "p4", metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
	waitFor(t, time.Minute, "p4 reported Abandoned once its Job is gone", func() error {
		out, _, _ := plugin(ctx, t, l, "perf", "list", "-n", ns)
		if !strings.Contains(out, string(runstore.Abandoned)) {
			return errorf("perf list:\n%s", out)
		}
		return nil
	})
}

func docFor(name string) smps.Document {
	switch name {
	case perf.DocResult:
		return &smps.PerformanceTestResult{}
	case perf.DocTestConfig:
		return &smps.PerformanceTestConfig{}
	case perf.DocMeshConfig:
		return &smps.ServiceMeshConfig{}
	case perf.DocEnvironment:
		return &smps.EnvironmentConfig{}
	case perf.DocMeshery:
		return &smps.MesheryTestConfig{}
	}
	return &smps.OverheadReport{}
}

// probedAndReady checks that n pods match the selector, all carrying a Ready probe.
func probedAndReady(cs kubernetes.Interface, ns, selector string, n int) error {
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	ready := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			return errorf("pod %s still terminating", p.Name)
		}
		if _, ok := probeContainer(p); !ok {
			return errorf("pod %s has no probe", p.Name)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != n || len(pods.Items) != n {
		return errorf("%d of %d pods ready, want %d", ready, len(pods.Items), n)
	}
	return nil
}

// waitForJobRunning waits (up to 2 min) for the run's load generator pod to run.
func waitForJobRunning(cs kubernetes.Interface, ns, job string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					return
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func clientFor(t testing.TB, l *lab.Lab) kubernetes.Interface {
	t.Helper()
	cs, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func itoa(n int) string { return strconv.Itoa(n) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func ptrTo[T any](v T) *T { return &v }
