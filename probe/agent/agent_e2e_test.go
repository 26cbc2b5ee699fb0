package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/cgroups"
	"github.com/kubectl-mesh/kubectl-mesh/probe/config"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
)

func TestMain(m *testing.M) {
	fixture.RunChildIfRequested()
	runLayoutChildIfRequested()
	os.Exit(m.Run())
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probe loads eBPF programs (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) and the test builds network namespaces")
	}
}

// The service port, on eth0 and, as in a sidecar mesh, on lo where the
// proxy forwards to the application.
const servicePort = 8080

var testConfig = config.Config{
	Mesh:              config.MeshIstio,
	ProxyContainer:    "istio-proxy",
	ProxyInboundPort:  15006,
	ProxyOutboundPort: 15001,
	AppPorts:          []uint16{servicePort},
}

// podUnderTest is the fixture topology with its application and proxy.
type podUnderTest struct {
	pod   *fixture.Pod
	app   *fixture.App
	proxy *fixture.Proxy
	// listen is where the proxy listens: the service port itself, or the
	// inbound port behind an iptables REDIRECT.
	listen string
}

// newTestPod builds the fixture's client and pod namespaces, removed when
// the test ends.
func newTestPod(t *testing.T) *fixture.Pod {
	t.Helper()
	pod, err := fixture.NewPod()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pod.Close(); err != nil {
			t.Error(err)
		}
	})
	return pod
}

func newPodUnderTest(t *testing.T, redirect bool) *podUnderTest {
	t.Helper()
	var err error
	pod := newTestPod(t)
	p := &podUnderTest{pod: pod, listen: net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort))}
	if redirect {
		if err := pod.Redirect(servicePort, 15006); err != nil {
			t.Skipf("iptables REDIRECT unavailable: %v", err)
		}
		p.listen = net.JoinHostPort(fixture.PodAddr, "15006")
	}
	// The application on the same port number, on lo: what the proxy of
	// a sidecar mesh connects to.
	if p.app, err = fixture.StartApp(pod.Pod, net.JoinHostPort("127.0.0.1", strconv.Itoa(servicePort)), 300*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.app.Close() })
	p.startProxy(t)
	return p
}

func (p *podUnderTest) startProxy(t *testing.T) {
	t.Helper()
	var err error
	p.proxy, err = fixture.StartProxy(p.pod.Pod, p.listen, net.JoinHostPort("127.0.0.1", strconv.Itoa(servicePort)), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	proxy := p.proxy
	t.Cleanup(func() { _ = proxy.Close() })
}

// running is an agent with its HTTP server on loopback.
type running struct {
	agent *Agent
	base  string
}

func startAgent(t *testing.T, pod *fixture.Pod, opts Options) *running {
	t.Helper()
	follow := opts.Config.Follow // the one field a test may choose
	opts.Config = testConfig
	opts.Config.Follow = follow
	opts.NetNS = pod.Pod.Path
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- server.Serve(ctx, "127.0.0.1:0", server.Handler(a, a.Metrics().Registry), func(ad net.Addr) { addrc <- ad })
	}()
	var base string
	select {
	case ad := <-addrc:
		base = "http://" + ad.String()
	case err := <-errc:
		t.Fatal(err)
	}
	r := &running{agent: a, base: base}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (r *running) snapshot(t *testing.T, window string) api.Snapshot {
	t.Helper()
	res, err := http.Get(r.base + "/v1/snapshot?window=" + window)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("snapshot: %s", res.Status)
	}
	var s api.Snapshot
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// settled waits until the 10s window accounts for want requests: each one
// measured, ambiguous or unmatched. The wait is for the probe's pipeline
// (idle scan, pairing horizon, the window's slot closing), not a
// performance threshold; the generous deadline only bounds a failure.
func (r *running) settled(t *testing.T, want int) api.Snapshot {
	t.Helper()
	var s api.Snapshot
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		s = r.snapshot(t, "10s")
		accounted := s.Measured + s.Pairing.AmbiguousEdge + s.Pairing.UnmatchedEdge
		if s.Requests >= uint64(want) && accounted >= uint64(want) {
			return s
		}
	}
	t.Fatalf("window never accounted for %d requests: %+v", want, s)
	return s
}

