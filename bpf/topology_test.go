package bpf

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
)

// A pod in miniature: a client namespace and a pod namespace joined by a
// veth pair (eth0 on both sides, 192.0.2.1 and 192.0.2.2: addresses that
// exist only inside these namespaces). In the pod an HTTP application
// listens on 127.0.0.1:9080 and a proxy fixture on 192.0.2.2:8080 forwards
// each request over lo to it, holding it for a configurable time, and
// records how long each request stayed in the proxy: the ground truth the
// probe's proxy-added latency is compared with.

const (
	clientAddr = "192.0.2.1"
	podAddr    = "192.0.2.2"
	edgePort   = 8080 // the proxy's listener, as a redirected service port
	appPort    = 9080 // the application, reached over lo
	directPort = 8081 // the application without proxy
)

type pod struct {
	client, pod *netns
	eth0        int
}

func newPod(t *testing.T) *pod {
	t.Helper()
	c := newNetns(t, "client")
	p := newNetns(t, "pod")
	c.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p.name)
	c.ip(t, "addr", "add", clientAddr+"/24", "dev", "eth0")
	p.ip(t, "addr", "add", podAddr+"/24", "dev", "eth0")
	c.ip(t, "link", "set", "eth0", "up")
	p.ip(t, "link", "set", "eth0", "up")
	return &pod{client: c, pod: p, eth0: p.ifindex(t, "eth0")}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// drive runs conns keep-alive connections from the client namespace, each
// sending perConn requests.
func (p *pod) drive(t *testing.T, port string, conns, perConn int) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for i := 0; i < conns; i++ {
		c, err := p.client.dial(net.JoinHostPort(podAddr, port))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := keepAliveRequests(c, "svc", perConn); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

func (p *pod) attach(t *testing.T, ports map[uint16]PortRole) *ExchangeProbe {
	t.Helper()
	pr, err := LoadExchangeProbe(ExchangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.pod.do(pr.Close) })
	for port, role := range ports {
		if err := pr.SetPort(port, role); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.pod.do(func() error {
		if err := pr.AttachEdge(p.eth0, TCAuto); err != nil {
			return err
		}
		return pr.AttachApp(1, TCAuto)
	}); err != nil {
		t.Fatal(err)
	}
	return pr
}

// The probe's proxy-added latency, from real packets on a real veth and
// lo, agrees with the proxy's own account of its residence time: per
// request (p50) on one keep-alive connection, where every exchange pairs,
// and on average under concurrency, where some pairs are ambiguous but
// their total is still exact. Once with the proxy listening on the service
// port itself, once behind an Istio-style iptables REDIRECT to 15006, where
// only TC's place before netfilter lets eth0 show the original port.
func TestTopologyProxyAddedMatchesFixture(t *testing.T) {
	requireRoot(t)
	t.Run("listener", func(t *testing.T) { testProxyAdded(t, false) })
	t.Run("redirect", func(t *testing.T) { testProxyAdded(t, true) })
}

func testProxyAdded(t *testing.T, redirect bool) {
	p := newPod(t)
	probe := p.attach(t, map[uint16]PortRole{edgePort: PortEdge, appPort: PortApp})
	rd, err := probe.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	app := p.pod.listen(t, "127.0.0.1:9080")
	serveHTTP(t, app, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		_, _ = io.WriteString(w, "hello from the app\n")
	})
	listenPort := "8080"
	if redirect {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Skip("needs iptables")
		}
		// What istio-init does for inbound traffic, in the pod only.
		if out, err := exec.Command("ip", "netns", "exec", p.pod.name, "iptables", "-t", "nat", "-A", "PREROUTING",
			"-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15006").CombinedOutput(); err != nil {
			t.Skipf("iptables REDIRECT unavailable: %v: %s", err, out)
		}
		listenPort = "15006"
	}
	// The proxy fixture (internal/fixture) keeps its own kernel-timestamped
	// account of every request's residence: the ground truth.
	fx, err := fixture.StartProxy(&fixture.Netns{Name: p.pod.name, Path: p.pod.path},
		net.JoinHostPort(podAddr, listenPort), "127.0.0.1:9080", 200*time.Microsecond, 100*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fx.Close() })

	// run drives the load and pairs what the probe saw.
	type fixtureTruth struct{ residence, reqPath, respPath []time.Duration }
	run := func(t *testing.T, conns, perConn int) ([]pairing.Result, pairing.Counts, fixtureTruth) {
		if _, err := fx.Take(); err != nil {
			t.Fatalf("proxy fixture: %v", err)
		}
		p.drive(t, "8080", conns, perConn)
		evs := drainEvents(t, probe, rd, 500*time.Millisecond)
		rs, err := fx.Take()
		if err != nil {
			t.Fatalf("proxy fixture: %v", err)
		}
		var truth fixtureTruth
		for _, r := range rs {
			truth.residence = append(truth.residence, r.Total())
			truth.reqPath = append(truth.reqPath, r.RequestPath)
			truth.respPath = append(truth.respPath, r.ResponsePath)
		}
		n := conns * perConn
		if len(truth.residence) != n {
			t.Fatalf("fixture handled %d requests, want %d", len(truth.residence), n)
		}
		pr := pairing.New(pairing.Config{PortMap: map[uint16]uint16{edgePort: appPort}})
		for _, e := range evs {
			pr.Add(e)
		}
		res := pr.Drain()
		c := pr.Counts()
		t.Logf("%d events, counts %+v", len(evs), c)
		if c.Edge != uint64(n) || c.App != uint64(n) || !pr.ProxyDetected() {
			t.Fatalf("edge/app exchanges %d/%d, want %d each", c.Edge, c.App, n)
		}
		if c.Paired+c.UnmatchedEdge+c.AmbiguousEdge != uint64(n) {
			t.Fatalf("edge exchanges not accounted for: %+v", c)
		}
		for _, r := range res {
			if r.Method != pairing.ByContainment || r.App == (pairing.Exchange{}) || r.ProxyAdded <= 0 ||
				r.App.ServerPort != appPort || r.Edge.ServerPort != edgePort {
				t.Fatalf("result %+v", r)
			}
		}
		return res, c, truth
	}

	t.Run("sequential p50", func(t *testing.T) {
		res, c, truth := run(t, 1, 200)
		if c.Paired != 200 {
			t.Fatalf("paired %d of 200 sequential requests", c.Paired)
		}
		var added, reqPath, respPath []time.Duration
		for _, r := range res {
			added = append(added, r.ProxyAdded)
			reqPath = append(reqPath, r.RequestPath)
			respPath = append(respPath, r.ResponsePath)
		}
		got, want := median(added), median(truth.residence)
		t.Logf("proxy added p50: probe %v, fixture %v (request path %v / %v, response path %v / %v)",
			got, want, median(reqPath), median(truth.reqPath), median(respPath), median(truth.respPath))
		if diff := got - want; diff < -50*time.Microsecond || diff > 50*time.Microsecond {
			t.Errorf("probe p50 %v differs from fixture p50 %v by more than 50us", got, want)
		}
	})

	t.Run("concurrent mean", func(t *testing.T) {
		const conns, perConn = 4, 50
		res, c, truth := run(t, conns, perConn)
		if c.Paired+c.AmbiguousSettled != conns*perConn {
			t.Fatalf("%d paired + %d settled, want all %d", c.Paired, c.AmbiguousSettled, conns*perConn)
		}
		total := c.AmbiguousProxyAdded
		for _, r := range res {
			total += r.ProxyAdded
		}
		var truthTotal time.Duration
		for _, d := range truth.residence {
			truthTotal += d
		}
		got, want := total/conns/perConn, truthTotal/conns/perConn
		t.Logf("proxy added mean: probe %v, fixture %v; %d pairs individually known", got, want, c.Paired)
		if diff := got - want; diff < -50*time.Microsecond || diff > 50*time.Microsecond {
			t.Errorf("probe mean %v differs from fixture mean %v by more than 50us", got, want)
		}
	})

	if s, err := probe.Stats(); err != nil || s.RingBufferFull != 0 || s.FlowCreateFailed != 0 {
		t.Errorf("stats %+v %v", s, err)
	}
}

