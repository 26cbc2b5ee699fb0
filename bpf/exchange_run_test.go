package bpf

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// These tests run the TC programs with BPF_PROG_TEST_RUN on crafted frames
// (no interface, no attach) and check the ring-buffer events and map state.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loading BPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")
	}
}

type runHarness struct {
	t  testing.TB
	p  *ExchangeProbe
	rd *ringbuf.Reader
}

func newRunHarness(t *testing.T, ports map[uint16]PortRole) *runHarness {
	t.Helper()
	return newRunHarnessWith(t, ExchangeOptions{}, ports)
}

// onOneCPU keeps the test's goroutine on one thread and that thread on one
// CPU until the test ends, so that every program run stages its exchanges
// in the same per-CPU area.
func onOneCPU(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	cpu := 0
	for !old.IsSet(cpu) {
		cpu++
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// newRunHarnessWith loads the programs with opts (small maps unless set).
func newRunHarnessWith(t testing.TB, opts ExchangeOptions, ports map[uint16]PortRole) *runHarness {
	t.Helper()
	requireRoot(t)
	// One CPU, so that the ring holds the exchanges in the order the
	// programs emitted them: each CPU stages its own.
	onOneCPU(t)
	if opts.MaxFlows == 0 {
		opts.MaxFlows = 1024
	}
	if opts.RingBufferBytes == 0 {
		opts.RingBufferBytes = 1 << 16
	}
	p, err := LoadExchangeProbe(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for port, role := range ports {
		if err := p.SetPort(port, role); err != nil {
			t.Fatal(err)
		}
	}
	rd, err := p.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rd.Close() })
	return &runHarness{t: t, p: p, rd: rd}
}

func (h *runHarness) run(prog *ebpf.Program, frames ...[]byte) {
	h.t.Helper()
	for _, f := range frames {
		ret, err := prog.Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			h.t.Fatalf("test run: %v", err)
		}
		// TC_ACT_UNSPEC: the probe never decides a packet's fate.
		if int32(ret) != -1 {
			h.t.Fatalf("program returned %d, want TC_ACT_UNSPEC (-1)", int32(ret))
		}
	}
}

func (h *runHarness) edgeIn(frames ...[]byte)  { h.t.Helper(); h.run(h.p.objs.EdgeIngress, frames...) }
func (h *runHarness) edgeOut(frames ...[]byte) { h.t.Helper(); h.run(h.p.objs.EdgeEgress, frames...) }
func (h *runHarness) app(frames ...[]byte)     { h.t.Helper(); h.run(h.p.objs.AppIngress, frames...) }

// events sends what the programs staged to the ring buffer and drains it.
func (h *runHarness) events() []exchange.Event {
	h.t.Helper()
	if _, err := h.p.FlushStaged(); err != nil {
		h.t.Fatal(err)
	}
	return h.decodeAll(h.records())
}

// records drains the ring buffer's records as they are, without sending
// anything staged first.
func (h *runHarness) records() [][]byte {
	h.t.Helper()
	var out [][]byte
	var rec ringbuf.Record
	for {
		h.rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if err := h.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out
			}
			h.t.Fatalf("read ring buffer: %v", err)
		}
		out = append(out, append([]byte(nil), rec.RawSample...))
	}
}

// decodeAll decodes records into their events, in order.
func (h *runHarness) decodeAll(recs [][]byte) []exchange.Event {
	h.t.Helper()
	var out []exchange.Event
	for _, r := range recs {
		evs, err := exchange.DecodeRecord(r)
		if err != nil {
			h.t.Fatalf("decode: %v", err)
		}
		out = append(out, evs...)
	}
	return out
}

