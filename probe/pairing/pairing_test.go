package pairing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

const ms = uint64(time.Millisecond)
const us = uint64(time.Microsecond)

var (
	podIP   = netip.MustParseAddr("192.0.2.20")
	client  = netip.MustParseAddr("192.0.2.10")
	proxyIP = netip.MustParseAddr("127.0.0.6")
)

// base keeps test timestamps away from 0, which means "not seen".
const base = uint64(time.Second)

// edgeEv and appEv build exchanges with explicit timestamps relative to
// base: request start, request end, response start, response end.
func edgeEv(port uint16, cport uint16, rs, re, ps, pe uint64) exchange.Event {
	return exchange.Event{
		Leg: exchange.LegEdge, Direction: exchange.Inbound,
		Client: netip.AddrPortFrom(client, cport), Server: netip.AddrPortFrom(podIP, port),
		RequestStart: base + rs, RequestEnd: base + re, ResponseStart: base + ps, ResponseEnd: base + pe,
		RequestBytes: 100, ResponseBytes: 200, Requests: 1, Responses: 1,
	}
}

func appEv(port uint16, cport uint16, rs, re, ps, pe uint64) exchange.Event {
	e := edgeEv(port, cport, rs, re, ps, pe)
	e.Leg = exchange.LegApp
	e.Client = netip.AddrPortFrom(proxyIP, cport)
	return e
}

func withID(e exchange.Event, id string) exchange.Event {
	e.Head = []byte("GET / HTTP/1.1\r\nx-request-id: " + id + "\r\n")
	return e
}

func TestSequentialPairs(t *testing.T) {
	p := New(Config{})
	// Three requests over one keep-alive connection on each leg; the
	// proxy adds 150us on the way in and 80us on the way out.
	for k := uint64(0); k < 3; k++ {
		base := 10*ms + k*5*ms
		p.Add(appEv(8080, 50000, base+150*us, base+160*us, base+1*ms, base+1*ms+20*us))
		p.Add(edgeEv(8080, 40000, base, base+10*us, base+1*ms+90*us, base+1*ms+100*us))
	}
	res := p.Drain()
	if len(res) != 3 {
		t.Fatalf("got %d results: %+v", len(res), p.Counts())
	}
	for _, r := range res {
		if r.Method != ByContainment || r.App == (Exchange{}) {
			t.Fatalf("result %+v", r)
		}
		if r.RequestPath != 150*time.Microsecond || r.ResponsePath != 80*time.Microsecond ||
			r.ProxyAdded != 230*time.Microsecond || r.AppDuration != 870*time.Microsecond ||
			r.EdgeDuration != 1100*time.Microsecond {
			t.Errorf("result %+v", r)
		}
	}
	c := p.Counts()
	if c.Edge != 3 || c.App != 3 || c.Paired != 3 || c.UnmatchedEdge+c.UnmatchedApp+c.AmbiguousEdge+c.AmbiguousApp != 0 {
		t.Errorf("counts %+v", c)
	}
	if !p.ProxyDetected() {
		t.Error("proxy not detected")
	}
}

// A short edge exchange nested in a long one: the short one's app exchange
// fits both edges, the long one's fits only the long edge. The only maximum
// matching pairs each with its own.
func TestNestedExchangesAreForced(t *testing.T) {
	p := New(Config{})
	p.Add(edgeEv(8080, 1, 0*ms, 0, 9*ms, 10*ms))          // E1: long
	p.Add(edgeEv(8080, 2, 1*ms, 1*ms, 4*ms, 5*ms))        // E2: short, inside E1
	p.Add(appEv(8080, 11, 200*us, 200*us, 9*ms, 9800*us)) // A1: only in E1
	p.Add(appEv(8080, 12, 1200*us, 1200*us, 4*ms, 4800*us))
	res := p.Drain()
	if len(res) != 2 {
		t.Fatalf("results %d, counts %+v", len(res), p.Counts())
	}
	for _, r := range res {
		if r.Edge.ClientPort+10 != r.App.ClientPort {
			t.Errorf("edge %d paired with app %d", r.Edge.ClientPort, r.App.ClientPort)
		}
	}
}

// A proxy retry puts two app exchanges inside one edge exchange: which one
// answered is unknowable from timing, so all three are ambiguous.
func TestRetryIsAmbiguous(t *testing.T) {
	p := New(Config{})
	p.Add(edgeEv(8080, 1, 0, 0, 9*ms, 10*ms))
	p.Add(appEv(8080, 11, 1*ms, 1*ms, 2*ms, 3*ms))
	p.Add(appEv(8080, 12, 4*ms, 4*ms, 8*ms, 9*ms))
	if res := p.Drain(); len(res) != 0 {
		t.Fatalf("results %+v", res)
	}
	c := p.Counts()
	if c.AmbiguousEdge != 1 || c.AmbiguousApp != 2 || c.Paired != 0 {
		t.Errorf("counts %+v", c)
	}
}