func residenceTotals(rs []fixture.Residence) (total, req, resp []time.Duration) {
	for _, r := range rs {
		total = append(total, r.Total())
		req = append(req, r.RequestPath)
		resp = append(resp, r.ResponsePath)
	}
	return
}

func ms(d time.Duration) float64 { return api.Millis(d) }

// within compares a snapshot quantile with the fixture's: tol, plus the
// histogram's own documented error at that value (0.39%, 20 us at 5 ms).
func within(got float64, want time.Duration, tol time.Duration) bool {
	d := got - ms(want)
	limit := ms(tol) + ms(want)*histogram.RelativeError
	return d <= limit && d >= -limit
}

// The probe, attached to a pod's eth0 and lo, served over HTTP, reports
// the proxy-added latency the proxy itself recorded (its residence
// records, the ground truth), for delays 0, 200 us, 1 ms and 5 ms at 100
// and 2000 rps, both with the proxy on the service port and behind an
// Istio-style REDIRECT:
//   - at 100 rps over two keep-alive connections, where requests can be
//     paired one by one: p50 within 50 us (plus the histogram's 0.39%);
//     p99 is reported beside the proxy's in the table, see below;
//   - at 2000 rps over sixteen connections, overlapping requests leave
//     many pairs ambiguous and only their total is known: the mean within
//     50 us;
//   - the probe's figure grows with the delay as the proxy's own does,
//     within 50 us (the proxy's residence grows by the configured delay
//     plus its timer's wake-up latency, which is the proxy's and which the
//     probe must see too), plus, for a p50, the histogram's 0.39% of each
//     of the two figures the growth is the difference of (a CI run: growth
//     5.074 against 5.022 ms at 5 ms, the p50s 5.554 / 5.483 ms and 0.480 /
//     0.462 ms each within their own allowance).
//
// It counts every request the proxy handled and names the proxy's cgroup.
// With -v it ends with the accuracy table that docs/benchmarks.md keeps
// (make bench-probe).
func TestEndToEndProxyAddedLatency(t *testing.T) {
	requireRoot(t)
	type scenario struct {
		delay    time.Duration
		qps      float64
		conns    int
		meanOnly bool
	}
	var scenarios []scenario
	for _, load := range []scenario{{qps: 100, conns: 2}, {qps: 2000, conns: 16, meanOnly: true}} {
		for _, d := range []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 5 * time.Millisecond} {
			load.delay = d
			scenarios = append(scenarios, load)
		}
	}
	if testing.Short() {
		scenarios = scenarios[:2]
	}
	self, err := cgroups.FindSelf()
	if err != nil {
		t.Skip(err)
	}
	// One row per scenario and mode: the figure compared (p50, or the mean
	// where only the mean is known) by the probe and by the proxy, and
	// its growth over the same load's zero-delay scenario.
	type row struct {
		mode                   string
		sc                     scenario
		rps                    float64
		requests               int
		probe, truth           float64 // ms
		probeP99, truthP99     float64 // ms, paired scenarios only
		probeGrowth, truthGrow float64 // ms
	}
	var rows []row
	for _, mode := range []string{"listener", "redirect"} {
		t.Run(mode, func(t *testing.T) {
			p := newPodUnderTest(t, mode == "redirect")
			var zeroProbe, zeroTruth float64
			for _, sc := range scenarios {
				name := fmt.Sprintf("delay=%v/qps=%v/conns=%d", sc.delay, sc.qps, sc.conns)
				t.Run(name, func(t *testing.T) {
					// Half the delay on the way in, half on the way out.
					p.proxy.SetDelays(sc.delay/2, sc.delay-sc.delay/2)
					r := startAgent(t, p.pod, Options{})
					if _, err := p.proxy.Take(); err != nil {
						t.Fatal(err)
					}
					load, err := fixture.RunLoad(p.pod.Client, fixture.LoadOptions{
						URL: "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/",
						QPS: sc.qps, Duration: 3 * time.Second, Connections: sc.conns,
					})
					if err != nil {
						t.Fatal(err)
					}
					truth, err := p.proxy.Take()
					if err != nil {
						t.Fatalf("proxy fixture: %v", err)
					}
					if load.Errors != 0 || len(truth) < int(load.Requests) {
						t.Fatalf("load %+v, proxy handled %d", load, len(truth))
					}
					s := r.settled(t, len(truth))
					total, req, resp := residenceTotals(truth)
					var sum time.Duration
					for _, d := range total {
						sum += d
					}
					mean := sum / time.Duration(len(total))
					t.Logf("%d requests (%.0f rps; client p50 %v p99 %v); probe: measured %d ambiguous %d (settled %d) unmatched %d",
						len(truth), load.ActualQPS, load.P50, load.P99, s.Measured, s.Pairing.AmbiguousEdge,
						s.Pairing.AmbiguousSettled, s.Pairing.UnmatchedEdge)
					t.Logf("proxy added p50: probe %.3fms fixture %.3fms | p99: probe %.3fms fixture %.3fms | mean: probe %.3fms (%d) fixture %.3fms",
						s.ProxyAdded.P50, ms(fixture.Median(total)), s.ProxyAdded.P99, ms(fixture.Quantile(total, 0.99)),
						s.ProxyAddedMean.Mean, s.ProxyAddedMean.Count, ms(mean))
					t.Logf("request path p50: probe %.3fms fixture %.3fms | response path p50: probe %.3fms fixture %.3fms",
						s.RequestPath.P50, ms(fixture.Median(req)), s.ResponsePath.P50, ms(fixture.Median(resp)))

					if s.Requests != uint64(len(truth)) {
						t.Errorf("probe counted %d requests, the proxy handled %d", s.Requests, len(truth))
					}
					if got := s.Measured + s.Pairing.AmbiguousEdge + s.Pairing.UnmatchedEdge; got != s.Requests {
						t.Errorf("%d requests, %d accounted for", s.Requests, got)
					}
					if !s.ProxyDetected {
						t.Errorf("proxy not detected, status %q", s.Status)
					}
					rw := row{mode: mode, sc: sc, rps: load.ActualQPS, requests: len(truth)}
					if sc.meanOnly {
						rw.probe, rw.truth = s.ProxyAddedMean.Mean, ms(mean)
						if !within(s.ProxyAddedMean.Mean, mean, 50*time.Microsecond) {
							t.Errorf("proxy added mean: probe %.3fms, fixture %.3fms: more than 50us apart",
								s.ProxyAddedMean.Mean, ms(mean))
						}
					} else {
						rw.probe, rw.truth = s.ProxyAdded.P50, ms(fixture.Median(total))
						rw.probeP99, rw.truthP99 = s.ProxyAdded.P99, ms(fixture.Quantile(total, 0.99))
						if !within(s.ProxyAdded.P50, fixture.Median(total), 50*time.Microsecond) {
							t.Errorf("proxy added p50: probe %.3fms, fixture %.3fms: more than 50us (+0.39%%) apart",
								s.ProxyAdded.P50, ms(fixture.Median(total)))
						}
						// p99 is in the table, not asserted: over 300 requests it is the
						// third largest, and under CPU contention the kernel's own queuing
						// between eth0 and the proxy's socket (which the probe counts as
						// time on the mesh's path and the proxy's records cannot see) moves
						// single requests by a millisecond (7.356 vs 6.174 ms once, with a
						// Kubernetes build beside the test; 15 of 16 rows within 10%).
					}
					if sc.delay == 0 {
						zeroProbe, zeroTruth = rw.probe, rw.truth
					} else {
						rw.probeGrowth, rw.truthGrow = rw.probe-zeroProbe, rw.truth-zeroTruth
						// A p50 is read from the probe's histogram, within its
						// relative error; a mean is exact.
						limit := 0.050
						if !sc.meanOnly {
							limit += (rw.probe + zeroProbe) * histogram.RelativeError
						}
						if d := math.Abs(rw.probeGrowth - rw.truthGrow); d > limit {
							t.Errorf("over the zero-delay run the probe's figure grew %.3fms, the proxy's own %.3fms (configured %v): more than %.0fus apart",
								rw.probeGrowth, rw.truthGrow, sc.delay, limit*1000)
						}
					}
					rows = append(rows, rw)
					// The proxy's cgroup is the one whose socket answered
					// on the service port: this test process's own.
					found := false
					for _, c := range s.CPU {
						if c.Role == "proxy" {
							found = true
							if c.CgroupID != self.ID || c.Name != "istio-proxy" {
								t.Errorf("proxy cgroup %+v, want id %d named istio-proxy", c, self.ID)
							}
						}
					}
					if !found {
						t.Errorf("no cgroup identified as the proxy: %+v", s.CPU)
					}
				})
			}
		})
	}
	var b strings.Builder
	b.WriteString("accuracy, ms (probe / proxy's own records):\n")
	b.WriteString("| mode | delay | rate (achieved), connections | requests | figure | probe / proxy | p99 probe / proxy | growth over delay 0, probe / proxy |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		figure, p99 := "p50", fmt.Sprintf("%.3f / %.3f", r.probeP99, r.truthP99)
		if r.sc.meanOnly {
			figure, p99 = "mean", "-"
		}
		growth := "-"
		if r.sc.delay > 0 {
			growth = fmt.Sprintf("%.3f / %.3f", r.probeGrowth, r.truthGrow)
		}
		fmt.Fprintf(&b, "| %s | %v | %.0f (%.0f), %d | %d | %s | %.3f / %.3f | %s | %s |\n",
			r.mode, r.sc.delay, r.sc.qps, r.rps, r.sc.conns, r.requests, figure, r.probe, r.truth, p99, growth)
	}
	t.Log("\n" + b.String())
}

