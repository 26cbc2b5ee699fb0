package bpf

import (
	"net/netip"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// The sampling gate (SetGate) through one cycle, with an inbound pod's two
// legs: a client's connection on eth0 (outer) and the proxy's connection to
// the application on lo (inner). Only exchanges whose outer exchange started
// with the gate open count; inner exchanges started while it admitted inner
// ones only are flagged; nothing the gate hid is emitted with a wrong end.
func TestRunGateCycle(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge, 9090: PortApp})
	edge := newConn("192.0.2.10:40100", "192.0.2.20:8080")
	app := newConn("127.0.0.6:41100", "127.0.0.1:9090")
	h.edgeIn(edge.syn())
	h.edgeOut(edge.synAck())
	h.app(app.syn(), app.synAck())
	exchange1 := func(n string) {
		t.Helper()
		h.edgeIn(edge.request("GET /" + n + " HTTP/1.1\r\nHost: svc\r\n\r\n"))
		h.app(app.request("GET /" + n + " HTTP/1.1\r\nHost: app\r\n\r\n"))
		h.app(app.response(resp1))
		h.edgeOut(edge.response(resp1))
	}
	gate := func(g Gate) {
		t.Helper()
		if err := h.p.SetGate(g); err != nil {
			t.Fatal(err)
		}
	}

	exchange1("1") // open: followed on both legs
	gate(GateInnerOnly)
	// The client's next request ends exchange 1 but starts none; the
	// proxy's request starts an inner exchange, flagged.
	exchange1("2")
	gate(GateClosed)
	exchange1("3")
	if r, err := h.p.FlushIdle(0); err != nil || r.Flushed != 0 {
		t.Errorf("idle scan with the gate closed flushed %d (%v), want 0: quiet is no end", r.Flushed, err)
	}
	gate(GateInnerOnly) // a new epoch: both connections resync
	exchange1("4")
	gate(GateOpen)
	exchange1("5")
	h.edgeIn(edge.fromClient(tcpFIN|tcpACK, nil))
	h.app(app.fromClient(tcpFIN|tcpACK, nil))

	var got []string
	for _, e := range h.events() {
		got = append(got, e.Leg.String()+" "+string(e.Head[:6])+" ["+e.Flags.String()+"]")
	}
	want := []string{
		"edge GET /1 []",          // ended by request 2
		"app GET /1 []",           // ended by request 2
		"app GET /4 [gate-inner]", // ended by request 5; inner exchange 2 was cut, flagged: not counted
		"edge GET /5 [fin]",       // resynced at request 4 (a request line), skipped by the gate, started at 5
		"app GET /5 [fin]",
	}
	if len(got) != len(want) {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, got[i], want[i])
		}
	}
	s := h.stats()
	// Closed: exchange 3's four payload segments. Skipped: the client's
	// requests 2 and 4. Nothing outer was in progress when the gate closed.
	if s.GateClosed != 4 || s.GateSkipped != 2 || s.GateCut != 0 || s.PredatesProbe != 0 {
		t.Errorf("stats %+v", s)
	}
}

// An outer exchange still in progress when the gate closes is cut, by the
// idle scan or when its connection is next seen: counted once, never
// emitted with the end it had when the gate closed. The connection is
// followed again from a request after response bytes, or from a request
// line.
func TestRunGateCutsExchangeInProgress(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40101", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1[:20]))
	for _, g := range []Gate{GateInnerOnly, GateClosed} {
		if err := h.p.SetGate(g); err != nil {
			t.Fatal(err)
		}
	}
	h.edgeOut(c.response(resp1[20:])) // unseen: the rest of the response
	if err := h.p.SetGate(GateOpen); err != nil {
		t.Fatal(err)
	}
	// The idle scan does not emit an exchange of a flow the gate closed
	// on: once quiet, it cuts it (a connection that stays silent would
	// hide it), counted once.
	if r, err := h.p.FlushIdle(0); err != nil || r.Flushed != 0 {
		t.Errorf("idle scan flushed %d (%v) from a flow the gate closed on, want 0", r.Flushed, err)
	}
	if s := h.stats(); s.GateCut != 1 {
		t.Errorf("after the idle scan: %d cut, want 1", s.GateCut)
	}
	// A segment that could be the middle of a request (no request line,
	// no response since the resync) starts nothing.
	h.edgeIn(c.request("ody-without-a-request-line"))
	h.edgeOut(c.response(resp2))
	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; string(e.Head[:8]) != "GET /two" || e.Flags != exchange.FlagFIN ||
		e.RequestBytes != uint64(len(req2)) || e.ResponseBytes != uint64(len(resp2)) {
		t.Errorf("event %+v, want request 2 alone", e)
	}
	if s := h.stats(); s.GateCut != 1 || s.GateClosed != 1 {
		t.Errorf("stats %+v, want one exchange cut, one segment closed out", s)
	}
}