func (h *runHarness) flows() map[ExchangeFlowKey]ExchangeFlow {
	h.t.Helper()
	out := map[ExchangeFlowKey]ExchangeFlow{}
	var k ExchangeFlowKey
	var v ExchangeFlow
	it := h.p.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *runHarness) stats() ExchangeStats {
	h.t.Helper()
	s, err := h.p.Stats()
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
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

const (
	req1  = "GET /one HTTP/1.1\r\nHost: svc\r\nX-Request-Id: r-1\r\n\r\n"
	resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	req2  = "GET /two-with-a-path-long-enough-to-fill-the-sixty-four-byte-head HTTP/1.1\r\nHost: svc\r\n\r\n"
	resp2 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
)

// A keep-alive connection with TCP timestamp options: the second request
// ends the first exchange, the server's FIN ends the second.
func TestRunKeepAliveExchanges(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge | PortApp})
	c := newConn("192.0.2.10:40000", "192.0.2.20:8080")

	t0 := monotonicNow(t)
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.ackC(), c.request(req1))
	time.Sleep(2 * time.Millisecond) // the "server" takes 2ms
	h.edgeOut(c.response(resp1[:20]))
	tMid := monotonicNow(t)
	h.edgeOut(c.response(resp1[20:]))
	h.edgeIn(c.ackC())
	if evs := h.events(); len(evs) != 0 {
		t.Fatalf("exchange emitted before it ended: %+v", evs)
	}
	tReq2 := monotonicNow(t)
	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	h.edgeOut(c.fromServer(tcpFIN|tcpACK, nil))
	t1 := monotonicNow(t)

	evs := h.events()
	wantEvents(t, evs, 2)
	e := evs[0]
	if e.Leg != exchange.LegEdge || e.Direction != exchange.Inbound {
		t.Errorf("leg/direction = %v/%v", e.Leg, e.Direction)
	}
	if e.Client != c.client || e.Server != c.server {
		t.Errorf("tuple %v -> %v, want %v -> %v", e.Client, e.Server, c.client, c.server)
	}
	if e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)) {
		t.Errorf("bytes %d/%d, want %d/%d", e.RequestBytes, e.ResponseBytes, len(req1), len(resp1))
	}
	if !(t0 <= e.RequestStart && e.RequestStart <= e.RequestEnd && e.RequestEnd < e.ResponseStart &&
		e.ResponseStart <= tMid && tMid <= e.ResponseEnd && e.ResponseEnd <= tReq2) {
		t.Errorf("timestamps out of order: %+v (t0 %d mid %d req2 %d)", e, t0, tMid, tReq2)
	}
	if d := e.ResponseStart - e.RequestEnd; d < uint64(2*time.Millisecond) {
		t.Errorf("response started %v after the request, want >= 2ms", time.Duration(d))
	}
	// The data offset (8 words with timestamps) was honoured: the head is
	// the payload, not TCP options.
	if string(e.Head) != req1 {
		t.Errorf("head %q, want %q", e.Head, req1)
	}
	if id, ok := exchange.RequestID(e.Head); !ok || id != "r-1" {
		t.Errorf("request id %q %v", id, ok)
	}
	if e.Flags != 0 || e.Requests != 1 || e.Responses != 1 || e.Retransmits != 0 {
		t.Errorf("flags %v requests %d responses %d retransmits %d", e.Flags, e.Requests, e.Responses, e.Retransmits)
	}

	e = evs[1]
	if e.Flags != exchange.FlagFIN {
		t.Errorf("second exchange flags %v, want fin", e.Flags)
	}
	if len(e.Head) != exchange.HeadLen || string(e.Head) != req2[:exchange.HeadLen] {
		t.Errorf("head %q, want the first 64 bytes of request 2", e.Head)
	}
	if e.RequestStart < tReq2 || e.ResponseEnd > t1 {
		t.Errorf("second exchange outside [%d, %d]: %+v", tReq2, t1, e)
	}
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows left after FIN, want 0", n)
	}
	s := h.stats()
	// The two bare ACKs from the client changed nothing and were counted.
	if s.FlowsCreated != 1 || s.Events != 2 || s.RingBufferFull != 0 || s.PredatesProbe != 0 || s.BareACK != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestRunIPv6(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{80: PortEdge})
	c := newConn("[2001:db8::10]:50000", "[2001:db8::20]:80")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.Client != c.client || e.Server != c.server || !e.Client.Addr().Is6() {
		t.Errorf("tuple %v -> %v", e.Client, e.Server)
	}
	if e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)) || e.Flags != exchange.FlagFIN {
		t.Errorf("event %+v", e)
	}
	if string(e.Head) != req1 {
		t.Errorf("head %q", e.Head)
	}
}