// A proxy that restarts (its connections die, a new process listens
// again) changes nothing for the probe: new connections are tracked from
// their SYN and every request of both lives is counted and measured.
func TestEndToEndProxyRestart(t *testing.T) {
	requireRoot(t)
	p := newPodUnderTest(t, true)
	p.proxy.SetDelays(100*time.Microsecond, 100*time.Microsecond)
	r := startAgent(t, p.pod, Options{})
	url := "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/"
	var truth []fixture.Residence
	for life := 0; life < 2; life++ {
		if _, err := fixture.RunLoad(p.pod.Client, fixture.LoadOptions{URL: url, QPS: 200, Duration: 2 * time.Second, Connections: 2}); err != nil {
			t.Fatal(err)
		}
		rs, err := p.proxy.Take()
		if err != nil {
			t.Fatal(err)
		}
		truth = append(truth, rs...)
		if life == 0 {
			if err := p.proxy.Close(); err != nil {
				t.Fatal(err)
			}
			p.startProxy(t)
			p.proxy.SetDelays(100*time.Microsecond, 100*time.Microsecond)
		}
	}
	s := r.settled(t, len(truth))
	total, _, _ := residenceTotals(truth)
	t.Logf("%d requests over two proxy lives: probe p50 %.3fms, fixture %.3fms", len(truth), s.ProxyAdded.P50, ms(fixture.Median(total)))
	if s.Requests != uint64(len(truth)) || !within(s.ProxyAdded.P50, fixture.Median(total), 50*time.Microsecond) {
		t.Errorf("after a proxy restart: %d requests (want %d), p50 %.3fms (fixture %.3fms)",
			s.Requests, len(truth), s.ProxyAdded.P50, ms(fixture.Median(total)))
	}
	if err := r.agent.Ready(); err != nil {
		t.Errorf("not ready after the restart: %v", err)
	}
}

