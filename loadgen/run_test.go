package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/echo"
)

// The target in these tests is a real HTTP server on loopback with a known
// service time: every latency the generator measures must be at least that.
const serviceTime = 2 * time.Millisecond

var serviceTimeMs = float64(serviceTime) / float64(time.Millisecond)

func newEcho(t *testing.T, st time.Duration) (*echo.Server, *httptest.Server) {
	t.Helper()
	es := &echo.Server{ServiceTime: st}
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	return es, srv
}

// checkConsistent checks what must hold for every result, whatever the
// machine's speed.
// (Test binaries carry no module versions, so the generator's version is
// checked on the built binary, in cmd/mesh-loadgen.)
func checkConsistent(t *testing.T, r *Result) {
	t.Helper()
	if r.Kind != KindResult || !strings.HasPrefix(r.Generator, "fortio ") {
		t.Errorf("kind %q generator %q", r.Kind, r.Generator)
	}
	d, err := time.ParseDuration(r.ActualDuration)
	if err != nil {
		t.Fatalf("actualDuration %q: %v", r.ActualDuration, err)
	}
	if got := r.EndTime.Sub(r.StartTime); got != d {
		t.Errorf("end - start = %s, actualDuration %s", got, d)
	}
	if r.Requests > 0 {
		if want := float64(r.Requests) / d.Seconds(); math.Abs(r.ActualQPS-want) > 1e-9*want {
			t.Errorf("actualQps %g, but %d requests in %s is %g", r.ActualQPS, r.Requests, d, want)
		}
	}
	var inBuckets, inCodes int64
	for i, b := range r.HistogramMs {
		inBuckets += b.Count
		if b.EndMs < b.StartMs || (i > 0 && b.StartMs < r.HistogramMs[i-1].EndMs) {
			t.Errorf("bucket %d [%g, %g] out of order", i, b.StartMs, b.EndMs)
		}
	}
	for _, n := range r.Codes {
		inCodes += n
	}
	if inBuckets != r.Requests || inCodes != r.Requests {
		t.Errorf("requests %d, histogram holds %d, codes %d", r.Requests, inBuckets, inCodes)
	}
	if r.Requests == 0 {
		return
	}
	l := r.LatencyMs
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("percentiles out of order: %+v", l)
	}
	if l.Avg < l.Min || l.Avg > l.Max {
		t.Errorf("avg %g outside [%g, %g]", l.Avg, l.Min, l.Max)
	}
	if first, last := r.HistogramMs[0], r.HistogramMs[len(r.HistogramMs)-1]; first.StartMs != l.Min || last.EndMs != l.Max || last.Percent != 100 {
		t.Errorf("histogram spans [%g, %g] to %g%%, latencies [%g, %g]", first.StartMs, last.EndMs, last.Percent, l.Min, l.Max)
	}
}