// Two concurrent requests whose app exchanges both fit both edges: timing
// alone cannot decide; x-request-id can.
func TestRequestIDDecides(t *testing.T) {
	build := func(ids bool) *Pairer {
		p := New(Config{})
		e1 := edgeEv(8080, 1, 0, 0, 9*ms, 10*ms)
		e2 := edgeEv(8080, 2, 500*us, 500*us, 9500*us, 10500*us)
		a1 := appEv(8080, 11, 1*ms, 1*ms, 8*ms, 9*ms)
		a2 := appEv(8080, 12, 1500*us, 1500*us, 8500*us, 9200*us)
		if ids {
			e1, a1 = withID(e1, "one"), withID(a1, "one")
			e2, a2 = withID(e2, "two"), withID(a2, "two")
		}
		for _, e := range []exchange.Event{e1, e2, a1, a2} {
			p.Add(e)
		}
		return p
	}
	p := build(false)
	if res := p.Drain(); len(res) != 0 {
		t.Fatalf("timing alone paired %+v", res)
	}
	if c := p.Counts(); c.AmbiguousEdge != 2 || c.AmbiguousApp != 2 {
		t.Errorf("counts %+v", c)
	}
	p = build(true)
	res := p.Drain()
	if len(res) != 2 {
		t.Fatalf("results %d counts %+v", len(res), p.Counts())
	}
	for _, r := range res {
		if r.Method != ByRequestID || r.Edge.ClientPort+10 != r.App.ClientPort {
			t.Errorf("result %+v", r)
		}
	}
	if c := p.Counts(); c.PairedByRequestID != 2 {
		t.Errorf("counts %+v", c)
	}
}

// When containment is ambiguous the causal bounds (request fully received
// before fully forwarded, response started by the app first) can decide.
func TestCausalBoundsBreakTies(t *testing.T) {
	p := New(Config{})
	p.Add(edgeEv(8080, 1, 0, 200*us, 9500*us, 10*ms))
	p.Add(edgeEv(8080, 2, 500*us, 1200*us, 9800*us, 10500*us))
	p.Add(appEv(8080, 11, 1*ms, 1*ms, 9*ms, 9200*us))
	p.Add(appEv(8080, 12, 1500*us, 1500*us, 9600*us, 9700*us))
	res := p.Drain()
	if len(res) != 2 {
		t.Fatalf("results %d counts %+v", len(res), p.Counts())
	}
	for _, r := range res {
		if r.Edge.ClientPort+10 != r.App.ClientPort {
			t.Errorf("edge %d paired with app %d", r.Edge.ClientPort, r.App.ClientPort)
		}
	}
}

func TestNoProxy(t *testing.T) {
	p := New(Config{})
	p.Add(edgeEv(8080, 1, 0, 0, 1*ms, 2*ms))
	p.Add(edgeEv(8080, 2, 3*ms, 3*ms, 4*ms, 5*ms))
	res := p.Drain()
	if len(res) != 2 || p.ProxyDetected() {
		t.Fatalf("results %+v", res)
	}
	for _, r := range res {
		if r.Method != NoProxy || r.App != (Exchange{}) || r.ProxyAdded != 0 || r.EdgeDuration != 2*time.Millisecond {
			t.Errorf("result %+v", r)
		}
	}
	if c := p.Counts(); c.NoProxy != 2 || c.UnmatchedEdge != 0 {
		t.Errorf("counts %+v", c)
	}
	// Once the lo leg shows traffic, a lone edge exchange is unmatched
	// (e.g. the proxy answered by itself), not proxy-free.
	p.Add(appEv(8080, 11, 10*ms, 10*ms, 11*ms, 12*ms))
	p.Add(edgeEv(8080, 3, 9*ms, 9*ms, 12*ms, 13*ms))
	p.Add(edgeEv(8080, 4, 20*ms, 20*ms, 21*ms, 22*ms))
	res = p.Drain()
	if len(res) != 1 || res[0].Method != ByContainment {
		t.Fatalf("results %+v", res)
	}
	if c := p.Counts(); c.UnmatchedEdge != 1 || c.NoProxy != 2 {
		t.Errorf("counts %+v", c)
	}
}