// A quiet pod's probe sleeps longer between scans (quietInterval). Requests
// that arrive one at a time after quiet spells are still each measured:
// their exchanges reach the pairing within its horizon.
func TestEndToEndAfterQuietSpells(t *testing.T) {
	requireRoot(t)
	p := newPodUnderTest(t, true)
	p.proxy.SetDelays(200*time.Microsecond, 0)
	r := startAgent(t, p.pod, Options{})
	url := "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/"
	time.Sleep(time.Second) // the loop goes quiet
	if r.agent.quiet.Load() == 0 {
		t.Fatal("no quiet scan in a second without traffic")
	}
	// 2 rps: each request comes after the loop went quiet again (two
	// scans without news, then quietInterval).
	if _, err := fixture.RunLoad(p.pod.Client, fixture.LoadOptions{URL: url, QPS: 2, Duration: 4 * time.Second, Connections: 1}); err != nil {
		t.Fatal(err)
	}
	truth, err := p.proxy.Take()
	if err != nil {
		t.Fatal(err)
	}
	quietBefore := r.agent.quiet.Load()
	s := r.settled(t, len(truth))
	total, _, _ := residenceTotals(truth)
	t.Logf("%d requests at 2 rps, %d quiet scans: probe p50 %.3fms, fixture %.3fms", len(truth), quietBefore, s.ProxyAdded.P50, ms(fixture.Median(total)))
	if s.Requests != uint64(len(truth)) || s.Measured != uint64(len(truth)) {
		t.Errorf("after quiet spells: %d requests, %d measured (want %d each); pairing %+v",
			s.Requests, s.Measured, len(truth), s.Pairing)
	}
	// What this test guards is that each request is measured as itself
	// (a request paired with another's leg would be off by hundreds of
	// milliseconds at 2 rps), not the 50 us accuracy the tests at 100 and
	// 2000 rps hold. The fixture stamps at its sockets and the probe at
	// eth0 and lo, so the probe also counts the kernel's receive path in
	// between (fixture.Residence), ~7 us at 100 rps; at 2 rps every packet
	// walks it after half a second idle, and the probe is 20-50 us above
	// the fixture here on an idle machine, 67 us in one CI run beside
	// other packages' tests. So the probe may be up to 150 us above the
	// fixture, and 50 us below.
	median := fixture.Median(total)
	if d := s.ProxyAdded.P50 - ms(median); d > ms(150*time.Microsecond)+ms(median)*histogram.RelativeError ||
		d < -ms(50*time.Microsecond)-ms(median)*histogram.RelativeError {
		t.Errorf("after quiet spells: p50 %.3fms, fixture %.3fms: not the same requests' time", s.ProxyAdded.P50, ms(median))
	}
}

