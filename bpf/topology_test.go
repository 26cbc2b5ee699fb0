package bpf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// proxyFixture is a minimal HTTP/1.1 sidecar: one upstream connection per
// downstream connection, a hold before forwarding the request and another
// before returning the response.
//
// Its residence time for a request is measured with its own sockets'
// kernel timestamps: from the receive timestamp of the request (when the
// packet reached the pod, so time queued in the socket before the proxy
// woke up counts, as it does for a real proxy) to the transmit timestamp of
// the forwarded request, plus from the receive timestamp of the
// application's last response bytes to the transmit timestamp of the
// response sent on. The probe sees the same packets from TC hooks instead.
type proxyFixture struct {
	ns                  *netns
	upstream            string
	reqDelay, respDelay time.Duration

	mu        sync.Mutex
	residence []time.Duration
	reqPath   []time.Duration
	respPath  []time.Duration
	errs      []error
}

// realtimeOffset is CLOCK_REALTIME - CLOCK_MONOTONIC, read as a pair as
// close together as possible.
func realtimeOffset() int64 {
	m1 := clockNs(unix.CLOCK_MONOTONIC)
	r := clockNs(unix.CLOCK_REALTIME)
	m2 := clockNs(unix.CLOCK_MONOTONIC)
	return r - (m1+m2)/2
}

func clockNs(clock int32) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// stampedConn is a TCP connection whose kernel timestamps the fixture
// reads: the receive time of the data each read returned (SO_TIMESTAMPNS)
// and the time the data of the latest write left through the device
// (SO_TIMESTAMPING, software transmit timestamp from the error queue). All
// in CLOCK_MONOTONIC ns, the probe's clock.
type stampedConn struct {
	net.Conn
	raw   syscall.RawConn
	oob   []byte
	last  int64 // receive time of the latest read
	first int64 // receive time of the first read since reset
}

// setTimestamps turns on receive timestamps (SO_TIMESTAMPNS) and software
// transmit timestamps (SO_TIMESTAMPING).
func setTimestamps(c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING,
				unix.SOF_TIMESTAMPING_TX_SOFTWARE|unix.SOF_TIMESTAMPING_SOFTWARE|unix.SOF_TIMESTAMPING_OPT_TSONLY)
		}
	}); err != nil {
		return err
	}
	return serr
}

func newStampedConn(c net.Conn) (*stampedConn, error) {
	tc := c.(*net.TCPConn)
	if err := setTimestamps(tc); err != nil {
		return nil, err
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &stampedConn{Conn: c, raw: raw, oob: make([]byte, 512)}, nil
}

// monotonicStamp converts a kernel CLOCK_REALTIME timespec. The offset is
// sampled at each conversion rather than once: a VM's realtime clock gets
// slewed and stepped.
func monotonicStamp(b []byte) int64 {
	sec := int64(binary.NativeEndian.Uint64(b[0:]))
	nsec := int64(binary.NativeEndian.Uint64(b[8:]))
	return sec*1e9 + nsec - realtimeOffset()
}

func (s *stampedConn) Read(p []byte) (int, error) {
	var n, oobn int
	var rerr error
	err := s.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, s.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	msgs, err := unix.ParseSocketControlMessage(s.oob[:oobn])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			s.last = monotonicStamp(m.Data)
			if s.first == 0 {
				s.first = s.last
			}
		}
	}
	return n, nil
}