// Retransmitted payload does not move timestamps, does not count bytes
// twice and does not start a new exchange; it is counted and flagged.
func TestRunRetransmission(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40001", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1[:10]), c.response(resp1[10:]))
	before := h.flows()
	time.Sleep(time.Millisecond)
	// The client's request again (its ACK was lost): not a new exchange.
	h.edgeIn(c.retransmitClient(uint32(len(req1)), req1))
	// The whole last response segment again, then a segment overlapping
	// the end of the response by 5 bytes with 3 new bytes.
	h.edgeOut(c.retransmitServer(uint32(len(resp1)-10), resp1[10:]))
	h.edgeOut(c.retransmitServer(5, resp1[len(resp1)-5:]+"xyz"))
	h.edgeIn(c.fromClient(tcpRST, nil))

	evs := h.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.Retransmits != 2 || e.Flags != exchange.FlagRetransmit|exchange.FlagRST {
		t.Errorf("retransmits %d flags %v, want 2 and retransmit|rst", e.Retransmits, e.Flags)
	}
	if e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)+3) {
		t.Errorf("bytes %d/%d, want %d/%d", e.RequestBytes, e.ResponseBytes, len(req1), len(resp1)+3)
	}
	var f ExchangeFlow
	for _, v := range before {
		f = v
	}
	if e.RequestStart != f.ReqStartNs || e.RequestEnd != f.ReqEndNs || e.ResponseStart != f.RespStartNs {
		t.Errorf("a retransmission moved a timestamp: before %+v after %+v", f, e)
	}
	if e.ResponseEnd <= f.RespEndNs {
		t.Errorf("new bytes in an overlapping segment must advance the response end")
	}
	if s := h.stats(); s.Retransmits != 2 {
		t.Errorf("stats retransmits %d", s.Retransmits)
	}
}

func TestRunRSTMidExchange(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40002", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1[:7]))
	h.edgeOut(c.fromServer(tcpRST|tcpACK, nil))
	// Late packets of the dead connection create nothing.
	h.edgeIn(c.ackC())
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagRST || e.ResponseBytes != 7 {
		t.Errorf("event %+v", e)
	}
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows left after RST", n)
	}
}

// A client half-close after its request keeps the exchange open until the
// server's response and FIN.
func TestRunClientFINBeforeResponse(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40003", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	if evs := h.events(); len(evs) != 0 {
		t.Fatalf("half-close emitted %+v", evs)
	}
	h.edgeOut(c.fromServer(tcpACK|tcpPSH|tcpFIN, []byte(resp1)))
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN|exchange.FlagClientFIN || e.ResponseBytes != uint64(len(resp1)) {
		t.Errorf("event %+v", e)
	}
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows left", n)
	}
}

// Two request lines before any response byte: HTTP/1.1 pipelining. The
// exchange cannot be split, so it is flagged with its message counts.
func TestRunPipelined(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40004", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1), c.request(req2))
	h.edgeOut(c.response(resp1), c.response(resp2))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.Flags != exchange.FlagPipelined|exchange.FlagFIN || e.Requests != 2 || e.Responses != 2 {
		t.Errorf("flags %v requests %d responses %d", e.Flags, e.Requests, e.Responses)
	}
	if e.RequestBytes != uint64(len(req1)+len(req2)) {
		t.Errorf("request bytes %d", e.RequestBytes)
	}
	// A request body split over segments is not pipelining.
	c2 := newConn("192.0.2.10:40005", "192.0.2.20:8080")
	h.edgeIn(c2.syn())
	h.edgeOut(c2.synAck())
	h.edgeIn(c2.request("POST /upload HTTP/1.1\r\nContent-Length: 20\r\n\r\n"), c2.request("0123456789"), c2.request("0123456789"))
	h.edgeOut(c2.response(resp1))
	h.edgeIn(c2.fromClient(tcpFIN|tcpACK, nil))
	evs = h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || e.Requests != 1 {
		t.Errorf("body segments counted as requests: %+v", e)
	}
}