// With MESH_PROBE_FOLLOW=kernel the programs follow the connections in the
// kernel (exchange.bpf.c) instead of the process: the same measurement,
// held to the accuracy tests' 50 us at 100 rps through a REDIRECT.
func TestEndToEndKernelFollow(t *testing.T) {
	requireRoot(t)
	p := newPodUnderTest(t, true)
	p.proxy.SetDelays(500*time.Microsecond, 500*time.Microsecond)
	r := startAgent(t, p.pod, Options{Config: config.Config{Follow: config.FollowKernel}})
	if _, ok := r.agent.src.(*kernelSource); !ok {
		t.Fatalf("connections followed by the %s, want the kernel", sourceName(r.agent.src))
	}
	if _, err := p.proxy.Take(); err != nil {
		t.Fatal(err)
	}
	url := "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/"
	if _, err := fixture.RunLoad(p.pod.Client, fixture.LoadOptions{URL: url, QPS: 100, Duration: 3 * time.Second, Connections: 2}); err != nil {
		t.Fatal(err)
	}
	truth, err := p.proxy.Take()
	if err != nil {
		t.Fatal(err)
	}
	s := r.settled(t, len(truth))
	total, _, _ := residenceTotals(truth)
	t.Logf("%d requests: probe p50 %.3fms, fixture %.3fms", len(truth), s.ProxyAdded.P50, ms(fixture.Median(total)))
	if s.Requests != uint64(len(truth)) || s.Measured+s.Pairing.AmbiguousEdge+s.Pairing.UnmatchedEdge != s.Requests {
		t.Errorf("%d requests, %d measured; the proxy handled %d; pairing %+v", s.Requests, s.Measured, len(truth), s.Pairing)
	}
	if !within(s.ProxyAdded.P50, fixture.Median(total), 50*time.Microsecond) {
		t.Errorf("proxy added p50: probe %.3fms, fixture %.3fms: more than 50us (+0.39%%) apart", s.ProxyAdded.P50, ms(fixture.Median(total)))
	}
}

