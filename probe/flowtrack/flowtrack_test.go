package flowtrack

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// The scenarios of bpf's run tests (exchange_run_test.go, gate_run_test.go,
// outbound_run_test.go, flush_test.go), with the segments given as the
// programs would record them and the clock in the test's hands.

const (
	req1  = "GET /one HTTP/1.1\r\nHost: svc\r\nX-Request-Id: r-1\r\n\r\n"
	resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	req2  = "GET /two-with-a-path-long-enough-to-fill-the-sixty-four-byte-head HTTP/1.1\r\nHost: svc\r\n\r\n"
	resp2 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
)

// rig feeds a Tracker and keeps what it emits.
type rig struct {
	t     *testing.T
	tr    *Tracker
	now   uint64
	roles map[uint16]Role
	gate  Gate
	epoch uint32
	evs   []exchange.Event
}

func newRig(t *testing.T, roles map[uint16]Role, cfg Config) *rig {
	r := &rig{t: t, roles: roles, now: 1_000_000}
	cfg.Emit = func(e *exchange.Event) {
		c := *e
		c.Head = append([]byte(nil), e.Head...)
		if len(c.Head) == 0 {
			c.Head = nil
		}
		r.evs = append(r.evs, c)
	}
	r.tr = New(cfg)
	return r
}

// tick moves the clock on by us microseconds.
func (r *rig) tick(us uint64) { r.now += us * 1000 }

// events returns what was emitted since the last call.
func (r *rig) events() []exchange.Event {
	evs := r.evs
	r.evs = nil
	return evs
}

// conn is one TCP connection's two sequence spaces.
type conn struct {
	client, server netip.AddrPort
	cseq, sseq     uint32
}

func newConn(client, server string) *conn {
	return &conn{client: netip.MustParseAddrPort(client), server: netip.MustParseAddrPort(server), cseq: 1000, sseq: 50000}
}

// segment records one segment from src to dst at hook, as a program would:
// the payload's first HeadLen bytes, the ports' roles, the gate.
func (r *rig) segment(hook Hook, src, dst netip.AddrPort, seq uint32, flags uint8, payload string) {
	s := Segment{
		Time: r.now, Hook: hook, Ifindex: 2, Family: 4,
		Src: src.Addr().As16(), Dst: dst.Addr().As16(), SrcPort: src.Port(), DstPort: dst.Port(),
		SrcRoles: r.roles[src.Port()], DstRoles: r.roles[dst.Port()],
		Seq: seq, PayloadLen: uint32(len(payload)), TCPFlags: flags,
		Gate: r.gate, Epoch: r.epoch,
	}
	if hook == App {
		s.Ifindex = 1
	}
	if src.Addr().Is6() && !src.Addr().Is4In6() {
		s.Family = 6
	}
	s.Payload = []byte(payload[:min(len(payload), HeadLen)])
	r.tr.Add(&s)
	r.tick(1)
}

func (c *conn) fromClient(r *rig, hook Hook, flags uint8, payload string) {
	r.segment(hook, c.client, c.server, c.cseq, flags, payload)
	c.cseq += uint32(len(payload))
	if flags&(SYN|FIN) != 0 {
		c.cseq++
	}
}

func (c *conn) fromServer(r *rig, hook Hook, flags uint8, payload string) {
	r.segment(hook, c.server, c.client, c.sseq, flags, payload)
	c.sseq += uint32(len(payload))
	if flags&(SYN|FIN) != 0 {
		c.sseq++
	}
}

// open runs the handshake at the edge (client segments on ingress).
func (c *conn) open(r *rig) {
	c.fromClient(r, EdgeIngress, SYN, "")
	c.fromServer(r, EdgeEgress, SYN|ACK, "")
	c.fromClient(r, EdgeIngress, ACK, "")
}