// sentAt returns the transmit timestamp of the latest write, draining the
// error queue. Loopback and veth transmit inside the write syscall, so the
// timestamp is queued by the time the write returns.
func (s *stampedConn) sentAt() (int64, error) {
	var stamp int64
	var rerr error
	buf := make([]byte, 1)
	if err := s.raw.Control(func(fd uintptr) {
		for {
			_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, s.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				if err != unix.EAGAIN {
					rerr = err
				}
				return
			}
			msgs, err := unix.ParseSocketControlMessage(s.oob[:oobn])
			if err != nil {
				rerr = err
				return
			}
			for _, m := range msgs {
				// struct scm_timestamping: ts[0] is the software stamp.
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPING && len(m.Data) >= 16 {
					stamp = monotonicStamp(m.Data)
				}
			}
		}
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if stamp == 0 {
		return 0, errors.New("no transmit timestamp for a write")
	}
	return stamp, nil
}

func (f *proxyFixture) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *proxyFixture) fail(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

func (f *proxyFixture) handle(downConn net.Conn) {
	defer downConn.Close()
	upConn, err := f.ns.dial(f.upstream)
	if err != nil {
		f.fail(err)
		return
	}
	defer upConn.Close()
	down, err := newStampedConn(downConn)
	if err != nil {
		f.fail(err)
		return
	}
	up, err := newStampedConn(upConn)
	if err != nil {
		f.fail(err)
		return
	}
	dr, ur := bufio.NewReader(down), bufio.NewReader(up)
	dw, uw := bufio.NewWriter(down), bufio.NewWriter(up)
	for {
		down.first = 0
		req, err := http.ReadRequest(dr)
		if err != nil {
			return // client closed
		}
		arrived := down.first
		if arrived == 0 {
			f.fail(errors.New("no receive timestamp for a request"))
			return
		}
		time.Sleep(f.reqDelay)
		if err := req.Write(uw); err != nil {
			f.fail(err)
			return
		}
		if err := uw.Flush(); err != nil {
			f.fail(err)
			return
		}
		forwarded, err := up.sentAt()
		if err != nil {
			f.fail(err)
			return
		}
		resp, err := http.ReadResponse(ur, req)
		if err != nil {
			f.fail(err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			f.fail(err)
			return
		}
		answered := up.last
		time.Sleep(f.respDelay)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err := resp.Write(dw); err != nil {
			f.fail(err)
			return
		}
		if err := dw.Flush(); err != nil {
			f.fail(err)
			return
		}
		returned, err := down.sentAt()
		if err != nil {
			f.fail(err)
			return
		}
		f.mu.Lock()
		f.residence = append(f.residence, time.Duration(forwarded-arrived+returned-answered))
		f.reqPath = append(f.reqPath, time.Duration(forwarded-arrived))
		f.respPath = append(f.respPath, time.Duration(returned-answered))
		f.mu.Unlock()
	}
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
	fx := &proxyFixture{
		ns: p.pod, upstream: "127.0.0.1:9080",
		reqDelay: 200 * time.Microsecond, respDelay: 100 * time.Microsecond,
	}
	ln := p.pod.listen(t, net.JoinHostPort(podAddr, listenPort))
	// Timestamp on the listener, so that accepted connections have it
	// from their first segment on.
	if err := setTimestamps(ln.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	// The kernel starts timestamping packets through a static key that
	// a workqueue flips: give it time before the first request.
	time.Sleep(100 * time.Millisecond)
	go fx.serve(ln)

	// run drives the load and pairs what the probe saw.
	type fixtureTruth struct{ residence, reqPath, respPath []time.Duration }
	run := func(t *testing.T, conns, perConn int) ([]pairing.Result, pairing.Counts, fixtureTruth) {
		fx.mu.Lock()
		fx.residence, fx.reqPath, fx.respPath = nil, nil, nil
		fx.mu.Unlock()
		defer func() {
			if t.Failed() {
				fx.mu.Lock()
				t.Logf("proxy fixture errors: %v", fx.errs)
				fx.mu.Unlock()
			}
		}()
		p.drive(t, "8080", conns, perConn)
		evs := drainEvents(t, rd, 500*time.Millisecond)
		fx.mu.Lock()
		truth := fixtureTruth{slices.Clone(fx.residence), slices.Clone(fx.reqPath), slices.Clone(fx.respPath)}
		errs := slices.Clone(fx.errs)
		fx.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("proxy fixture: %v", errs)
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
			if r.Method != pairing.ByContainment || r.App == nil || r.ProxyAdded <= 0 ||
				r.App.Server.Port() != appPort || r.Edge.Server.Port() != edgePort {
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
	for _, e := range drainEvents(t, rd, 300*time.Millisecond) {
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
