package pairing

import (
	"reflect"
	"testing"
	"time"
)

// The Pairer reuses its arrays, but a Result stays whole until the next
// Resolve: Adds in between (the agent reads the ring while it records) must
// not overwrite it.
func TestResultsValidUntilNextResolve(t *testing.T) {
	p := New(Config{Horizon: time.Millisecond})
	p.Add(appEv(8080, 50000, 150*us, 160*us, 1*ms, 1*ms+20*us))
	p.Add(edgeEv(8080, 40000, 0, 10*us, 1*ms+90*us, 1*ms+100*us))
	res := p.Resolve(base + 10*ms)
	if len(res) != 1 || res[0].Method != ByContainment {
		t.Fatalf("results %+v", res)
	}
	want := res[0]
	for k := uint64(1); k <= 4; k++ {
		at := k * 10 * ms
		p.Add(appEv(8080, 50000+uint16(k), at+150*us, at+160*us, at+1*ms, at+1*ms+20*us))
		p.Add(edgeEv(8080, 40000+uint16(k), at, at+10*us, at+1*ms+90*us, at+1*ms+100*us))
	}
	if !reflect.DeepEqual(res[0], want) {
		t.Fatalf("a result changed before the next resolve:\n%+v\nwant\n%+v", res[0], want)
	}
	if got := p.Resolve(base + 20*ms); len(got) != 1 || got[0].Edge.ClientPort != 40001 {
		t.Fatalf("second resolve: %+v", got)
	}
	if got := p.Drain(); len(got) != 3 {
		t.Fatalf("drain: %d results, want 3", len(got))
	}
	if c := p.Counts(); c.Paired != 5 || c.UnmatchedEdge+c.UnmatchedApp+c.AmbiguousEdge+c.AmbiguousApp != 0 {
		t.Errorf("counts %+v", c)
	}
}

// In steady state (requests paired one by one, as at a fixed rate) adding
// and resolving allocates nothing: at thousands of requests per second the
// garbage was a third of the probe's CPU. Counted, not timed.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	p := New(Config{Horizon: time.Millisecond})
	head := []byte("GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
	at := uint64(0)
	round := func() {
		for c := uint16(0); c < 8; c++ {
			app := appEv(8080, 50000+c, at+150*us, at+160*us, at+1*ms, at+1*ms+20*us)
			edge := edgeEv(8080, 40000+c, at, at+10*us, at+1*ms+90*us, at+1*ms+100*us)
			app.Head, edge.Head = head, head
			p.Add(app)
			p.Add(edge)
			at += 2 * ms
		}
		if got := p.Resolve(base + at); len(got) == 0 {
			t.Fatal("nothing resolved")
		}
	}
	for range 10 { // warm the queues and the scratch arrays
		round()
	}
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Errorf("%v allocations per round of 8 requests, want 0", n)
	}
	if c := p.Counts(); c.Paired == 0 || c.Paired != c.Edge-uint64(pendingEdges(p)) {
		t.Errorf("counts %+v", c)
	}
}

func pendingEdges(p *Pairer) int {
	e, _ := p.Pending()
	return e
}