func wantEvents(t *testing.T, evs []exchange.Event, n int) {
	t.Helper()
	if len(evs) != n {
		for _, e := range evs {
			t.Logf("event: %+v", e)
		}
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
}

func TestKeepAliveExchanges(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge | RoleApp}, Config{})
	c := newConn("192.0.2.10:40000", "192.0.2.20:8080")
	c.open(r)
	t0 := r.now
	c.fromClient(r, EdgeIngress, ACK, req1)
	r.tick(2000)
	tResp := r.now
	c.fromServer(r, EdgeEgress, ACK, resp1[:20])
	c.fromServer(r, EdgeEgress, ACK, resp1[20:])
	tEnd := r.now - 1000
	c.fromClient(r, EdgeIngress, ACK, "")
	if evs := r.events(); len(evs) != 0 {
		t.Fatalf("exchange emitted before it ended: %+v", evs)
	}
	tReq2 := r.now
	c.fromClient(r, EdgeIngress, ACK, req2)
	c.fromServer(r, EdgeEgress, ACK, resp2)
	c.fromServer(r, EdgeEgress, FIN|ACK, "")

	evs := r.events()
	wantEvents(t, evs, 2)
	e := evs[0]
	if e.Leg != exchange.LegEdge || e.Direction != exchange.Inbound || e.Client != c.client || e.Server != c.server || e.Ifindex != 2 {
		t.Errorf("event %+v", e)
	}
	if e.RequestStart != t0 || e.RequestEnd != t0 || e.ResponseStart != tResp || e.ResponseEnd != tEnd {
		t.Errorf("times %d %d %d %d, want %d %d %d %d", e.RequestStart, e.RequestEnd, e.ResponseStart, e.ResponseEnd, t0, t0, tResp, tEnd)
	}
	if e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)) {
		t.Errorf("bytes %d/%d", e.RequestBytes, e.ResponseBytes)
	}
	if string(e.Head) != req1 {
		t.Errorf("head %q", e.Head)
	}
	if id, ok := exchange.RequestID(e.Head); !ok || id != "r-1" {
		t.Errorf("request id %q %v", id, ok)
	}
	if e.Flags != 0 || e.Requests != 1 || e.Responses != 1 || e.Retransmits != 0 {
		t.Errorf("event %+v", e)
	}
	e = evs[1]
	if e.Flags != exchange.FlagFIN || string(e.Head) != req2[:HeadLen] || e.RequestStart != tReq2 {
		t.Errorf("second event %+v", e)
	}
	if r.tr.Flows() != 0 {
		t.Errorf("%d flows left after FIN", r.tr.Flows())
	}
	s := r.tr.Stats()
	if s.FlowsCreated != 1 || s.Events != 2 || s.PredatesProbe != 0 || s.BareACK != 2 || s.Segments != 10 {
		t.Errorf("stats %+v", s)
	}
}

func TestIPv6(t *testing.T) {
	r := newRig(t, map[uint16]Role{80: RoleEdge}, Config{})
	c := newConn("[2001:db8::10]:50000", "[2001:db8::20]:80")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Client != c.client || e.Server != c.server || !e.Client.Addr().Is6() || e.Flags != exchange.FlagFIN || string(e.Head) != req1 {
		t.Errorf("event %+v", e)
	}
}

