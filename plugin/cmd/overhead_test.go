package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes/probestest"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

var (
	ohStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ohNow   = ohStart.Add(95 * time.Second)
)

// overheadCluster is a small cluster with every case the table shows: healthy, degraded, no
// proxy, no probe, unreachable and misbehaving probes, and a namespace without probes.
func overheadCluster(t testing.TB) *probestest.APIServer {
	t.Helper()
	srv := probestest.NewAPIServer()
	t.Cleanup(srv.Close)
	add := func(ns, name, proxy string, probed bool, tr *probestest.Traffic) {
		var h http.Handler
		if tr != nil {
			mesh := map[string]string{"istio-proxy": "istio", "linkerd-proxy": "linkerd", "": "none"}[proxy]
			h = probestest.NewProbe(ohStart, ohNow, mesh, proxy, *tr).Handler()
		}
		srv.AddPod(probestest.Pod(ns, name, proxy, probed), h)
	}
	add("shop", "checkout-0", "istio-proxy", true, &probestest.Traffic{RPS: 120, ProxyAdded: 350 * time.Microsecond, App: 3 * time.Millisecond,
		ProxyCPUPerRequest: 250 * time.Microsecond, AppCPUPerRequest: time.Millisecond, Seed: 1,
		Outbound: &probestest.OutboundTraffic{RPS: 60, ProxyAdded: 400 * time.Microsecond, Upstream: 2 * time.Millisecond}})
	add("shop", "checkout-1", "istio-proxy", true, &probestest.Traffic{RPS: 80, ProxyAdded: 600 * time.Microsecond, App: 3 * time.Millisecond,
		ProxyCPUPerRequest: 300 * time.Microsecond, Losses: api.Losses{RingBufferFull: 40}, Seed: 2})
	add("shop", "legacy-0", "", true, &probestest.Traffic{RPS: 15, App: 8 * time.Millisecond, NoProxy: true, Seed: 3})
	add("shop", "web-0", "istio-proxy", false, nil)
	add("shop", "down-0", "istio-proxy", true, nil) // nothing listens on 9464
	add("shop", "odd-0", "istio-proxy", true, &probestest.Traffic{Seed: 4})
	add("batch", "report-0", "", false, nil)
	// A perf run's finished load generator: not a row (the goldens have none).
	done := probestest.Pod("shop", "loadgen-done", "", false)
	done.Status.Phase = corev1.PodSucceeded
	srv.AddPod(done, nil)
	add("mesh-linkerd", "api-0", "linkerd-proxy", true, &probestest.Traffic{RPS: 300, ProxyAdded: 120 * time.Microsecond, App: time.Millisecond,
		ProxyCPUPerRequest: 80 * time.Microsecond, Ambiguous: 0.2, Seed: 5})
	srv.SetOverride(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/pods/odd-0:9464/proxy/") {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>not a probe</html>"))
			return true
		}
		return false
	})
	return srv
}

func overheadOptions(srv *probestest.APIServer, out *bytes.Buffer) *OverheadOptions {
	return &OverheadOptions{
		AllNamespaces: true, Window: "1m", Output: "table", Parallel: 4,
		IOStreams: genericiooptions.IOStreams{Out: out, ErrOut: out},
		selector:  labels.Everything(), client: srv.Clientset(),
		interval: overheadWatchInterval, now: func() time.Time { return ohNow },
	}
}

func TestOverheadTableGolden(t *testing.T) {
	srv := overheadCluster(t)
	var out bytes.Buffer
	if err := overheadOptions(srv, &out).Run(context.Background()); err != nil {
		t.Fatalf("unhealthy probes are rows, not errors: %v", err)
	}
	golden(t, "overhead-all.txt", out.Bytes())
}

func TestOverheadYAMLGolden(t *testing.T) {
	srv := overheadCluster(t)
	var out bytes.Buffer
	o := overheadOptions(srv, &out)
	o.Output, o.AllNamespaces, o.namespace = "yaml", false, "shop"
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var r smps.OverheadReport
	if err := smps.Decode(bytes.NewReader(out.Bytes()), &r); err != nil {
		t.Fatalf("not a valid OverheadReport: %v", err)
	}
	golden(t, "overhead-shop.yaml", out.Bytes())
}

