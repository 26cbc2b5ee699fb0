package bpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// natReply is a segment from the proxy's socket to the application as lo
// carries it after netfilter has undone the REDIRECT: from the address the
// application dialled, not from the proxy's port.
func (c *tcpConn) natReply(dialled netip.AddrPort, flags uint8, payload string) []byte {
	f := frameSpec{src: dialled, dst: c.client, seq: c.sseq, ack: c.cseq, flags: flags, options: c.options, payload: []byte(payload)}
	c.sseq += uint32(len(payload))
	if flags&(tcpSYN|tcpFIN) != 0 {
		c.sseq++
	}
	return f.bytes()
}

// One outbound call through the proxy, as Istio's REDIRECT shapes it: the
// application dials 10.96.0.10:8080, lo carries its request to the proxy's
// port 15001 and the answers from 10.96.0.10:8080; the proxy calls the
// upstream pod over eth0. Port 8080 is also a port the pod serves, so the
// answers on lo look like an inbound application's until the outbound
// connection is found. Both legs come out as outbound exchanges, the eth0
// one inside the lo one.
func TestRunOutboundCall(t *testing.T) {
	h := newRunHarnessWith(t, ExchangeOptions{Outbound: true},
		map[uint16]PortRole{8080: PortEdge | PortApp, 15001: PortOutbound})
	dialled := netip.MustParseAddrPort("10.96.0.10:8080")
	app := newConn("192.0.2.20:41000", "127.0.0.1:15001")
	up := newConn("192.0.2.20:50000", "192.0.2.30:8080")

	t0 := monotonicNow(t)
	h.app(app.syn(), app.natReply(dialled, tcpSYN|tcpACK, ""), app.ackC(), app.request(req1))
	h.edgeOut(up.syn())
	h.edgeIn(up.synAck())
	h.edgeOut(up.ackC(), up.request(req1))
	time.Sleep(time.Millisecond) // the upstream's service time
	h.edgeIn(up.response(resp1))
	h.app(app.natReply(dialled, tcpACK|tcpPSH, resp1))
	h.app(app.fromClient(tcpFIN|tcpACK, nil))
	h.edgeOut(up.fromClient(tcpFIN|tcpACK, nil))
	t1 := monotonicNow(t)

	evs := h.events()
	wantEvents(t, evs, 2)
	var outer, inner exchange.Event
	for _, e := range evs {
		if e.Direction != exchange.Outbound {
			t.Fatalf("event %+v: want outbound", e)
		}
		if e.Leg == exchange.LegApp {
			outer = e
		} else {
			inner = e
		}
	}
	if outer.Client != app.client || outer.Server.Port() != 0 {
		t.Errorf("app leg %v -> %v, want %v -> the proxy (port 0: the key names the application's end only)", outer.Client, outer.Server, app.client)
	}
	if inner.Client != up.client || inner.Server != up.server {
		t.Errorf("upstream leg %v -> %v, want %v -> %v", inner.Client, inner.Server, up.client, up.server)
	}
	for _, e := range []exchange.Event{outer, inner} {
		if !e.Complete() || e.Flags != exchange.FlagFIN || string(e.Head) != req1 ||
			e.RequestBytes != uint64(len(req1)) || e.ResponseBytes != uint64(len(resp1)) {
			t.Errorf("exchange %+v", e)
		}
	}
	if !(t0 <= outer.RequestStart && outer.RequestStart <= inner.RequestStart &&
		inner.ResponseEnd <= outer.ResponseEnd && outer.ResponseEnd <= t1) {
		t.Errorf("the upstream exchange is not inside the application's: app %+v upstream %+v", outer, inner)
	}
	if d := inner.ResponseStart - inner.RequestEnd; d < uint64(time.Millisecond) {
		t.Errorf("upstream answered after %v, want >= 1ms", time.Duration(d))
	}
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows left after both FINs, want 0", n)
	}
}

// With Outbound, connections that the pod did not open stay untracked:
// one accepted on a port that is not measured (a health check on the
// proxy's status port), and an outbound one already open when the probe
// started. Their segments are counted.
func TestRunOutboundOnlyFromSYN(t *testing.T) {
	h := newRunHarnessWith(t, ExchangeOptions{Outbound: true},
		map[uint16]PortRole{8080: PortEdge, 15001: PortOutbound})
	health := newConn("192.0.2.1:43000", "192.0.2.20:15021")
	h.edgeIn(health.syn())
	h.edgeOut(health.synAck())
	h.edgeIn(health.request(req1))
	h.edgeOut(health.response(resp1))
	old := newConn("192.0.2.20:50001", "192.0.2.30:8080")
	h.edgeOut(old.request(req1))
	h.edgeIn(old.response(resp1))
	// lo: answers to a connection the application opened before the
	// probe (no flow for its client end) are not guessed at either.
	h.app(newConn("192.0.2.20:41001", "127.0.0.1:15001").natReply(netip.MustParseAddrPort("10.96.0.10:80"), tcpACK|tcpPSH, resp1))
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows tracked, want 0", n)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
	if s := h.stats(); s.OutboundUnknown != 6 || s.NoPort != 1 {
		t.Errorf("stats %+v: want 6 outbound-unknown (SYN in, SYN-ACK, 4 payloads) and the lo answer as no-port", s)
	}
}

// Without Outbound the same call is not followed at all: the programs are
// loaded with those paths pruned.
func TestRunOutboundOff(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{15001: PortOutbound})
	app := newConn("192.0.2.20:41002", "127.0.0.1:15001")
	h.app(app.syn(), app.request(req1))
	up := newConn("192.0.2.20:50002", "192.0.2.30:8080")
	h.edgeOut(up.syn(), up.request(req1))
	if n := len(h.flows()); n != 0 {
		t.Errorf("%d flows tracked, want 0", n)
	}
	if s := h.stats(); s.NoPort != 4 || s.OutboundUnknown != 0 {
		t.Errorf("stats %+v", s)
	}
}