func TestUnusableExchangesAreCounted(t *testing.T) {
	p := New(Config{})
	pre := edgeEv(8080, 1, 0, 0, 1*ms, 2*ms)
	pre.Flags = exchange.FlagPredatesProbe
	noResp := appEv(8080, 2, 0, 0, 0, 0)
	noResp.ResponseStart, noResp.ResponseEnd = 0, 0
	pipe := edgeEv(8080, 3, 0, 0, 1*ms, 2*ms)
	pipe.Flags = exchange.FlagPipelined
	tls := edgeEv(8080, 4, 0, 0, 1*ms, 2*ms)
	tls.Head = []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01}
	out := edgeEv(8080, 5, 0, 0, 1*ms, 2*ms)
	out.Direction = exchange.Outbound
	noReq := appEv(8080, 6, 0, 0, 1*ms, 2*ms)
	noReq.RequestStart, noReq.RequestEnd = 0, 0
	noReq.Flags = exchange.FlagNoRequest
	for _, e := range []exchange.Event{pre, noResp, pipe, tls, out, noReq} {
		p.Add(e)
	}
	if res := p.Drain(); len(res) != 0 {
		t.Fatalf("results %+v", res)
	}
	c := p.Counts()
	if c.Predates != 1 || c.Incomplete != 2 || c.Pipelined != 1 || c.TLSHandshake != 1 || c.Outbound != 1 {
		t.Errorf("counts %+v", c)
	}
	if e, a := p.Pending(); e+a != 0 {
		t.Errorf("pending %d/%d", e, a)
	}
}

// Exchanges wait for their partner until the horizon passes; a partner
// arriving later is counted unmatched, as is the exchange it belonged to.
func TestHorizon(t *testing.T) {
	p := New(Config{Horizon: 100 * time.Millisecond})
	p.Add(edgeEv(8080, 1, 1000*ms, 1000*ms, 1001*ms, 1002*ms))
	if res := p.Resolve(base + 1050*ms); len(res) != 0 {
		t.Fatalf("resolved within the horizon: %+v", res)
	}
	if e, _ := p.Pending(); e != 1 {
		t.Fatalf("pending edges %d", e)
	}
	p.Add(appEv(8080, 11, 1000*ms+100*us, 1000*ms+100*us, 1001*ms, 1001*ms+500*us))
	p.Add(edgeEv(8080, 2, 2000*ms, 2000*ms, 2001*ms, 2002*ms))
	res := p.Resolve(base + 1200*ms)
	if len(res) != 1 || res[0].Method != ByContainment {
		t.Fatalf("results %+v", res)
	}
	if e, a := p.Pending(); e != 1 || a != 0 {
		t.Fatalf("pending %d/%d: the later edge must wait", e, a)
	}
	res = p.Resolve(base + 2200*ms)
	late := appEv(8080, 12, 2000*ms+100*us, 2000*ms+100*us, 2001*ms, 2001*ms+500*us)
	p.Add(late)
	res = append(res, p.Drain()...)
	if len(res) != 0 {
		t.Fatalf("late partner paired: %+v", res)
	}
	if c := p.Counts(); c.UnmatchedEdge != 1 || c.UnmatchedApp != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestPortMap(t *testing.T) {
	ev := func(p *Pairer) {
		p.Add(edgeEv(8080, 1, 0, 0, 9*ms, 10*ms))
		p.Add(appEv(9080, 11, 1*ms, 1*ms, 2*ms, 3*ms))
	}
	p := New(Config{})
	ev(p)
	if res := p.Drain(); len(res) != 0 {
		t.Fatalf("different ports paired without a mapping")
	}
	p = New(Config{PortMap: map[uint16]uint16{8080: 9080}})
	ev(p)
	if res := p.Drain(); len(res) != 1 {
		t.Fatalf("mapped ports not paired: %+v", p.Counts())
	}
	p = New(Config{AnyPort: true})
	ev(p)
	if res := p.Drain(); len(res) != 1 {
		t.Fatalf("AnyPort did not pair: %+v", p.Counts())
	}
}

// simulate a sidecar under concurrent load with known per-request proxy
// times, emits both legs in a shuffled order, and checks that every pair
// the Pairer reports is a true pair with the exact proxy time, and that
// every exchange is accounted for.
func TestSimulatedLoad(t *testing.T) {
	for _, tc := range []struct {
		concurrency int
		minPaired   float64
	}{{1, 1.0}, {4, 0.9}, {16, 0.75}} {
		t.Run(fmt.Sprintf("c%d", tc.concurrency), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.concurrency)))
			type truth struct{ reqPath, respPath uint64 }
			type key struct {
				port  uint16
				start uint64
			}
			want := map[key]truth{}
			var totalAdded time.Duration
			var events []exchange.Event
			const perWorker = 200
			for w := 0; w < tc.concurrency; w++ {
				now := 1000*ms + uint64(rng.IntN(1000))*us
				for k := 0; k < perWorker; k++ {
					reqPath := 50*us + uint64(rng.IntN(300))*us
					respPath := 20*us + uint64(rng.IntN(200))*us
					app := 200*us + uint64(rng.IntN(3000))*us
					es := now
					as := es + reqPath
					ae := as + app
					ee := ae + respPath
					want[key{uint16(40000 + w), base + es}] = truth{reqPath, respPath}
					totalAdded += time.Duration(reqPath + respPath)
					events = append(events,
						edgeEv(8080, uint16(40000+w), es, es+5*us, ee-5*us, ee),
						appEv(8080, uint16(50000+w), as, as+5*us, ae-5*us, ae))
					now = ee + uint64(rng.IntN(500))*us
				}
			}
			rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
			p := New(Config{})
			for _, e := range events {
				p.Add(e)
			}
			res := p.Drain()
			var pairedAdded time.Duration
			for _, r := range res {
				pairedAdded += r.ProxyAdded
				w, ok := want[key{r.Edge.ClientPort, r.Edge.RequestStart}]
				if !ok {
					t.Fatalf("unknown edge %+v", r.Edge)
				}
				if uint64(r.RequestPath) != w.reqPath || uint64(r.ResponsePath) != w.respPath {
					t.Fatalf("false pair: got %v/%v want %v/%v", r.RequestPath, r.ResponsePath,
						time.Duration(w.reqPath), time.Duration(w.respPath))
				}
			}
			c := p.Counts()
			n := uint64(tc.concurrency * perWorker)
			if c.Paired+c.UnmatchedEdge+c.AmbiguousEdge != n || c.Paired+c.UnmatchedApp+c.AmbiguousApp != n {
				t.Fatalf("exchanges not accounted for: %+v", c)
			}
			// The mean over paired plus settled ambiguous exchanges is
			// exact: here everything is one or the other.
			if c.Paired+c.AmbiguousSettled != n || pairedAdded+c.AmbiguousProxyAdded != totalAdded {
				t.Errorf("mean not exact: paired %d settled %d, proxy time %v want %v",
					c.Paired, c.AmbiguousSettled, pairedAdded+c.AmbiguousProxyAdded, totalAdded)
			}
			if frac := float64(c.Paired) / float64(n); frac < tc.minPaired {
				t.Errorf("paired %.2f of exchanges, want >= %.2f (%+v)", frac, tc.minPaired, c)
			}
			t.Logf("concurrency %d: %+v", tc.concurrency, c)
		})
	}
}