// Without a proxy (the application answers on eth0 itself) the probe
// reports every request with zero added time and "no proxy detected".
func TestEndToEndNoProxy(t *testing.T) {
	requireRoot(t)
	pod := fixture.NewTestPod(t)
	app, err := fixture.StartApp(pod.Pod, net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)), 200*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	r := startAgent(t, pod, Options{})
	load, err := fixture.RunLoad(pod.Client, fixture.LoadOptions{
		URL: "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/", QPS: 200, Duration: 2 * time.Second, Connections: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := int(load.Requests) + 2 // fortio's warm-up request per connection
	s := r.settled(t, want)
	if s.ProxyDetected || s.Status != api.StatusNoProxy || s.Requests != uint64(want) || s.ProxyAdded.Max != 0 ||
		s.Measured != uint64(want) {
		t.Errorf("without proxy: %+v", s)
	}
	for _, c := range s.CPU {
		if c.Role == "proxy" {
			t.Errorf("a proxy role without a proxy: %+v", c)
		}
	}
	// The other endpoints, over HTTP.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/v1/snapshot?window=5m": 400} {
		res, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("%s: %d, want %d: %s", path, res.StatusCode, want, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), fmt.Sprintf("mesh_probe_requests_total %d", s.Requests)) {
			t.Errorf("/metrics lacks mesh_probe_requests_total %d", s.Requests)
		}
	}
}

