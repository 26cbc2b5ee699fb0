package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes/probestest"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// benchPods and benchDelay model the target: `kubectl mesh overhead -A` over 200 probed pods
// in at most 2 s. Every request to the stand-in API server waits benchDelay first, the upper
// end of what the API server's own work and its proxy hop to a pod cost on a small cluster.
const (
	benchPods  = 200
	benchDelay = 5 * time.Millisecond
)

// benchCluster is 200 Istio pods in 10 namespaces, each with its own probe (a real recorder fed
// 90 s of synthetic requests at 50-245 rps, served by the real probe HTTP handler), so every
// read computes and encodes a real snapshot with its histograms, as a probe does.
func benchCluster(b *testing.B) (*probestest.APIServer, string) {
	b.Helper()
	srv := probestest.NewAPIServer()
	b.Cleanup(srv.Close)
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range benchPods {
		tr := probestest.Traffic{
			RPS:        float64(50 + i%40*5),
			ProxyAdded: time.Duration(200+i%7*60) * time.Microsecond, App: time.Duration(1+i%5) * time.Millisecond,
			ProxyCPUPerRequest: 250 * time.Microsecond, AppCPUPerRequest: time.Millisecond,
			Ambiguous: 0.05, Unmatched: 0.001, Seed: uint64(i + 1),
		}
		p := probestest.NewProbe(start, start.Add(90*time.Second), "istio", "istio-proxy", tr)
		srv.AddPod(probestest.Pod(fmt.Sprintf("team-%02d", i%10), fmt.Sprintf("svc%02d-%03d", i%13, i), "istio-proxy", true), p.Handler())
	}
	srv.SetDelay(benchDelay)
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return srv, kubeconfig
}

func runOverhead(srv *probestest.APIServer, kubeconfig string, out io.Writer, args ...string) error {
	root := NewCmdMesh(genericiooptions.IOStreams{Out: out, ErrOut: out})
	root.SetArgs(append([]string{"overhead", "-A", "--server", srv.URL, "--kubeconfig", kubeconfig}, args...))
	return root.Execute()
}

// BenchmarkOverheadAll200Pods is the whole `kubectl mesh overhead -A` (flags, kubeconfig,
// reachability check, pod list, 200 probe reads through the pod proxy, report, table) at the
// default --parallel. The target is 2000 ms/op.
func BenchmarkOverheadAll200Pods(b *testing.B) {
	srv, kubeconfig := benchCluster(b)
	var out bytes.Buffer
	if err := runOverhead(srv, kubeconfig, &out); err != nil {
		b.Fatal(err)
	}
	if n := strings.Count(out.String(), " ok"); n < benchPods {
		b.Fatalf("%d pods ok, want %d:\n%s", n, benchPods, out.String())
	}
	b.ResetTimer()
	for b.Loop() {
		if err := runOverhead(srv, kubeconfig, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

// BenchmarkOverheadParallel is the same at several --parallel values: what chose
// probes.DefaultParallel (32).
func BenchmarkOverheadParallel(b *testing.B) {
	srv, kubeconfig := benchCluster(b)
	for _, p := range []int{1, 8, 16, 32, 64} {
		b.Run("parallel="+strconv.Itoa(p), func(b *testing.B) {
			for b.Loop() {
				if err := runOverhead(srv, kubeconfig, io.Discard, "--parallel", strconv.Itoa(p)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
	}
}
