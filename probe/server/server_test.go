package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/recorder"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// recorderSource serves a real recorder fed with known results: the
// server's side of the agent, without the kernel.
type recorderSource struct {
	rec   *recorder.Recorder
	now   time.Time
	ready error
}

func (s *recorderSource) Snapshot(spec window.Spec) (api.Snapshot, error) {
	return s.rec.Snapshot(s.now, spec, recorder.Context{Mesh: "istio", ProxyDetected: true})
}
func (s *recorderSource) Ready() error { return s.ready }

func newSource() *recorderSource {
	origin := time.Now().Add(-time.Hour)
	rec := recorder.New(origin)
	var results []pairing.Result
	for i := 1; i <= 100; i++ {
		d := time.Duration(i) * 10 * time.Microsecond
		results = append(results, pairing.Result{EdgeDuration: time.Millisecond + d, AppDuration: time.Millisecond,
			ProxyAdded: d, RequestPath: d / 2, ResponsePath: d - d/2})
	}
	rec.Record(origin.Add(5*time.Second), results, recorder.Totals{Counts: pairing.Counts{Edge: 100, App: 100, Paired: 100}})
	return &recorderSource{rec: rec, now: origin.Add(10 * time.Second)}
}

func get(t *testing.T, h http.Handler, target string) (*http.Response, []byte) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, target, nil))
	res := rr.Result()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func TestSnapshotEndpoint(t *testing.T) {
	h := Handler(newSource(), prometheus.NewRegistry())
	res, body := get(t, h, "/v1/snapshot?window=10s")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var s api.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.APIVersion != "kubectl-mesh.io/v1alpha1" || s.Kind != "ProbeSnapshot" || s.Window != "10s" ||
		s.Requests != 100 || s.RPS != 10 || !s.ProxyDetected || s.Status != api.StatusOK {
		t.Errorf("snapshot %+v", s)
	}
	if s.ProxyAdded.Max != 1 || s.ProxyAdded.P50 < 0.496 || s.ProxyAdded.P50 > 0.504 {
		t.Errorf("proxy added %+v", s.ProxyAdded)
	}
	// The documented field names, as the plugin reads them.
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"apiVersion", "kind", "window", "start", "end", "requests", "rps", "edge", "app",
		"proxyAdded", "requestPath", "responsePath", "cpu", "pairing", "proxyDetected", "status", "histograms"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("field %q missing", key)
		}
	}
	pa := raw["proxyAdded"].(map[string]any)
	for _, key := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := pa[key]; !ok {
			t.Errorf("proxyAdded.%s missing", key)
		}
	}
	// Default window.
	if _, body := get(t, h, "/v1/snapshot"); !strings.Contains(string(body), `"window":"1m"`) {
		t.Errorf("default window: %s", body)
	}
	// Compact by default; indented on request, the same document.
	if strings.Contains(string(body), "\n ") {
		t.Errorf("not compact: %.200s", body)
	}
	_, pretty := get(t, h, "/v1/snapshot?window=10s&pretty=true")
	if !strings.Contains(string(pretty), "\n  \"apiVersion\": ") {
		t.Errorf("pretty=true: not indented: %.200s", pretty)
	}
	var p api.Snapshot
	if err := json.Unmarshal(pretty, &p); err != nil || p.Requests != s.Requests || p.Histograms == nil || p.Histograms.ProxyAdded.Count != 100 {
		t.Errorf("pretty=true: %v %+v", err, p.Histograms)
	}
}

func TestBadWindow(t *testing.T) {
	h := Handler(newSource(), prometheus.NewRegistry())
	for _, target := range []string{"/v1/snapshot?window=1h", "/v1/snapshot?window=10s&window=1m", "/v1/snapshot?window=%ff"} {
		res, body := get(t, h, target)
		var e errorBody
		if res.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != 400 || e.Message == "" {
			t.Errorf("%s: %d %s", target, res.StatusCode, body)
		}
	}
	_, body := get(t, h, "/v1/snapshot?window=1h")
	if !strings.Contains(string(body), `use one of 10s, 1m, 10m`) {
		t.Errorf("unclear message: %s", body)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/v1/snapshot", nil))
	if rr.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rr.Code)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	src := newSource()
	h := Handler(src, prometheus.NewRegistry())
	if res, _ := get(t, h, "/healthz"); res.StatusCode != 200 {
		t.Errorf("healthz %d", res.StatusCode)
	}
	if res, _ := get(t, h, "/readyz"); res.StatusCode != 200 {
		t.Errorf("readyz %d", res.StatusCode)
	}
	src.ready = errors.New("ring buffer not read for 5s")
	if res, body := get(t, h, "/readyz"); res.StatusCode != 503 || !strings.Contains(string(body), "ring buffer") {
		t.Errorf("readyz not ready: %d %s", res.StatusCode, body)
	}
}

func TestServeShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, "127.0.0.1:0", Handler(newSource(), prometheus.NewRegistry()), func(a net.Addr) { addrc <- a })
	}()
	addr := <-addrc
	res, err := http.Get("http://" + addr.String() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// The query string comes from the network: whatever it holds, the handler
// answers 200 with a snapshot or 400 with a message, never panics.
func FuzzSnapshotQuery(f *testing.F) {
	src := newSource()
	h := Handler(src, prometheus.NewRegistry())
	for _, q := range []string{"window=10s", "window=1h", "window=10s&window=1m", "%zz", "window=%00", ""} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/snapshot", nil)
		req.URL.RawQuery = q
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		if rr.Code != 200 && rr.Code != 400 {
			t.Fatalf("%q: status %d", q, rr.Code)
		}
		if !json.Valid(rr.Body.Bytes()) {
			t.Fatalf("%q: body is not JSON: %s", q, rr.Body.Bytes())
		}
	})
}