// Retransmitted payload moves no timestamp and counts no byte twice; a
// segment that overlaps old bytes counts its new tail.
func TestRetransmission(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40001", "192.0.2.20:8080")
	c.open(r)
	tReq := r.now
	c.fromClient(r, EdgeIngress, ACK, req1)
	tResp := r.now
	c.fromServer(r, EdgeEgress, ACK, resp1[:10])
	c.fromServer(r, EdgeEgress, ACK, resp1[10:])
	r.tick(1000)
	r.segment(EdgeIngress, c.client, c.server, c.cseq-uint32(len(req1)), ACK, req1)
	r.segment(EdgeEgress, c.server, c.client, c.sseq-uint32(len(resp1)-10), ACK, resp1[10:])
	tLast := r.now
	r.segment(EdgeEgress, c.server, c.client, c.sseq-5, ACK, resp1[len(resp1)-5:]+"xyz")
	c.sseq += 3
	// An older segment arriving late (out of order): nothing new either.
	r.segment(EdgeEgress, c.server, c.client, c.sseq-uint32(len(resp1)+3), ACK, resp1[:10])
	c.fromClient(r, EdgeIngress, RST, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.Retransmits != 3 || e.Flags != exchange.FlagRetransmit|exchange.FlagRST {
		t.Errorf("retransmits %d flags %v", e.Retransmits, e.Flags)
	}
	if e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)+3) {
		t.Errorf("bytes %d/%d", e.RequestBytes, e.ResponseBytes)
	}
	if e.RequestStart != tReq || e.RequestEnd != tReq || e.ResponseStart != tResp || e.ResponseEnd != tLast {
		t.Errorf("times %+v (request %d response %d last %d)", e, tReq, tResp, tLast)
	}
	if s := r.tr.Stats(); s.Retransmits != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestRSTMidExchange(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40002", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromServer(r, EdgeEgress, ACK, resp1[:7])
	c.fromServer(r, EdgeEgress, RST|ACK, "")
	c.fromClient(r, EdgeIngress, ACK, "") // late: creates nothing
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagRST || e.ResponseBytes != 7 {
		t.Errorf("event %+v", e)
	}
	if r.tr.Flows() != 0 || r.tr.Stats().FlowsCreated != 1 {
		t.Errorf("%d flows, stats %+v", r.tr.Flows(), r.tr.Stats())
	}
}

func TestClientFINBeforeResponse(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40003", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	if evs := r.events(); len(evs) != 0 {
		t.Fatalf("half-close emitted %+v", evs)
	}
	c.fromServer(r, EdgeEgress, FIN|ACK, resp1)
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN|exchange.FlagClientFIN || e.ResponseBytes != uint64(len(resp1)) {
		t.Errorf("event %+v", e)
	}
	if r.tr.Flows() != 0 {
		t.Errorf("%d flows left", r.tr.Flows())
	}
}

func TestPipelined(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40004", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromClient(r, EdgeIngress, ACK, req2)
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromServer(r, EdgeEgress, ACK, resp2)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagPipelined|exchange.FlagFIN || e.Requests != 2 || e.Responses != 2 || e.RequestBytes != uint64(len(req1)+len(req2)) {
		t.Errorf("event %+v", e)
	}
	// A request body split over segments is not pipelining.
	c = newConn("192.0.2.10:40005", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, "POST /upload HTTP/1.1\r\nContent-Length: 20\r\n\r\n")
	c.fromClient(r, EdgeIngress, ACK, "0123456789")
	c.fromClient(r, EdgeIngress, ACK, "0123456789")
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs = r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || e.Requests != 1 {
		t.Errorf("body segments counted as requests: %+v", e)
	}
}

func TestContinue(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40006", "192.0.2.20:8080")
	c.open(r)
	head := "POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
	c.fromClient(r, EdgeIngress, ACK, head)
	c.fromServer(r, EdgeEgress, ACK, "HTTP/1.1 100 Continue\r\n\r\n")
	c.fromClient(r, EdgeIngress, ACK, "0123456789")
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, ACK, req2)
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.RequestBytes != uint64(len(head)+10) || e.Flags != 0 || e.Responses != 1 || !strings.HasPrefix(string(e.Head), "POST /big") {
		t.Errorf("event %+v", e)
	}
}