// "Expect: 100-continue": the interim response and the body that follows
// belong to the same exchange.
func TestRunContinue(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40006", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	head := "POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
	h.edgeIn(c.request(head))
	h.edgeOut(c.response("HTTP/1.1 100 Continue\r\n\r\n"))
	h.edgeIn(c.request("0123456789"))
	h.edgeOut(c.response(resp1))
	h.edgeIn(c.request(req2))
	evs := h.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.RequestBytes != uint64(len(head)+10) || e.Flags != 0 || e.Responses != 1 {
		t.Errorf("event %+v", e)
	}
	if !strings.HasPrefix(string(e.Head), "POST /big") {
		t.Errorf("head %q", e.Head)
	}
}

// Connections opened before the probe: the first exchange seen is flagged,
// the following ones are clean.
func TestRunPredatesProbe(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})

	// First seen in the middle of a response.
	c := newConn("192.0.2.10:40007", "192.0.2.20:8080")
	c.request(req1) // sent before the probe: not run
	h.edgeOut(c.response(resp1))
	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 2)
	if e := evs[0]; e.Flags != exchange.FlagPredatesProbe || e.RequestStart != 0 || e.Complete() {
		t.Errorf("first exchange %+v, want predates-probe without request", e)
	}
	if e := evs[1]; e.Flags != exchange.FlagFIN || !e.Complete() || string(e.Head) != req2[:64] {
		t.Errorf("second exchange %+v, want a clean one", e)
	}

	// First seen on request payload: may be the middle of a request.
	c = newConn("192.0.2.10:40008", "192.0.2.20:8080")
	h.edgeIn(c.request("0123456789"))
	h.edgeOut(c.response(resp1))
	h.edgeIn(c.request(req1))
	evs = h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagPredatesProbe || e.Complete() {
		t.Errorf("exchange %+v, want predates-probe", e)
	}
	// A pure ACK of an unknown connection creates nothing.
	c = newConn("192.0.2.10:40009", "192.0.2.20:8080")
	h.edgeIn(c.ackC())
	if s := h.stats(); s.PredatesProbe != 2 || s.FlowsCreated != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A server that speaks first (a banner) has a response without request.
func TestRunServerFirst(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40010", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeOut(c.response("220 ready\r\n"))
	h.edgeIn(c.request("HELO x\r\n"))
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagNoRequest || e.Complete() {
		t.Errorf("event %+v", e)
	}
}

// Only packets toward (ingress) or from (egress) a configured edge port are
// tracked; everything else is counted, not tracked.
func TestRunPortFiltering(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge, 9090: PortApp})
	other := newConn("192.0.2.10:40011", "192.0.2.20:9999")
	h.edgeIn(other.syn(), other.request(req1))
	// An outbound connection from the pod to a remote 8080 crosses eth0
	// egress with destination port 8080: not an inbound exchange.
	out := newConn("192.0.2.20:40012", "192.0.2.30:8080")
	h.edgeOut(out.syn(), out.request(req1))
	// An app-only port is not an edge port.
	app := newConn("192.0.2.10:40013", "192.0.2.20:9090")
	h.edgeIn(app.syn(), app.request(req1))
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows tracked, want 0", n)
	}
	if s := h.stats(); s.NoPort != 6 || s.Packets != 6 {
		t.Errorf("stats %+v", s)
	}
}

