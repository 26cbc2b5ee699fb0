package pairing

import (
	"net/netip"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

var upstream = netip.MustParseAddr("192.0.2.30")

// callEv is the application's outbound exchange with the proxy on lo;
// upstreamEv the proxy's with the upstream on eth0.
func callEv(cport uint16, rs, re, ps, pe uint64) exchange.Event {
	e := appEv(0, cport, rs, re, ps, pe)
	e.Direction = exchange.Outbound
	e.Client = netip.AddrPortFrom(podIP, cport)
	e.Server = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	return e
}

func upstreamEv(cport uint16, rs, re, ps, pe uint64) exchange.Event {
	e := edgeEv(9080, cport, rs, re, ps, pe)
	e.Direction = exchange.Outbound
	e.Client = netip.AddrPortFrom(podIP, cport)
	e.Server = netip.AddrPortFrom(upstream, 9080)
	return e
}

// Outbound calls: the eth0 exchange lies within the lo one, whatever the
// ports; the proxy's time is the difference, split at the starts and the
// ends. Results keep eth0 in Edge and lo in App.
func TestOutboundPairs(t *testing.T) {
	p := New(Config{Direction: exchange.Outbound})
	for k := uint64(0); k < 3; k++ {
		b := 10*ms + k*5*ms
		p.Add(upstreamEv(50000, b+120*us, b+130*us, b+1*ms, b+1*ms+20*us))
		p.Add(callEv(41000, b, b+10*us, b+1*ms+60*us, b+1*ms+70*us))
	}
	// An inbound exchange is not this Pairer's.
	p.Add(edgeEv(8080, 40000, 0, 1, 2, 3))
	res := p.Drain()
	if len(res) != 3 {
		t.Fatalf("got %d results: %+v", len(res), p.Counts())
	}
	for _, r := range res {
		if r.Method != ByContainment || r.App == (Exchange{}) || r.Edge.Leg != exchange.LegEdge || r.App.Leg != exchange.LegApp {
			t.Fatalf("result %+v", r)
		}
		if r.RequestPath != 120*time.Microsecond || r.ResponsePath != 50*time.Microsecond ||
			r.ProxyAdded != 170*time.Microsecond || r.EdgeDuration != 900*time.Microsecond ||
			r.AppDuration != 1070*time.Microsecond {
			t.Errorf("result %+v", r)
		}
	}
	c := p.Counts()
	if c.Edge != 3 || c.App != 3 || c.Paired != 3 || c.Outbound != 1 || !p.ProxyDetected() {
		t.Errorf("counts %+v", c)
	}
}

// Unmatched outbound exchanges are counted by their real leg: a call the
// proxy answered itself (no upstream exchange) is an unmatched app
// exchange, an upstream exchange outside any call (the proxy's own
// traffic) an unmatched edge one. Two calls overlapping one upstream
// exchange are ambiguous.
func TestOutboundUnmatchedAndAmbiguous(t *testing.T) {
	p := New(Config{Direction: exchange.Outbound})
	p.Add(callEv(41000, 0, 10*us, 100*us, 110*us))
	p.Add(upstreamEv(50000, 5*ms, 5*ms+10*us, 6*ms, 6*ms+10*us))
	p.Add(callEv(41001, 10*ms, 10*ms+10*us, 12*ms, 12*ms+10*us))
	p.Add(callEv(41002, 10*ms+5*us, 10*ms+15*us, 12*ms+5*us, 12*ms+15*us))
	p.Add(upstreamEv(50001, 10*ms+100*us, 10*ms+110*us, 11*ms, 11*ms+10*us))
	if res := p.Drain(); len(res) != 0 {
		t.Fatalf("results %+v", res)
	}
	c := p.Counts()
	if c.UnmatchedApp != 1 || c.UnmatchedEdge != 1 || c.AmbiguousApp != 2 || c.AmbiguousEdge != 1 {
		t.Errorf("counts %+v", c)
	}
}

// Calls that never met a proxy on lo (the application dials the upstream
// itself) are reported without proxy time.
func TestOutboundWithoutProxy(t *testing.T) {
	p := New(Config{Direction: exchange.Outbound})
	p.Add(upstreamEv(50000, 0, 10*us, 1*ms, 1*ms+10*us))
	res := p.Drain()
	if len(res) != 1 || res[0].Method != NoProxy || res[0].ProxyAdded != 0 || res[0].Edge.Leg != exchange.LegEdge {
		t.Fatalf("results %+v", res)
	}
	if c := p.Counts(); c.NoProxy != 1 || p.ProxyDetected() {
		t.Errorf("counts %+v", c)
	}
}