// TestIncrementalResolveDecidesAsOneDrain: resolving step by step, with the
// exchanges added in a shuffled order, decides exactly what one Drain of
// everything decides. This holds only if every group Resolve decides is a
// whole group, which is what lets it look at the pending exchanges that
// started by its cutoff and no further.
func TestIncrementalResolveDecidesAsOneDrain(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 50 {
		var evs []exchange.Event
		// Requests over a few connections whose exchanges overlap: some
		// groups are single pairs, some ambiguous, some unmatched.
		for k := range 200 {
			start := uint64(k)*300*us + uint64(rng.IntN(200))*us
			dur := uint64(200+rng.IntN(2000)) * us
			proxyIn, proxyOut := uint64(20+rng.IntN(200))*us, uint64(20+rng.IntN(200))*us
			cport := uint16(40000 + k%5)
			if rng.IntN(20) != 0 { // now and then an edge without its app leg
				evs = append(evs, appEv(8080, cport+1000, start+proxyIn, start+proxyIn+10*us,
					start+dur-proxyOut-10*us, start+dur-proxyOut))
			}
			evs = append(evs, edgeEv(8080, cport, start, start+5*us, start+dur-5*us, start+dur))
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })

		whole := New(Config{Horizon: time.Millisecond})
		steps := New(Config{Horizon: time.Millisecond})
		for _, ev := range evs {
			whole.Add(ev)
			steps.Add(ev)
		}
		want := whole.Drain()
		var got []Result
		for now := base; ; now += uint64(rng.IntN(3000)) * us {
			got = append(got, steps.Resolve(now)...)
			if e, a := steps.Pending(); e+a == 0 {
				break
			}
			if now > base+uint64(time.Second) {
				got = append(got, steps.Drain()...)
				break
			}
		}
		if len(got) != len(want) || steps.Counts() != whole.Counts() {
			t.Fatalf("round %d: stepwise %d results, counts %+v; one drain %d results, counts %+v",
				round, len(got), steps.Counts(), len(want), whole.Counts())
		}
		// Decided in a different order of groups: compare as sets.
		seen := map[string]int{}
		key := func(r Result) string {
			return fmt.Sprint(r.Edge.ClientPort, r.Edge.RequestStart, r.Method, r.ProxyAdded)
		}
		for _, r := range want {
			seen[key(r)]++
		}
		for _, r := range got {
			if seen[key(r)]--; seen[key(r)] < 0 {
				t.Fatalf("round %d: stepwise result %s is not one of the single drain's", round, key(r))
			}
		}
	}
}