// A pod whose application serves eth0 directly shows no lo leg: no proxy,
// zero added latency.
func TestTopologyNoProxy(t *testing.T) {
	requireRoot(t)
	p := newPod(t)
	probe := p.attach(t, map[uint16]PortRole{directPort: PortEdge | PortApp})
	rd, err := probe.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	serveHTTP(t, p.pod.listen(t, net.JoinHostPort(podAddr, "8081")), func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "direct\n")
	})
	p.drive(t, "8081", 2, 20)
	pr := pairing.New(pairing.Config{})
	for _, e := range drainEvents(t, probe, rd, 300*time.Millisecond) {
		if e.Leg != exchange.LegEdge {
			t.Fatalf("app-leg event without a proxy: %+v", e)
		}
		pr.Add(e)
	}
	res := pr.Drain()
	if pr.ProxyDetected() || len(res) != 40 {
		t.Fatalf("proxy detected %v, %d results, counts %+v", pr.ProxyDetected(), len(res), pr.Counts())
	}
	for _, r := range res {
		if r.Method != pairing.NoProxy || r.ProxyAdded != 0 {
			t.Fatalf("result %+v", r)
		}
	}
}

// Closing the sampling gate parks eth0 ingress's program too (TCX): a
// client's connection opened then leaves no trace (its SYN is not seen),
// and once the gate reopens it is followed from its next request line, not
// reported as predating the probe. eth0 egress stays attached.
func TestTopologyGateParksEdgeIngress(t *testing.T) {
	requireRoot(t)
	p := newPod(t)
	probe := p.attach(t, map[uint16]PortRole{directPort: PortEdge})
	rd, err := probe.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	serveHTTP(t, p.pod.listen(t, net.JoinHostPort(podAddr, "8081")), func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the app\n")
	})
	setGate := gateSetter(t, p.pod, probe)
	setGate(GateInnerOnly)
	setGate(GateClosed)
	var left []string
	for _, a := range probe.Attachments() {
		left = append(left, a.Mechanism+" "+a.Direction.String())
	}
	if tcx := probe.Attachments()[0].Mechanism == MechanismTCX; tcx != probe.Parked() || (tcx && len(left) != 1) {
		t.Fatalf("gate closed: parked %v, attached %q; want only eth0 egress attached on TCX", probe.Parked(), left)
	}
	if !probe.Parked() {
		t.Skip("clsact: nothing is parked")
	}
	c, br := openedWhileParked(t, p.client, net.JoinHostPort(podAddr, "8081"))
	var key ExchangeFlowKey
	var flow ExchangeFlow
	if it := probe.objs.Flows.Iterate(); it.Next(&key, &flow) {
		t.Errorf("a flow was created while eth0 ingress was parked: %+v", key)
	}

	followedAfterReopening(t, probe, setGate, 3, "edge", rd, c, br)
}
