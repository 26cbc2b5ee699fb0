package cmd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func f64(v float64) *float64 { return &v }

func sampleRuns() (*runstore.Record, *runstore.Record, *smps.OverheadReport) {
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	end := t0.Add(30 * time.Second)
	a := &runstore.Record{
		Name: "echo-plain", Namespace: "demo", Status: runstore.Succeeded, Target: "svc/echo:80", URL: "http://echo.demo.svc:80/",
		Spec:    runstore.Spec{QPS: 100, Connections: 4, Duration: "30s", Warmup: "2s", Protocol: "http"},
		Created: t0, Start: &t0, End: &end,
		Summary: &runstore.Summary{Requests: 3000, ActualQPS: 100, ClientP50: 0.812, ClientP90: 1.2, ClientP99: 2.5, Probed: 2, Pods: 2},
	}
	b := &runstore.Record{
		Name: "echo-sidecar", Namespace: "demo", Status: runstore.Partial, Message: "stopped early: the figures cover 12.5s", Target: "svc/echo-sc:80", URL: "http://echo-sc.demo.svc:80/",
		Spec:    runstore.Spec{QPS: 100, Connections: 4, Duration: "30s", Protocol: "http", Baseline: "svc/echo:80"},
		Created: t0.Add(time.Minute), Start: &t0, End: &end,
		Summary: &runstore.Summary{Requests: 1250, Errors: 3, ActualQPS: 99.5, ClientP50: 1.912, ClientP90: 2.7, ClientP99: 6.1,
			ProxyAddedP50: f64(1.05), ProxyAddedP90: f64(1.4), ProxyAddedP99: f64(3.2), ProxyCPUMillicores: f64(41.5),
			BaselineP50: f64(0.8), BaselineP90: f64(1.1), BaselineP99: f64(2.4), Probed: 1, Pods: 2},
	}
	o := smps.NewOverheadReport("echo-sidecar", t0, end)
	o.Pods = []smps.PodOverhead{
		{Namespace: "demo", Name: "echo-sc-1", ProxyContainer: "mesh-sidecar", Probe: smps.ProbeHealth{Status: smps.ProbeOK},
			OverheadStats: smps.OverheadStats{Requests: 1250, RPS: 41.6, ProxyAddedLatencyMs: &smps.TailLatencyMs{P50: 1.05, P90: 1.4, P99: 3.2, P999: 4, Max: 5}, ProxyCPUMsPer1000Requests: f64(996)}},
		{Namespace: "demo", Name: "echo-sc-2", ProxyContainer: "mesh-sidecar", Probe: smps.ProbeHealth{Status: smps.ProbeFailed, Message: "probe unreachable"}},
	}
	return a, b, o
}

func TestPrintersGolden(t *testing.T) {
	a, b, o := sampleRuns()
	var buf bytes.Buffer
	if err := printRun(&buf, outputTable, b, o); err != nil {
		t.Fatal(err)
	}
	golden(t, "perf-get.txt", buf.Bytes())

	buf.Reset()
	if err := printRun(&buf, outputYAML, a, nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "perf-get.yaml", buf.Bytes())

	buf.Reset()
	// Ages are relative to now: fix Created far in the past so the column is stable ("Xy").
	la, lb := *a, *b
	la.Created, lb.Created = time.Time{}, time.Time{}
	if err := printRunList(&buf, outputTable, []runstore.Record{la, lb}, true); err != nil {
		t.Fatal(err)
	}
	golden(t, "perf-list.txt", buf.Bytes())

	buf.Reset()
	if err := printCompare(&buf, outputTable, a, b); err != nil {
		t.Fatal(err)
	}
	golden(t, "perf-compare.txt", buf.Bytes())

	buf.Reset()
	if err := printCompare(&buf, outputJSON, a, b); err != nil {
		t.Fatal(err)
	}
	golden(t, "perf-compare.json", buf.Bytes())
}

func TestExitCodes(t *testing.T) {
	root := NewCmdMesh(testStreams())
	root.SetArgs([]string{"perf", "run", "svc/echo:80", "--qps", "many"})
	if got := ExitCode(root.Execute()); got != ExitUsage {
		t.Errorf("malformed flag: exit code %d, want %d", got, ExitUsage)
	}
	root = NewCmdMesh(testStreams())
	root.SetArgs([]string{"--kubeconfig", "/nonexistent/kubeconfig", "perf", "run", "svc/echo"})
	if got := ExitCode(root.Execute()); got != ExitUsage {
		t.Errorf("target without port: exit code %d, want %d", got, ExitUsage)
	}
	root = NewCmdMesh(testStreams())
	root.SetArgs([]string{"--server", "https://127.0.0.1:1", "perf", "list"})
	err := root.Execute()
	if got := ExitCode(err); got != ExitError || err == nil {
		t.Errorf("unreachable cluster: exit code %d (%v), want %d", got, err, ExitError)
	}
}

func testStreams() genericiooptions.IOStreams {
	var out bytes.Buffer
	return genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &out}
}