func TestRunUnparsed(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	src, dst := netip.MustParseAddrPort("192.0.2.10:1"), netip.MustParseAddrPort("192.0.2.20:8080")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:8080")
	h.edgeIn(
		frameSpec{src: src, dst: dst, flags: tcpSYN, ipProto: 17}.bytes(),      // UDP
		frameSpec{src: src, dst: dst, flags: tcpSYN, fragment: true}.bytes(),   // IPv4 fragment
		frameSpec{src: src6, dst: dst6, flags: tcpSYN, hopByHop: true}.bytes(), // hop-by-hop options
		frameSpec{src: src6, dst: dst6, flags: tcpSYN, ipv6Next: 43}.bytes(),   // routing header
		frameSpec{src: src6, dst: dst6, flags: tcpSYN, ipv6Next: 58}.bytes(),   // ICMPv6
		frameSpec{src: src, dst: dst, flags: tcpSYN}.bytes()[:14+20+10],        // truncated TCP header
	)
	s := h.stats()
	if s.NotTCP != 3 || s.IPFragment != 1 || s.IPv6ExtHeader != 2 || s.FlowsCreated != 0 || s.Packets != 6 {
		t.Errorf("stats %+v", s)
	}
}

// Ethernet pads short frames to 60 bytes: payload length comes from the IP
// header, not the frame length. A VLAN tag is skipped.
func TestRunPaddingAndVLAN(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	client, server := netip.MustParseAddrPort("192.0.2.10:40014"), netip.MustParseAddrPort("192.0.2.20:8080")
	h.edgeIn(frameSpec{src: client, dst: server, seq: 1, flags: tcpSYN, padTo: 60}.bytes())
	h.edgeIn(frameSpec{src: client, dst: server, seq: 2, flags: tcpACK | tcpPSH, payload: []byte("PING"), padTo: 60}.bytes())
	h.edgeOut(frameSpec{src: server, dst: client, seq: 100, flags: tcpACK | tcpPSH, payload: []byte("PONG"), padTo: 60, vlan: 7}.bytes())
	h.edgeIn(frameSpec{src: client, dst: server, seq: 6, flags: tcpFIN | tcpACK, padTo: 60}.bytes())
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.RequestBytes != 4 || e.ResponseBytes != 4 || string(e.Head) != "PING" {
		t.Errorf("event %+v", e)
	}
}

// The app program on lo sees both directions; a SYN from a proxy source
// address teaches it the application's port.
func TestRunAppLegLearnsPort(t *testing.T) {
	h := newRunHarness(t, nil)
	if err := h.p.AddProxySource(netip.MustParseAddr("127.0.0.6")); err != nil {
		t.Fatal(err)
	}
	// Not from a proxy source: ignored.
	stranger := newConn("127.0.0.1:41000", "192.0.2.20:9080")
	h.app(stranger.syn())
	c := newConn("127.0.0.6:41001", "192.0.2.20:9080")
	h.app(c.syn(), c.synAck(), c.request(req1))
	h.app(c.response(resp1), c.fromServer(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 1)
	e := evs[0]
	if e.Leg != exchange.LegApp || e.Client != c.client || e.Server != c.server || e.Flags != exchange.FlagFIN {
		t.Errorf("event %+v", e)
	}
	ports, err := h.p.Ports()
	if err != nil {
		t.Fatal(err)
	}
	if ports[9080] != PortApp|PortLearnt || len(ports) != 1 {
		t.Errorf("ports %v, want 9080 learnt", ports)
	}
	if s := h.stats(); s.PortsLearnt != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A SYN that reuses the 5-tuple of a connection whose end was not seen
// flushes the old exchange and starts clean.
func TestRunTupleReuse(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40015", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1))
	c2 := newConn("192.0.2.10:40015", "192.0.2.20:8080")
	c2.cseq = 12345
	h.edgeIn(c2.syn())
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != 0 || !e.Complete() {
		t.Errorf("event %+v", e)
	}
	fl := h.flows()
	if len(fl) != 1 {
		t.Fatalf("%d flows", len(fl))
	}
	for _, f := range fl {
		if f.State != 0 || f.NextReqSeq != 12346 || f.Flags != 0 {
			t.Errorf("reused flow not reset: %+v", f)
		}
	}
}