func TestPredatesProbe(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	// First seen in the middle of a response.
	c := newConn("192.0.2.10:40007", "192.0.2.20:8080")
	c.cseq += uint32(len(req1)) // sent before the probe
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, ACK, req2)
	c.fromServer(r, EdgeEgress, ACK, resp2)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 2)
	if e := evs[0]; e.Flags != exchange.FlagPredatesProbe || e.RequestStart != 0 || e.Complete() {
		t.Errorf("first exchange %+v", e)
	}
	if e := evs[1]; e.Flags != exchange.FlagFIN || !e.Complete() || string(e.Head) != req2[:HeadLen] {
		t.Errorf("second exchange %+v", e)
	}
	// First seen on request payload: may be the middle of a request.
	c = newConn("192.0.2.10:40008", "192.0.2.20:8080")
	c.fromClient(r, EdgeIngress, ACK, "0123456789")
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, ACK, req1)
	evs = r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagPredatesProbe || e.Complete() {
		t.Errorf("exchange %+v", e)
	}
	// A pure ACK of an unknown connection creates nothing.
	newConn("192.0.2.10:40009", "192.0.2.20:8080").fromClient(r, EdgeIngress, ACK, "")
	if s := r.tr.Stats(); s.PredatesProbe != 2 || s.FlowsCreated != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestServerFirst(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40010", "192.0.2.20:8080")
	c.open(r)
	c.fromServer(r, EdgeEgress, ACK, "220 ready\r\n")
	c.fromClient(r, EdgeIngress, ACK, "HELO x\r\n")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagNoRequest || e.Complete() {
		t.Errorf("event %+v", e)
	}
}

func TestPortFiltering(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge, 9090: RoleApp}, Config{})
	other := newConn("192.0.2.10:40011", "192.0.2.20:9999")
	other.fromClient(r, EdgeIngress, SYN, "")
	other.fromClient(r, EdgeIngress, ACK, req1)
	// The pod's own call to a remote 8080 leaves with destination 8080.
	out := newConn("192.0.2.20:40012", "192.0.2.30:8080")
	out.fromClient(r, EdgeEgress, SYN, "")
	out.fromClient(r, EdgeEgress, ACK, req1)
	app := newConn("192.0.2.10:40013", "192.0.2.20:9090")
	app.fromClient(r, EdgeIngress, SYN, "")
	app.fromClient(r, EdgeIngress, ACK, req1)
	if r.tr.Flows() != 0 {
		t.Errorf("%d flows, want 0", r.tr.Flows())
	}
	if s := r.tr.Stats(); s.NoPort != 6 {
		t.Errorf("stats %+v", s)
	}
}

