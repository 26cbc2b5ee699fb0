package pairing

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// recordedTrace is 20,000 exchanges (10,000 requests, about 0.43 s) as the
// probe's pairing received them at maximum throughput: BenchmarkProbeOverhead
// (probe/agent) running fortio's 8 connections through the proxy fixture at
// ~23k requests per second, on 2026-11-27, with a temporary line in
// Pairer.Add writing each exchange's times, ports and leg to a file (not
// kept in the code), the middle of the run cut out. Fortio's connections
// run in bursts and long edges bridge them into groups of up to ~1000
// exchanges; synthetic workloads (BenchmarkResolveOverlapping,
// BenchmarkResolveBursts) make far smaller groups.
//
// Format, after gzip: per exchange, in arrival order, a byte for the leg
// (1 edge, 2 app), then as varints: client port, server port, request start
// minus the previous exchange's request start (signed; the first is
// relative to a request start one second earlier), request end minus
// request start, response start minus request end, response end minus
// response start. Nanoseconds, CLOCK_MONOTONIC differences.
const recordedTrace = "testdata/max-throughput.trace.gz"

// loadRecordedTrace returns the trace's exchanges, the first request
// starting at start.
func loadRecordedTrace(tb testing.TB, start uint64) []exchange.Event {
	tb.Helper()
	f, err := os.Open(recordedTrace)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	r := bufio.NewReader(zr)
	var evs []exchange.Event
	at := start - uint64(time.Second)
	for {
		leg, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		// Per exchange: client and server port, request start's step
		// (signed), then three unsigned durations.
		var v [6]uint64
		for i := range v {
			if i == 2 {
				var d int64
				d, err = binary.ReadVarint(r)
				v[i] = uint64(d)
			} else {
				v[i], err = binary.ReadUvarint(r)
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			tb.Fatalf("%s, exchange %d: %v", recordedTrace, len(evs), err)
		}
		at += v[2]
		ev := exchange.Event{
			Leg: exchange.Leg(leg), Direction: exchange.Inbound,
			RequestStart: at, RequestEnd: at + v[3],
			RequestBytes: 100, ResponseBytes: 200, Requests: 1, Responses: 1,
		}
		ev.ResponseStart = ev.RequestEnd + v[4]
		ev.ResponseEnd = ev.ResponseStart + v[5]
		if ev.Leg == exchange.LegEdge {
			ev.Client, ev.Server = netip.AddrPortFrom(client, uint16(v[0])), netip.AddrPortFrom(podIP, uint16(v[1]))
		} else {
			ev.Client, ev.Server = netip.AddrPortFrom(proxyIP, uint16(v[0])), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(v[1]))
		}
		evs = append(evs, ev)
	}
	return evs
}

// replayRecorded gives the events to p in their order and resolves as the
// agent does, every 100 ms (of the trace's time, at the latest response
// end seen), then drains, handing each batch of results to keep (if not
// nil). The trace is shorter than the agent's horizon of a second: with it
// the final drain would decide everything at once. A Pairer made with
// replayHorizon decides as the agent's does, a batch per resolve (the
// decisions do not depend on the horizon: see TestRecordedTraceDecisions).
const replayHorizon = 50 * time.Millisecond

func replayRecorded(p *Pairer, evs []exchange.Event, keep func([]Result)) {
	var last uint64
	for i := range evs {
		p.Add(evs[i])
		if at := evs[i].ResponseEnd; at > last+100*ms {
			rs := p.Resolve(at)
			if keep != nil {
				keep(rs)
			}
			last = at
		}
	}
	if rs := p.Drain(); keep != nil {
		keep(rs)
	}
}

// pairKeys are results as (edge client port, edge request start, app
// client port, app request start), sorted.
type pairKeys [][4]uint64

func (k *pairKeys) add(rs []Result) {
	for _, r := range rs {
		*k = append(*k, [4]uint64{uint64(r.Edge.ClientPort), r.Edge.RequestStart, uint64(r.App.ClientPort), r.App.RequestStart})
	}
}

func (k pairKeys) sorted() pairKeys {
	slices.SortFunc(k, func(a, b [4]uint64) int { return slices.Compare(a[:], b[:]) })
	return k
}

// On the recorded groups, as on the random ones of
// TestForcedPairsMatchBruteForce: the bit sets and the list-based graphs
// decide the same, deciding as exchanges come decides as one drain of
// everything would, and every exchange is accounted for.
func TestRecordedTraceDecisions(t *testing.T) {
	evs := loadRecordedTrace(t, base)
	resolve := func(limit int, stepwise bool) (pairKeys, Counts) {
		defer func(old int) { smallGroupLimit = old }(smallGroupLimit)
		smallGroupLimit = limit
		p := New(Config{Horizon: replayHorizon})
		var pairs pairKeys
		if stepwise {
			replayRecorded(p, evs, pairs.add)
		} else {
			for i := range evs {
				p.Add(evs[i])
			}
			pairs.add(p.Drain())
		}
		return pairs.sorted(), p.Counts()
	}
	wantPairs, want := resolve(64, true)
	if want.Edge+want.App != uint64(len(evs)) ||
		want.Paired+want.AmbiguousEdge+want.UnmatchedEdge != want.Edge ||
		want.Paired+want.AmbiguousApp+want.UnmatchedApp != want.App {
		t.Fatalf("exchanges not accounted for: %+v", want)
	}
	if want.Paired == 0 || want.AmbiguousSettled == 0 {
		t.Fatalf("the trace should have pairs and settled ambiguous groups: %+v", want)
	}
	for _, c := range []struct {
		limit    int
		stepwise bool
	}{{0, true}, {64, false}, {0, false}} {
		pairs, got := resolve(c.limit, c.stepwise)
		if got != want || !slices.Equal(pairs, wantPairs) {
			t.Errorf("limit %d, stepwise %v: %d pairs, counts %+v; want %d pairs, %+v", c.limit, c.stepwise, len(pairs), got, len(wantPairs), want)
		}
	}
	t.Logf("%d exchanges: paired %d, ambiguous %d (settled %d), unmatched %d edges / %d apps",
		len(evs), want.Paired, want.AmbiguousEdge, want.AmbiguousSettled, want.UnmatchedEdge, want.UnmatchedApp)
}

// BenchmarkResolveRecorded replays the recorded trace through one Pairer,
// as the agent's loop would (Add, and Resolve every 100 ms), shifting its
// times forward on every pass. ns/request is per edge exchange.
//
//	go test -run '^$' -bench ResolveRecorded -benchtime 20x ./probe/pairing
func BenchmarkResolveRecorded(b *testing.B) {
	evs := loadRecordedTrace(b, base)
	edges := 0
	for i := range evs {
		if evs[i].Leg == exchange.LegEdge {
			edges++
		}
	}
	span := evs[len(evs)-1].ResponseEnd - evs[0].RequestStart + 10*uint64(time.Second)
	p := New(Config{Horizon: replayHorizon})
	b.ReportAllocs()
	for b.Loop() {
		replayRecorded(p, evs, nil)
		for i := range evs {
			e := &evs[i]
			e.RequestStart, e.RequestEnd = e.RequestStart+span, e.RequestEnd+span
			e.ResponseStart, e.ResponseEnd = e.ResponseStart+span, e.ResponseEnd+span
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*edges), "ns/request")
}