// Through the cobra command: flags, kubeconfig overrides, errors and exit codes.
func TestOverheadCommand(t *testing.T) {
	srv := overheadCluster(t)
	// An empty kubeconfig: nothing of the user's own leaks in.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := NewCmdMesh(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
		root.SetArgs(append([]string{"overhead", "--server", srv.URL, "--kubeconfig", kubeconfig}, args...))
		err := root.Execute()
		return out.String(), err
	}

	out, err := run("-n", "shop", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r smps.OverheadReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil || len(r.Pods) != 5 || len(r.Namespaces) != 1 {
		t.Fatalf("report: %d pods, %d namespaces, %v", len(r.Pods), len(r.Namespaces), err)
	}

	out, err = run("-A", "-l", "app=checkout")
	if err != nil || strings.Count(out, "checkout-") != 2 || strings.Contains(out, "legacy-0") {
		t.Errorf("-l app=checkout: %v\n%s", err, out)
	}

	for _, c := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"-n", "empty"}, "no running pods found in namespace empty", false},
		{[]string{"-A", "-l", "app=nothing"}, "no running pods found in any namespace matching -l app=nothing", false},
		{[]string{"-n", "shop", "--window", "5m"}, `--window "5m": use one of 10s, 1m, 10m`, true},
		{[]string{"-n", "shop", "-o", "wide"}, `--output "wide"`, true},
		{[]string{"-n", "shop", "--parallel", "0"}, "--parallel must be at least 1", true},
		{[]string{"-n", "shop", "-l", "a b"}, "--selector", true},
	} {
		_, err := run(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
			continue
		}
		if got := ExitCode(err) == ExitUsage; got != c.usage {
			t.Errorf("%v: usage error %v, want %v", c.args, got, c.usage)
		}
	}

	// RBAC: listing pods forbidden.
	srv.SetOverride(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/pods") {
			probestest.WriteStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, `pods is forbidden: User "dev" cannot list resource "pods"`, nil)
			return true
		}
		return false
	})
	if _, err := run("-A"); err == nil || !strings.Contains(err.Error(), "permission denied: cannot list pods in any namespace (check: kubectl auth can-i list pods -A; or name one namespace with -n)") {
		t.Errorf("forbidden -A: %v", err)
	}
	if _, err := run("-n", "shop"); err == nil || !strings.Contains(err.Error(), "kubectl auth can-i list pods -n shop") {
		t.Errorf("forbidden -n shop: %v", err)
	}
}

func TestOverheadUnreachableCluster(t *testing.T) {
	var out bytes.Buffer
	root := NewCmdMesh(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	root.SetArgs([]string{"overhead", "-A", "--server", "https://127.0.0.1:1", "--insecure-skip-tls-verify"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "cluster unreachable") {
		t.Fatalf("want a one-line 'cluster unreachable', got %v", err)
	}
}

// Without a terminal, --watch prints successive tables separated by a blank line, keeps going
// through a failed round, and ends without error when the context does (Ctrl-C).
func TestOverheadWatch(t *testing.T) {
	srv := overheadCluster(t)
	var lists atomic.Int32
	srv.SetOverride(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/pods") && lists.Add(1) == 2 {
			probestest.WriteStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "etcd is down", nil)
			return true
		}
		return false
	})
	var out, errOut bytes.Buffer
	o := overheadOptions(srv, &out)
	o.ErrOut = &errOut
	o.Watch, o.AllNamespaces, o.namespace = true, false, "mesh-linkerd"
	o.interval = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for lists.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	// Each round is a pod table, a blank line, a namespace table; rounds are separated by a
	// blank line.
	text := out.String()
	rounds := strings.Count(text, "PROBES\n")
	if rounds < 2 || strings.Count(text, "api-0") != rounds || strings.Count(text, "\n\n") != 2*rounds-1 {
		t.Fatalf("%d rounds:\n%s", rounds, text)
	}
	if !strings.Contains(errOut.String(), "etcd is down") {
		t.Errorf("the failed round is not reported: %q", errOut.String())
	}
}
