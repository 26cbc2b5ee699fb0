package htmlreport

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
)

func TestRenderIsSelfContained(t *testing.T) {
	mk := func(p50 float64) []byte {
		b, _ := json.Marshal(loadgen.Result{Kind: loadgen.KindResult, HistogramMs: []loadgen.Bucket{
			{StartMs: p50 * 0.5, EndMs: p50, Count: 50}, {StartMs: p50, EndMs: p50 * 3, Count: 50},
		}})
		return b
	}
	var edge, app, added histogram.Histogram
	for i := 0; i < 1000; i++ {
		a := time.Duration(400+i) * time.Microsecond
		app.Record(a)
		edge.Record(a + time.Millisecond)
		added.Record(time.Millisecond + time.Duration(i%7)*time.Microsecond)
	}
	se, sa, sp := edge.Sparse(), app.Sparse(), added.Sparse()
	probes, _ := json.Marshal([]perf.ProbeRecord{{Namespace: "demo", Pod: "echo-1", Snapshot: &api.Snapshot{Histograms: &api.Histograms{Edge: &se, App: &sa, ProxyAdded: &sp}}}})
	rec := &runstore.Record{Name: "r<1>", Namespace: "demo", Status: runstore.Succeeded, Target: "svc/echo:80", Spec: runstore.Spec{Baseline: "svc/direct:80"},
		Summary: &runstore.Summary{Requests: 100, ClientP50: 1.5}}
	var out bytes.Buffer
	if err := Render(&out, rec, map[string][]byte{perf.DocLoad: mk(2), perf.DocBaselineLoad: mk(1), perf.DocProbes: probes}); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	if n := strings.Count(page, "<svg"); n != 2 {
		t.Errorf("%d charts, want 2 (client with/without, inside the pod)", n)
	}
	if n := strings.Count(page, "<polyline"); n != 5 {
		t.Errorf("%d series drawn, want 5", n)
	}
	// Nothing is loaded from anywhere: no scripts, stylesheets, images or fonts by URL.
	if m := regexp.MustCompile(`(?i)<script|<link|<img|src=|url\(|@import`).FindString(page); m != "" {
		t.Errorf("the page loads something (%q): it must open without any network", m)
	}
	if !strings.Contains(page, "r&lt;1&gt;") || strings.Contains(page, "r<1>") {
		t.Error("the run name must be escaped")
	}
}

func TestRenderWithoutProbes(t *testing.T) {
	var out bytes.Buffer
	rec := &runstore.Record{Name: "r", Namespace: "demo", Status: runstore.Failed, Message: "no endpoints"}
	if err := Render(&out, rec, map[string][]byte{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "<svg") || !strings.Contains(out.String(), "no endpoints") {
		t.Errorf("a run without results: %s", out.String())
	}
	if err := Render(&out, rec, map[string][]byte{perf.DocLoad: []byte("{")}); err == nil {
		t.Error("a damaged document must be an error")
	}
}