// CPU per cgroup agrees with the cgroup's own accounting (cpu.stat) within
// 10%: a child burning a known amount of CPU in a container cgroup of a
// test pod cgroup.
func TestEndToEndCPUPerContainer(t *testing.T) {
	requireRoot(t)
	self, err := cgroups.FindSelf()
	if err != nil {
		t.Skip(err)
	}
	if !self.Visible() {
		t.Skipf("no cgroup2 mount shows this process's cgroup %s: cannot make test cgroups", self.Path)
	}
	podDir := filepath.Join(self.Mount, fmt.Sprintf("kmesh-probe-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	burner := filepath.Join(podDir, "cri-containerd-"+strings.Repeat("ab", 32)+".scope")
	if err := os.MkdirAll(burner, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(burner)
		_ = os.Remove(podDir)
	})
	burnerID, err := cgroups.ID(burner)
	if err != nil {
		t.Fatal(err)
	}
	pod := fixture.NewTestPod(t)
	r := startAgent(t, pod, Options{PodCgroup: podDir, CPUInterval: 100 * time.Millisecond})

	rusage, err := fixture.Burn(burner, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	usage, err := cpuStatUsage(burner)
	if err != nil {
		t.Fatal(err)
	}
	// The probe charges the child's last slice when it switches out for
	// good; the next CPU sample then shows it.
	// Wait until the counter reaches cpu.stat's figure, or stops moving for
	// a good while: the child has exited, so once its last slice is in,
	// nothing more comes. (Two equal reads 300 ms apart were not enough on a
	// busy machine: the probe's sampler itself can be that late.)
	var got, prev float64
	still := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		got = r.cpuSeconds(t, burnerID)
		if got >= 0.99*usage.Seconds() {
			break
		}
		if got > 0 && got == prev {
			if still++; still >= 10 {
				break
			}
		} else {
			still = 0
		}
		prev = got
	}
	t.Logf("probe %.3fs, cpu.stat %.3fs, rusage %.3fs", got, usage.Seconds(), rusage.Seconds())
	if d := got - usage.Seconds(); d > 0.1*usage.Seconds() || d < -0.1*usage.Seconds() {
		t.Errorf("probe accounted %.3fs, cgroup cpu.stat %.3fs: more than 10%% apart", got, usage.Seconds())
	}
	// The snapshot names the container by its cgroup and container id.
	var s api.Snapshot
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s = r.snapshot(t, "10s"); len(s.CPU) > 0 {
			break
		}
	}
	if len(s.CPU) != 1 || s.CPU[0].CgroupID != burnerID || s.CPU[0].ContainerID != strings.Repeat("ab", 32) ||
		!strings.HasSuffix(s.CPU[0].Cgroup, filepath.Base(burner)) || s.CPU[0].Millicores <= 0 {
		t.Errorf("snapshot cpu %+v", s.CPU)
	}
}

// cpuStatUsage reads usage_usec from a cgroup's cpu.stat.
func cpuStatUsage(dir string) (time.Duration, error) {
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, errors.New("no usage_usec in cpu.stat")
}

// cpuSeconds scrapes /metrics for one cgroup's CPU counter.
func (r *running) cpuSeconds(t *testing.T, id uint64) float64 {
	t.Helper()
	return r.metric(t, fmt.Sprintf(`mesh_probe_cpu_seconds_total{cgroup_id="%d",`, id))
}

// metric scrapes /metrics for the value of the first line that starts
// with prefix; 0 if none does.
func (r *running) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	res, err := http.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// Close detaches every program: the pod's eth0 and lo carry no program of
// the probe afterwards, and a new probe attaches again.
func TestEndToEndCloseDetaches(t *testing.T) {
	requireRoot(t)
	pod := fixture.NewTestPod(t)
	attached := func() map[string]int {
		out := map[string]int{}
		err := pod.Pod.Do(func() error {
			for _, dev := range []string{"eth0", "lo"} {
				ifi, err := net.InterfaceByName(dev)
				if err != nil {
					return err
				}
				for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
					res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: at})
					if err != nil {
						return err
					}
					out[fmt.Sprintf("%s/%v", dev, at)] += len(res.Programs)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for round := 0; round < 2; round++ {
		opts := Options{Config: testConfig, NetNS: pod.Pod.Path}
		a, err := Start(opts)
		if err != nil {
			t.Fatal(err)
		}
		got := attached()
		if mech := a.Mechanisms(); len(mech) != 1 || mech[0] != "tcx" {
			t.Skipf("attached with %v: this check reads TCX attachments", mech)
		}
		want := map[string]int{"eth0/TCXIngress": 1, "eth0/TCXEgress": 1, "lo/TCXIngress": 1, "lo/TCXEgress": 0}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("round %d while attached: %s has %d programs, want %d (%v)", round, k, got[k], v, got)
			}
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
		for k, v := range attached() {
			if v != 0 {
				t.Errorf("round %d after Close: %s still has %d programs", round, k, v)
			}
		}
		if err := a.Ready(); err == nil {
			t.Error("a closed probe reports ready")
		}
	}
}