// The app leg on lo: both directions, the application's port known from
// the roles the kernel recorded (configured or learnt from the proxy's SYN).
func TestAppLeg(t *testing.T) {
	r := newRig(t, map[uint16]Role{9080: RoleApp | RoleLearnt}, Config{})
	c := newConn("127.0.0.6:41001", "127.0.0.1:9080")
	c.fromClient(r, App, SYN, "")
	c.fromServer(r, App, SYN|ACK, "")
	c.fromClient(r, App, ACK, req1)
	c.fromServer(r, App, ACK, resp1)
	c.fromServer(r, App, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Leg != exchange.LegApp || e.Client != c.client || e.Server != c.server || e.Flags != exchange.FlagFIN || e.Ifindex != 1 || !e.Complete() {
		t.Errorf("event %+v", e)
	}
}

func TestTupleReuse(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	c := newConn("192.0.2.10:40015", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c2 := newConn("192.0.2.10:40015", "192.0.2.20:8080")
	c2.cseq = 12345
	c2.fromClient(r, EdgeIngress, SYN, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != 0 || !e.Complete() {
		t.Errorf("event %+v", e)
	}
	if r.tr.Flows() != 1 {
		t.Fatalf("%d flows", r.tr.Flows())
	}
	for _, f := range r.tr.flows {
		if f.state != stateIdle || f.nextReqSeq != 12346 || f.flags != 0 || f.xid != 1 {
			t.Errorf("reused flow not reset: %+v", f)
		}
	}
}

// The idle scan emits a quiet connection's last exchange once; the next
// request does not emit it again, and response bytes after it are counted.
func TestFlushIdle(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	const idle = 200_000_000
	c := newConn("192.0.2.10:40016", "192.0.2.20:8080")
	c.open(r)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromServer(r, EdgeEgress, ACK, resp1[:10])
	last := r.now - 1000
	if n, w := r.tr.FlushIdle(last+idle-1, idle, GateOpen, 0); n != 0 || w != 1 {
		t.Fatalf("flushed %d before the idle time, %d waiting", n, w)
	}
	if n, _ := r.tr.FlushIdle(last+idle, idle, GateClosed, 0); n != 0 {
		t.Fatalf("flushed %d with the gate closed", n)
	}
	if n, w := r.tr.FlushIdle(last+idle, idle, GateOpen, 0); n != 1 || w != 0 {
		t.Fatalf("flushed %d, want 1; %d waiting", n, w)
	}
	if n, w := r.tr.FlushIdle(last+2*idle, idle, GateOpen, 0); n != 0 || w != 0 {
		t.Fatalf("flushed the same exchange again (%d), %d waiting", n, w)
	}
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagIdle || e.ResponseBytes != 10 || !e.Complete() {
		t.Errorf("event %+v", e)
	}
	r.now = last + 2*idle
	c.fromServer(r, EdgeEgress, ACK, resp1[10:]) // late
	c.fromClient(r, EdgeIngress, ACK, req2)
	c.fromServer(r, EdgeEgress, ACK, resp2)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs = r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || string(e.Head) != req2[:HeadLen] {
		t.Errorf("event %+v", e)
	}
	if s := r.tr.Stats(); s.IdleFlushed != 1 || s.IdleLate != 1 || s.Events != 2 {
		t.Errorf("stats %+v", s)
	}
}

// The sampling gate: inner-only keeps outer exchanges from starting and
// flags inner ones; a closing cuts the exchange in progress; after the gate
// reopens (a new epoch) a connection is followed from its next request.
func TestGateCycle(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge, 9080: RoleApp}, Config{})
	edge := newConn("192.0.2.10:40017", "192.0.2.20:8080")
	app := newConn("127.0.0.6:41002", "127.0.0.1:9080")
	edge.open(r)
	app.fromClient(r, App, SYN, "")
	app.fromServer(r, App, SYN|ACK, "")

	r.gate = GateInnerOnly
	edge.fromClient(r, EdgeIngress, ACK, req1) // outer: skipped
	app.fromClient(r, App, ACK, req1)          // inner: followed, flagged
	app.fromServer(r, App, ACK, resp1)
	edge.fromServer(r, EdgeEgress, ACK, resp1)
	app.fromClient(r, App, ACK, req2) // ends the inner exchange
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Leg != exchange.LegApp || e.Flags != exchange.FlagGateInner {
		t.Errorf("event %+v", e)
	}
	if s := r.tr.Stats(); s.GateSkipped != 1 {
		t.Errorf("stats %+v", s)
	}

	// Closed: the inner exchange in progress (flagged) is not counted as
	// cut; data segments are dropped before any connection.
	r.gate = GateClosed
	app.fromServer(r, App, ACK, resp2)
	edge.fromClient(r, EdgeIngress, ACK, req2)
	if s := r.tr.Stats(); s.GateClosed != 2 || s.GateCut != 0 {
		t.Errorf("stats %+v", s)
	}

	// Reopened: the edge connection resyncs, skips the response it
	// missed the start of, and follows its next request.
	r.gate, r.epoch = GateOpen, 1
	edge.fromServer(r, EdgeEgress, ACK, resp2)
	tReq := r.now
	edge.fromClient(r, EdgeIngress, ACK, req1)
	edge.fromServer(r, EdgeEgress, ACK, resp1)
	edge.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs = r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Leg != exchange.LegEdge || e.Flags != exchange.FlagFIN || e.RequestStart != tReq || !e.Complete() {
		t.Errorf("event %+v", e)
	}
}

// An outer exchange in progress when the gate closes is cut, counted once,
// whether its connection speaks again or stays quiet.
func TestGateCutsExchangeInProgress(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	a := newConn("192.0.2.10:40018", "192.0.2.20:8080")
	b := newConn("192.0.2.10:40019", "192.0.2.20:8080")
	a.open(r)
	b.open(r)
	a.fromClient(r, EdgeIngress, ACK, req1)
	b.fromClient(r, EdgeIngress, ACK, req1)
	b.fromServer(r, EdgeEgress, ACK, resp1)
	r.gate = GateClosed
	r.gate, r.epoch = GateOpen, 1
	a.fromServer(r, EdgeEgress, ACK, resp1) // a speaks again: cut
	const idle = 200_000_000
	r.tr.FlushIdle(r.now+idle, idle, GateOpen, 1) // b stays quiet: cut
	r.tr.FlushIdle(r.now+2*idle, idle, GateOpen, 1)
	if evs := r.events(); len(evs) != 0 {
		t.Errorf("cut exchanges emitted: %+v", evs)
	}
	if s := r.tr.Stats(); s.GateCut != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A connection first seen mid-stream after the gate closed once most likely
// started while it was closed: followed from its next request, unflagged.
func TestGateMidStreamAfterCycle(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	r.epoch = 1
	c := newConn("192.0.2.10:40020", "192.0.2.20:8080")
	// The rest of a request whose start was missed, and its response:
	// neither starts an exchange.
	c.fromClient(r, EdgeIngress, ACK, "0123456789")
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, ACK, req1)
	c.fromServer(r, EdgeEgress, ACK, resp1)
	c.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || !e.Complete() {
		t.Errorf("event %+v", e)
	}
	if s := r.tr.Stats(); s.PredatesProbe != 0 {
		t.Errorf("stats %+v", s)
	}
}

// One outbound call as Istio's REDIRECT shapes it (bpf's
// TestRunOutboundCall): the application's connection to the proxy's port
// 15001 on lo, answered from the address it dialled, which is also a port
// the pod serves; the proxy's call to the upstream over eth0.
func TestOutboundCall(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge | RoleApp, 15001: RoleOutbound}, Config{Outbound: true})
	dialled := netip.MustParseAddrPort("10.96.0.10:8080")
	app := newConn("192.0.2.20:41000", "127.0.0.1:15001")
	up := newConn("192.0.2.20:50000", "192.0.2.30:8080")
	natReply := func(flags uint8, payload string) {
		r.segment(App, dialled, app.client, app.sseq, flags, payload)
		app.sseq += uint32(len(payload))
		if flags&(SYN|FIN) != 0 {
			app.sseq++
		}
	}
	app.fromClient(r, App, SYN, "")
	natReply(SYN|ACK, "")
	app.fromClient(r, App, ACK, "")
	app.fromClient(r, App, ACK, req1)
	up.fromClient(r, EdgeEgress, SYN, "")
	up.fromServer(r, EdgeIngress, SYN|ACK, "")
	up.fromClient(r, EdgeEgress, ACK, "")
	up.fromClient(r, EdgeEgress, ACK, req1)
	r.tick(1000)
	up.fromServer(r, EdgeIngress, ACK, resp1)
	natReply(ACK, resp1)
	app.fromClient(r, App, FIN|ACK, "")
	up.fromClient(r, EdgeEgress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 2)
	outer, inner := evs[0], evs[1]
	if outer.Leg != exchange.LegApp || inner.Leg != exchange.LegEdge {
		t.Fatalf("legs %v, %v", outer.Leg, inner.Leg)
	}
	if outer.Client != app.client || outer.Server != netip.MustParseAddrPort("0.0.0.0:0") {
		t.Errorf("app leg %v -> %v", outer.Client, outer.Server)
	}
	if inner.Client != up.client || inner.Server != up.server {
		t.Errorf("upstream leg %v -> %v", inner.Client, inner.Server)
	}
	for _, e := range evs {
		if e.Direction != exchange.Outbound || !e.Complete() || e.Flags != exchange.FlagFIN || string(e.Head) != req1 ||
			e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)) {
			t.Errorf("exchange %+v", e)
		}
	}
	if !(outer.RequestStart <= inner.RequestStart && inner.ResponseEnd <= outer.ResponseEnd) {
		t.Errorf("upstream exchange not inside the application's: %+v %+v", outer, inner)
	}
	if r.tr.Flows() != 0 {
		t.Errorf("%d flows left", r.tr.Flows())
	}
}