func TestPacedHTTP(t *testing.T) {
	es, srv := newEcho(t, serviceTime)
	c := Config{URL: srv.URL + "/", Protocol: HTTP, QPS: 100, Connections: 4, Duration: time.Second}
	r, err := Run(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if r.Partial {
		t.Errorf("partial: %s", r.PartialReason)
	}
	// fortio plans QPS*Duration requests; with no catch-up it skips those that
	// come due while the connection is busy, so never more.
	planned := int64(c.QPS * c.Duration.Seconds())
	if r.Requests < 1 || r.Requests > planned {
		t.Errorf("requests %d, want 1..%d", r.Requests, planned)
	}
	// The server saw every measured request, plus fortio's one warm-up
	// request per connection.
	if got, want := es.Requests(), r.Requests+int64(r.Connections); got != want {
		t.Errorf("server answered %d requests, want %d measured + %d warm-up", got, r.Requests, r.Connections)
	}
	// Pacing waits for absolute times, so the achieved rate can exceed the
	// requested one by at most the jitter on the last wait.
	if r.ActualQPS <= 0 || r.ActualQPS > c.QPS*1.1 {
		t.Errorf("actual qps %g for a requested %g", r.ActualQPS, c.QPS)
	}
	if r.Codes["200"] != r.Requests || r.Errors != 0 {
		t.Errorf("codes %v errors %d", r.Codes, r.Errors)
	}
	if r.LatencyMs.Min < serviceTimeMs {
		t.Errorf("min latency %g ms is below the server's %g ms service time", r.LatencyMs.Min, serviceTimeMs)
	}
	if r.Connections != 4 || r.Sockets != 4 {
		t.Errorf("connections %d sockets %d: keep-alive should use one socket per connection", r.Connections, r.Sockets)
	}
	if !r.Uniform || !r.Jitter || !r.NoCatchUp || !r.KeepAlive || r.RequestedQPS != 100 || r.RequestedDuration != "1s" {
		t.Errorf("options not echoed: %+v", r)
	}
}

func TestMaxQPSExactCount(t *testing.T) {
	es, srv := newEcho(t, serviceTime)
	c := Config{URL: srv.URL + "/x", Protocol: HTTP, QPS: 0, Connections: 3, Requests: 300}
	r, err := Run(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	// In count mode fortio sends no warm-up request.
	if r.Requests != 300 || es.Requests() != 300 || r.Codes["200"] != 300 {
		t.Errorf("requests %d, server %d, codes %v; want 300", r.Requests, es.Requests(), r.Codes)
	}
	if r.RequestedQPS != 0 || r.RequestedRequests != 300 || r.RequestedDuration != "" || r.ActualQPS <= 0 {
		t.Errorf("requested qps %g requests %d duration %q actual %g", r.RequestedQPS, r.RequestedRequests, r.RequestedDuration, r.ActualQPS)
	}
	if r.LatencyMs.Min < serviceTimeMs {
		t.Errorf("min latency %g ms < service time", r.LatencyMs.Min)
	}
	// Fewer requests than connections: still exactly that many.
	r, err = Run(context.Background(), Config{URL: srv.URL + "/x", Protocol: HTTP, Connections: 8, Requests: 3}, nil)
	if err != nil || r.Requests != 3 || r.Connections != 3 {
		t.Errorf("3 requests on 8 connections: %v, %d requests on %d connections", err, r.Requests, r.Connections)
	}
}

func TestHTTP2IsH2C(t *testing.T) {
	var mu sync.Mutex
	protos := map[string]int{}
	es := &echo.Server{ServiceTime: serviceTime}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
		es.ServeHTTP(w, r)
	}))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	defer srv.Close()

	r, err := Run(context.Background(), Config{URL: srv.URL + "/", Protocol: HTTP2, Connections: 2, Requests: 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	mu.Lock()
	defer mu.Unlock()
	if protos["HTTP/2.0"] != 40 || len(protos) != 1 {
		t.Errorf("server saw %v, want 40 HTTP/2.0 requests", protos)
	}
	if r.Sockets != 2 || r.LatencyMs.Min < serviceTimeMs {
		t.Errorf("sockets %d min %g", r.Sockets, r.LatencyMs.Min)
	}
}

func TestPayloadIsRequestBody(t *testing.T) {
	var bad atomic.Int64
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.Add(1)
		if r.Method != http.MethodPost || len(b) != 1000 || r.Header.Get("Content-Type") != "application/octet-stream" {
			bad.Add(1)
		}
	}))
	defer srv.Close()
	r, err := Run(context.Background(), Config{URL: srv.URL + "/", Protocol: HTTP, Connections: 1, Requests: 20, PayloadSize: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 20 || n.Load() != 20 || bad.Load() != 0 || r.PayloadSize != 1000 {
		t.Errorf("requests %d, server got %d, %d not a 1000-byte POST", r.Requests, n.Load(), bad.Load())
	}
	if p := makePayload(1000); strings.Trim(string(p), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		t.Errorf("payload is not letters and digits")
	}
}

func TestCancelGivesPartialResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	es := &echo.Server{ServiceTime: serviceTime}
	var seen atomic.Int64
	// The server itself stops the run, after a known number of requests:
	// nothing here depends on how fast the machine is.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 40 {
			cancel()
		}
		es.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := Config{URL: srv.URL + "/", Protocol: HTTP, QPS: 200, Connections: 2, Duration: 10 * time.Minute}
	r, err := Run(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if !r.Partial || !strings.Contains(r.PartialReason, "context canceled") {
		t.Errorf("partial %v (%q), want true", r.Partial, r.PartialReason)
	}
	// Requests in flight when the run stopped were finished and counted; none
	// was sent unseen.
	if got, want := es.Requests(), r.Requests+int64(r.Connections); got != want || r.Requests < 40-int64(r.Connections) {
		t.Errorf("server %d requests, result %d (+%d warm-up)", got, r.Requests, r.Connections)
	}
	if r.LatencyMs.Min < serviceTimeMs {
		t.Errorf("min latency %g ms < service time", r.LatencyMs.Min)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	es, srv := newEcho(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err := Run(ctx, Config{URL: srv.URL, Protocol: HTTP, QPS: 10, Connections: 1, Duration: time.Minute, Warmup: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if !r.Partial || r.Requests != 0 || r.WarmupRequests != 0 || es.Requests() != 0 {
		t.Errorf("partial %v requests %d warmup %d server %d", r.Partial, r.Requests, r.WarmupRequests, es.Requests())
	}
}

func TestProgressAndWarmup(t *testing.T) {
	es, srv := newEcho(t, serviceTime)
	var mu sync.Mutex
	var got []Progress
	c := Config{URL: srv.URL + "/", Protocol: HTTP, QPS: 50, Connections: 2, Duration: time.Second, Warmup: 400 * time.Millisecond, ProgressInterval: 100 * time.Millisecond}
	r, err := Run(context.Background(), c, func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	mu.Lock()
	defer mu.Unlock()
	finals := map[Phase]Progress{}
	var ticks int
	var last Progress
	for i, p := range got {
		if p.Kind != KindProgress {
			t.Errorf("progress %d kind %q", i, p.Kind)
		}
		if _, done := finals[p.Phase]; done {
			t.Errorf("progress %d after the final one of phase %s", i, p.Phase)
		}
		if i > 0 && p.Phase == last.Phase && p.Requests < last.Requests {
			t.Errorf("requests went down: %d then %d", last.Requests, p.Requests)
		}
		if p.Final {
			finals[p.Phase] = p
		} else if p.Phase == PhaseLoad {
			ticks++
		}
		last = p
	}
	if len(got) == 0 || got[0].Phase != PhaseWarmup || last.Phase != PhaseLoad || !last.Final {
		t.Fatalf("progress %+v: want warmup first, the load phase's final report last", got)
	}
	// The load phase is paced to last a second: a 100ms ticker reports during it.
	if ticks == 0 {
		t.Errorf("no progress during the load phase")
	}
	if finals[PhaseLoad].Requests != r.Requests || finals[PhaseWarmup].Requests != r.WarmupRequests || r.WarmupRequests == 0 {
		t.Errorf("final progress %+v, result requests %d warmup %d", finals, r.Requests, r.WarmupRequests)
	}
	// Each phase makes its own connections, with one fortio warm-up request each.
	if want := r.WarmupRequests + r.Requests + 2*int64(c.Connections); es.Requests() != want {
		t.Errorf("server answered %d, want %d", es.Requests(), want)
	}
	if r.Warmup != "400ms" {
		t.Errorf("warmup %q", r.Warmup)
	}
}

func TestErrorsAreCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	// Count mode skips fortio's warm-up request, which would refuse a 503.
	r, err := Run(context.Background(), Config{URL: srv.URL + "/?fail=1", Protocol: HTTP, Connections: 2, Requests: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if r.Errors != 10 || r.Codes["503"] != 10 {
		t.Errorf("errors %d codes %v, want 10 503s", r.Errors, r.Codes)
	}
}

func TestUnreachableTargetIsAnError(t *testing.T) {
	addr := freeLoopbackAddr(t)
	_, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Protocol: HTTP, QPS: 10, Connections: 1, Duration: time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("err = %v, want one saying the target did not answer", err)
	}
}

// freeLoopbackAddr returns a loopback address that nothing listens on.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A target that starts listening after the run starts, the way a Service's
// new endpoint does once kube-proxy has programmed it, is waited for.
func TestWaitsForTargetToListen(t *testing.T) {
	addr := freeLoopbackAddr(t)
	es := &echo.Server{}
	srv := httptest.NewUnstartedServer(es)
	t.Cleanup(srv.Close)
	started := make(chan struct{})
	go func() {
		defer close(started)
		time.Sleep(700 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen on %s again: %v", addr, err)
			return
		}
		srv.Listener = l
		srv.Start()
	}()
	r, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Protocol: HTTP, QPS: 50, Connections: 2,
		Duration: 300 * time.Millisecond, ReadyTimeout: time.Minute}, nil)
	<-started
	if err != nil {
		t.Fatalf("run against a target that came up late: %v", err)
	}
	checkConsistent(t, r)
	if r.Requests == 0 || r.Errors != 0 {
		t.Errorf("requests %d errors %d, want some and none", r.Requests, r.Errors)
	}
}

// The wait is bounded: a target that never listens still fails, with
// fortio's error, once ReadyTimeout has passed.
func TestWaitForTargetGivesUp(t *testing.T) {
	addr := freeLoopbackAddr(t)
	start := time.Now()
	_, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Protocol: HTTP, QPS: 10, Connections: 1,
		Duration: time.Second, ReadyTimeout: 600 * time.Millisecond}, nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("err = %v, want one saying the target did not answer", err)
	}
	if waited := time.Since(start); waited < 600*time.Millisecond {
		t.Errorf("gave up after %s, before the ready timeout", waited)
	}
}

// Behind a Service with a stale endpoint, some connections fail among
// accepted ones: the wait wants readyStreak accepted in a row.
func TestWaitAcceptingWantsAStreak(t *testing.T) {
	// Accepted, accepted, refused, then accepted from there on.
	var dials int
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials++
		if dials == 3 {
			return nil, errors.New("connection refused")
		}
		a, b := net.Pipe()
		b.Close()
		return a, nil
	}
	var first error
	failed, ok := waitAccepting(context.Background(), "echo:80", dial, func(err error) { first = err })
	if !ok || failed != 1 || first == nil {
		t.Errorf("ok %v failed %d first %v, want true, 1 and the refusal", ok, failed, first)
	}
	if want := 3 + readyStreak; dials != want {
		t.Errorf("%d dials, want %d: two before the refusal and a whole streak after it", dials, want)
	}

	// Never accepted: the wait ends with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	failed, ok = waitAccepting(ctx, "echo:80", func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("i/o timeout")
	}, func(error) {})
	if ok || failed == 0 {
		t.Errorf("ok %v failed %d against a target that never accepts", ok, failed)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "http://echo:8080/", Protocol: HTTP, QPS: 10, Connections: 1, Duration: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "--url is required"},
		{"scheme", func(c *Config) { c.URL = "ftp://x/" }, "scheme"},
		{"grpc scheme for http", func(c *Config) { c.URL = "grpc://x:1" }, "scheme"},
		{"no host", func(c *Config) { c.URL = "http:///x" }, "no host"},
		{"protocol", func(c *Config) { c.Protocol = "http3" }, "--protocol"},
		{"negative qps", func(c *Config) { c.QPS = -1 }, "--qps"},
		{"connections", func(c *Config) { c.Connections = 0 }, "--connections"},
		{"duration", func(c *Config) { c.Duration = 0 }, "--duration"},
		{"warmup", func(c *Config) { c.Warmup = -time.Second }, "--warmup"},
		{"payload", func(c *Config) { c.PayloadSize = MaxPayloadSize + 1 }, "--payload-size"},
		{"grpc payload", func(c *Config) { c.Protocol, c.URL, c.PayloadSize = GRPC, "grpc://x:1", 10 }, "--grpc-ping"},
		{"grpc flag on http", func(c *Config) { c.GRPCPing = true }, "--protocol grpc only"},
		{"grpc path", func(c *Config) { c.Protocol, c.URL = GRPC, "grpc://x:1/svc" }, "host:port only"},
	} {
		c := ok
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	c := ok
	c.Duration, c.Requests = 0, 5 // a count replaces the duration
	if err := c.Validate(); err != nil {
		t.Errorf("count mode: %v", err)
	}
	if _, err := Run(context.Background(), Config{}, nil); err == nil {
		t.Errorf("Run accepted an empty config")
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("x"), ExitError},
		{usageError{errors.New("x")}, ExitUsage},
		{fmt.Errorf("stopped: %w", ErrPartial), ExitPartial},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