// With the gate closed a client's SYN still creates its connection's flow,
// so a connection opened then is followed from its first request after the
// gate reopens, not as one that predates the probe.
func TestRunGateClosedNotesSYN(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	if err := h.p.SetGate(GateClosed); err != nil {
		t.Fatal(err)
	}
	c := newConn("192.0.2.10:40102", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	if n := len(h.flows()); n != 1 {
		t.Fatalf("%d flows after a SYN with the gate closed, want 1", n)
	}
	if err := h.p.SetGate(GateOpen); err != nil {
		t.Fatal(err)
	}
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || string(e.Head) != req1 {
		t.Errorf("event %+v", e)
	}
	if s := h.stats(); s.PredatesProbe != 0 || s.FlowsCreated != 1 || s.GateClosed != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestSetGateRejectsUnknownState(t *testing.T) {
	h := newRunHarness(t, nil)
	if err := h.p.SetGate(Gate(7)); err == nil {
		t.Error("SetGate(7) succeeded")
	}
}

// A FIN or RST with the gate closed forgets its connection, whose
// exchange in progress may have gone on unseen: cut, not emitted.
func TestRunGateClosedForgetsEndedConnections(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40103", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1))
	if err := h.p.SetGate(GateClosed); err != nil {
		t.Fatal(err)
	}
	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("emitted with the gate closed: %+v", evs)
	}
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows left after a FIN with the gate closed, want 0", n)
	}
	if s := h.stats(); s.GateCut != 1 || s.GateClosed != 2 {
		t.Errorf("stats %+v, want exchange 1 cut and two segments closed out", s)
	}
}

// With the gate closed IPv4, IPv6 and VLAN-tagged segments are turned
// away after parsing, before any lookup; a SYN in any of them goes on.
func TestRunGateClosedFrames(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	if err := h.p.SetGate(GateClosed); err != nil {
		t.Fatal(err)
	}
	v4c, v4s := netip.MustParseAddrPort("192.0.2.10:40104"), netip.MustParseAddrPort("192.0.2.20:8080")
	v6c, v6s := netip.MustParseAddrPort("[2001:db8::10]:40105"), netip.MustParseAddrPort("[2001:db8::20]:8080")
	h.edgeIn(frameSpec{src: v4c, dst: v4s, seq: 2, flags: tcpACK | tcpPSH, payload: []byte("GET / HTTP/1.1\r\n\r\n")}.bytes())
	h.edgeIn(frameSpec{src: v6c, dst: v6s, seq: 2, flags: tcpACK | tcpPSH, payload: []byte("GET / HTTP/1.1\r\n\r\n")}.bytes())
	h.edgeIn(frameSpec{src: v4c, dst: v4s, seq: 2, flags: tcpACK | tcpPSH, payload: []byte("GET / HTTP/1.1\r\n\r\n"), vlan: 7}.bytes())
	if s := h.stats(); s.GateClosed != 3 || s.Packets != 3 || s.FlowsCreated != 0 {
		t.Errorf("stats %+v, want three turned away", s)
	}
	h.edgeIn(frameSpec{src: v6c, dst: v6s, seq: 1, flags: tcpSYN}.bytes())
	h.edgeIn(frameSpec{src: netip.MustParseAddrPort("192.0.2.11:40106"), dst: v4s, seq: 1, flags: tcpSYN, vlan: 7}.bytes())
	if s := h.stats(); s.FlowsCreated != 2 || s.GateClosed != 3 {
		t.Errorf("stats %+v, want both SYNs to create their flows", s)
	}
}

// Once the gate has closed, a connection first seen mid-stream most likely
// started while it was (the programs of lo and eth0 ingress are detached
// meanwhile): it is followed from its next request that surely starts an
// exchange, as a resynced connection, and not reported as predating the
// probe.
func TestRunGateMidStreamAfterCycle(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{9090: PortApp})
	for _, g := range []Gate{GateClosed, GateOpen} {
		if err := h.p.SetGate(g); err != nil {
			t.Fatal(err)
		}
	}
	answered := newConn("127.0.0.6:41200", "127.0.0.1:9090")
	h.app(answered.response(resp1[10:])) // the end of a response: nothing to follow
	h.app(answered.request(req2))
	h.app(answered.response(resp2))
	h.app(answered.fromClient(tcpFIN|tcpACK, nil))
	midRequest := newConn("127.0.0.6:41201", "127.0.0.1:9090")
	h.app(midRequest.request("ody-without-a-request-line")) // could be a request's middle
	h.app(midRequest.response(resp1))
	h.app(midRequest.request(req1))
	h.app(midRequest.response(resp1))
	h.app(midRequest.fromClient(tcpFIN|tcpACK, nil))

	evs := h.events()
	wantEvents(t, evs, 2)
	for i, want := range []string{req2, req1} {
		want = want[:min(len(want), 64)] // the head the programs keep
		if e := evs[i]; string(e.Head) != want || e.Flags != exchange.FlagFIN {
			t.Errorf("event %d: %q [%v], want %q [fin]", i, e.Head, e.Flags, want)
		}
	}
	if s := h.stats(); s.PredatesProbe != 0 || s.FlowsCreated != 2 {
		t.Errorf("stats %+v, want two flows, none predating the probe", s)
	}
}