// With Outbound, connections the pod did not open from a SYN stay
// unfollowed, counted.
func TestOutboundOnlyFromSYN(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{Outbound: true})
	accepted := newConn("192.0.2.10:40021", "192.0.2.20:15021") // a health check
	accepted.fromClient(r, EdgeIngress, SYN, "")
	accepted.fromServer(r, EdgeEgress, SYN|ACK, "")
	accepted.fromClient(r, EdgeIngress, ACK, req1)
	opened := newConn("192.0.2.20:50001", "192.0.2.30:80") // before the probe
	opened.fromClient(r, EdgeEgress, ACK, req1)
	opened.fromServer(r, EdgeIngress, ACK, resp1)
	if r.tr.Flows() != 0 {
		t.Errorf("%d flows", r.tr.Flows())
	}
	if s := r.tr.Stats(); s.OutboundUnknown != 5 {
		t.Errorf("stats %+v", s)
	}
}

// Past MaxFlows the least recently seen connection is forgotten, counted;
// the kernel's LRU map forgot them without a count.
func TestEvictsLeastRecentlySeen(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{MaxFlows: 2})
	a := newConn("192.0.2.10:40022", "192.0.2.20:8080")
	b := newConn("192.0.2.10:40023", "192.0.2.20:8080")
	c := newConn("192.0.2.10:40024", "192.0.2.20:8080")
	a.open(r)
	b.open(r)
	a.fromClient(r, EdgeIngress, ACK, req1) // a is now the most recent
	c.open(r)                               // evicts b
	if r.tr.Flows() != 2 || r.tr.Stats().FlowsEvicted != 1 {
		t.Fatalf("%d flows, stats %+v", r.tr.Flows(), r.tr.Stats())
	}
	a.fromServer(r, EdgeEgress, ACK, resp1)
	a.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; !e.Complete() || e.Client != a.client {
		t.Errorf("event %+v", e)
	}
	b.fromClient(r, EdgeIngress, ACK, req1) // b again: mid-stream now
	if s := r.tr.Stats(); s.PredatesProbe != 1 {
		t.Errorf("stats %+v", s)
	}
}

// After a loss every exchange in progress is cut, counted, and each
// connection is followed again from its next request after a response.
func TestLost(t *testing.T) {
	r := newRig(t, map[uint16]Role{8080: RoleEdge}, Config{})
	a := newConn("192.0.2.10:40025", "192.0.2.20:8080")
	b := newConn("192.0.2.10:40026", "192.0.2.20:8080")
	a.open(r)
	b.open(r)
	a.fromClient(r, EdgeIngress, ACK, req1)
	b.fromClient(r, EdgeIngress, ACK, req1)
	b.fromServer(r, EdgeEgress, ACK, resp1)
	r.tr.Lost()
	a.fromClient(r, EdgeIngress, ACK, "0123456789") // the rest of a request, or not: unsure
	a.fromServer(r, EdgeEgress, ACK, resp1)
	tReq := r.now
	a.fromClient(r, EdgeIngress, ACK, req2)
	a.fromServer(r, EdgeEgress, ACK, resp2)
	a.fromClient(r, EdgeIngress, FIN|ACK, "")
	evs := r.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.RequestStart != tReq || e.Flags != exchange.FlagFIN || !e.Complete() || e.RequestBytes != uint64(len(req2)) {
		t.Errorf("event %+v", e)
	}
	if s := r.tr.Stats(); s.LostCut != 2 {
		t.Errorf("stats %+v", s)
	}
}
