package pairing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// forcedPairs against brute force: on random small candidate graphs, the
// links it returns are exactly those in every maximum matching, it says
// the matching is perfect exactly when a maximum matching covers every
// linked node, and matchingSize is the maximum size. One matcher serves
// every graph, as in a Pairer, so reused arrays that kept something of an
// earlier graph would show. Every other graph has as many apps as edges
// and a planted perfect matching (the case of forcedInPerfect); in a third
// of the others some nodes are already used (paired by request ID), and
// their links must not count. Both the bit-set graphs of small groups and
// the list-based ones of large groups are checked.
func TestForcedPairsMatchBruteForce(t *testing.T) {
	defer func(limit int) { smallGroupLimit = limit }(smallGroupLimit)
	for _, limit := range []int{64, 0} {
		smallGroupLimit = limit
		rng := rand.New(rand.NewPCG(7, 11))
		var m matcher
		perfectRounds := 0
		for round := 0; round < 3000; round++ {
			ne, na := 1+rng.IntN(6), 1+rng.IntN(6)
			planted := round%2 == 1
			if planted {
				na = ne
			}
			perm := rng.Perm(na)
			edges, apps := make([]*node, ne), make([]*node, na)
			someUsed := !planted && round%3 == 0
			for i := range edges {
				edges[i] = &node{used: someUsed && rng.IntN(6) == 0}
			}
			for j := range apps {
				apps[j] = &node{used: someUsed && rng.IntN(6) == 0}
			}
			m.edgeCands, m.appCands = lists(m.edgeCands, ne), lists(m.appCands, na)
			cands := make([][]int, ne) // the links among unused nodes
			for i := range edges {
				for j := range apps {
					if rng.IntN(3) == 0 || (planted && perm[i] == j) {
						m.edgeCands[i] = append(m.edgeCands[i], j)
						m.appCands[j] = append(m.appCands[j], i)
						if !edges[i].used && !apps[j].used {
							cands[i] = append(cands[i], j)
						}
					}
				}
			}
			forced, perfect := m.forcedPairs(edges, apps, false)
			got := slices.Clone(forced)
			want := bruteForced(cands, na)
			slices.SortFunc(got, func(a, b [2]int) int { return a[0]*16 + a[1] - b[0]*16 - b[1] })
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d, round %d: forced %v, want %v (links %v)", limit, round, got, want, cands)
			}
			best, _ := bruteMatchings(cands, na)
			linkedEdges, linkedApps := 0, map[int]bool{}
			for _, js := range cands {
				if len(js) > 0 {
					linkedEdges++
				}
				for _, j := range js {
					linkedApps[j] = true
				}
			}
			if want := best == linkedEdges && best == len(linkedApps); perfect != want {
				t.Fatalf("limit %d, round %d: perfect %v, want %v (links %v)", limit, round, perfect, want, cands)
			}
			if size := m.matchingSize(edges, apps); size != best {
				t.Fatalf("limit %d, round %d: maximum matching %d, want %d", limit, round, size, best)
			}
			size, _ := m.maxMatching(m.candidateLinks(edges, apps, false), na)
			if size != best {
				t.Fatalf("limit %d, round %d: maxMatching %d, want %d", limit, round, size, best)
			}
			if planted {
				perfectRounds++
				if !m.perfect(m.adj, size) {
					t.Fatalf("round %d: a planted perfect matching of %d was not found perfect (links %v)", round, size, cands)
				}
			}
		}
		if perfectRounds == 0 {
			t.Fatal("no graph took the perfect-matching path")
		}
	}
}

// A Pairer decides every group as the definition says, checked against
// brute force on random groups whose requests and responses span several
// packets, so that some links hold by containment but not by the causal
// bounds: per connected group of containment links, the pairs in every
// maximum matching; then, among the exchanges left, those in every maximum
// matching of the causal links; every exchange left is ambiguous if it
// still has a containment link to another one left, else unmatched; and
// the ambiguous ones are settled when as many edges as apps are left and a
// matching pairs them all. Both the bit-set and the list-based graphs.
func TestSolveMatchesBruteForce(t *testing.T) {
	// Found by the random rounds with groups of up to 7 a side: the
	// containment pass's matching is perfect, the causal pass then takes
	// a pair, and the four edges and four apps left cannot all be paired
	// at once: they are ambiguous, not settled.
	fixed := []exchange.Event{
		edgeEv(8080, 100, 186*us, 596*us, 1529*us, 1775*us),
		edgeEv(8080, 101, 887*us, 887*us, 1727*us, 1727*us),
		edgeEv(8080, 102, 821*us, 1203*us, 1865*us, 1947*us),
		edgeEv(8080, 103, 217*us, 217*us, 1230*us, 1230*us),
		edgeEv(8080, 104, 824*us, 998*us, 2246*us, 2343*us),
		edgeEv(8080, 105, 255*us, 697*us, 807*us, 807*us),
		appEv(8080, 200, 454*us, 454*us, 732*us, 758*us),
		appEv(8080, 201, 951*us, 1048*us, 1238*us, 1276*us),
		appEv(8080, 202, 367*us, 377*us, 861*us, 861*us),
		appEv(8080, 203, 890*us, 890*us, 1585*us, 1728*us),
		appEv(8080, 204, 832*us, 832*us, 1448*us, 1448*us),
		appEv(8080, 205, 287*us, 297*us, 696*us, 696*us),
		appEv(8080, 206, 718*us, 718*us, 2149*us, 2328*us),
	}
	// check returns how many pairs the causal pass found.
	check := func(t *testing.T, evs []exchange.Event) int {
		p := New(Config{})
		var edges, apps []Exchange
		for _, ev := range evs {
			p.Add(ev)
			if ev.Leg == exchange.LegEdge {
				edges = append(edges, exchangeOf(&ev))
			} else {
				apps = append(apps, exchangeOf(&ev))
			}
		}
		want, wantPairs := referenceSolve(edges, apps)
		var gotPairs [][2]uint16
		for _, r := range p.Drain() {
			gotPairs = append(gotPairs, [2]uint16{r.Edge.ClientPort, r.App.ClientPort})
		}
		slices.SortFunc(gotPairs, func(a, b [2]uint16) int { return int(a[0]) - int(b[0]) })
		c := p.Counts()
		got := Counts{Edge: c.Edge, App: c.App, Paired: c.Paired, UnmatchedEdge: c.UnmatchedEdge, UnmatchedApp: c.UnmatchedApp,
			AmbiguousEdge: c.AmbiguousEdge, AmbiguousApp: c.AmbiguousApp, AmbiguousSettled: c.AmbiguousSettled}
		if !slices.Equal(gotPairs, wantPairs) || got != want.Counts {
			t.Fatalf("pairs %v counts %+v, want %v %+v\nedges %+v\napps %+v", gotPairs, got, wantPairs, want.Counts, edges, apps)
		}
		return want.causalPairs
	}
	defer func(limit int) { smallGroupLimit = limit }(smallGroupLimit)
	for _, limit := range []int{64, 0} {
		smallGroupLimit = limit
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			if check(t, fixed) == 0 {
				t.Fatal("the fixed case no longer needs the causal pass")
			}
			rng := rand.New(rand.NewPCG(13, 17))
			causalPairs := 0
			for range 4000 {
				ne, na := 1+rng.IntN(6), 1+rng.IntN(6)
				var evs []exchange.Event
				for k := range ne + na {
					rs := uint64(rng.IntN(1000)) * us
					re := rs + uint64(rng.IntN(3))*uint64(rng.IntN(300))*us
					ps := re + uint64(1+rng.IntN(1500))*us
					pe := ps + uint64(rng.IntN(3))*uint64(rng.IntN(300))*us
					if k < ne {
						evs = append(evs, edgeEv(8080, uint16(100+k), rs, re, ps, pe))
					} else {
						evs = append(evs, appEv(8080, uint16(200+k-ne), rs, re, ps, pe))
					}
				}
				causalPairs += check(t, evs)
			}
			if causalPairs < 50 {
				t.Fatalf("the causal pass found only %d pairs", causalPairs)
			}
		})
	}
}

// referenceSolve decides exchanges by the definitions, by brute force (see
// TestSolveMatchesBruteForce), and how many pairs the causal pass found.
func referenceSolve(edges, apps []Exchange) (want struct {
	Counts
	causalPairs int
}, pairs [][2]uint16) {
	want.Edge, want.App = uint64(len(edges)), uint64(len(apps))
	ne := len(edges)
	// Groups: connected components of the containment links.
	group := make([]int, ne+len(apps))
	for i := range group {
		group[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if group[i] != i {
			group[i] = find(group[i])
		}
		return group[i]
	}
	for i := range edges {
		for j := range apps {
			if contains(&edges[i], &apps[j]) {
				group[find(ne+j)] = find(i)
			}
		}
	}
	roots := map[int]bool{}
	for i := range group {
		roots[find(i)] = true
	}
	for root := range roots {
		var es, as []int
		for i := range edges {
			if find(i) == root {
				es = append(es, i)
			}
		}
		for j := range apps {
			if find(ne+j) == root {
				as = append(as, j)
			}
		}
		usedE, usedA := make([]bool, len(es)), make([]bool, len(as))
		links := func(ok func(e, a *Exchange) bool) [][]int {
			l := make([][]int, len(es))
			for x, i := range es {
				for y, j := range as {
					if !usedE[x] && !usedA[y] && ok(&edges[i], &apps[j]) {
						l[x] = append(l[x], y)
					}
				}
			}
			return l
		}
		for pass, ok := range []func(e, a *Exchange) bool{contains, causal} {
			for _, f := range bruteForced(links(ok), len(as)) {
				usedE[f[0]], usedA[f[1]] = true, true
				pairs = append(pairs, [2]uint16{edges[es[f[0]]].ClientPort, apps[as[f[1]]].ClientPort})
				want.Paired++
				want.causalPairs += pass
			}
		}
		left := links(contains)
		ambE, ambA := 0, map[int]bool{}
		for x := range es {
			switch {
			case usedE[x]:
			case len(left[x]) > 0:
				ambE++
				for _, y := range left[x] {
					ambA[y] = true
				}
			default:
				want.UnmatchedEdge++
			}
		}
		for y := range as {
			if !usedA[y] && !ambA[y] {
				want.UnmatchedApp++
			}
		}
		want.AmbiguousEdge += uint64(ambE)
		want.AmbiguousApp += uint64(len(ambA))
		if best, _ := bruteMatchings(left, len(as)); ambE > 0 && ambE == len(ambA) && best == ambE {
			want.AmbiguousSettled += uint64(ambE)
		}
	}
	slices.SortFunc(pairs, func(a, b [2]uint16) int { return int(a[0]) - int(b[0]) })
	return want, pairs
}

// bruteMatchings enumerates every matching of the graph given by each
// edge's candidate apps: the maximum size, and the matchings of that size
// (per edge, its app or -1).
func bruteMatchings(edges [][]int, na int) (int, [][]int) {
	best := 0
	var all [][]int
	cur := make([]int, len(edges))
	used := make([]bool, na)
	var walk func(i, size int)
	walk = func(i, size int) {
		if i == len(edges) {
			if size > best {
				best, all = size, nil
			}
			if size == best {
				all = append(all, slices.Clone(cur))
			}
			return
		}
		cur[i] = -1
		walk(i+1, size)
		for _, j := range edges[i] {
			if !used[j] {
				used[j], cur[i] = true, j
				walk(i+1, size+1)
				used[j], cur[i] = false, -1
			}
		}
	}
	walk(0, 0)
	return best, all
}

// bruteForced: the links present in every maximum matching, sorted.
func bruteForced(edges [][]int, na int) [][2]int {
	best, all := bruteMatchings(edges, na)
	var out [][2]int
	if best == 0 {
		return out
	}
	for i, j := range all[0] {
		if j < 0 {
			continue
		}
		inAll := true
		for _, mt := range all[1:] {
			if mt[i] != j {
				inAll = false
				break
			}
		}
		if inAll {
			out = append(out, [2]int{i, j})
		}
	}
	return out
}

// BenchmarkResolveOverlapping: 8 connections kept busy back to back, as
// fortio does at maximum throughput, each request 0.6-1 ms long: requests
// of different connections overlap, and many groups hold several requests
// and go through the matcher. ns/op is per request.
//
//	go test -run '^$' -bench ResolveOverlapping -benchtime 100000x ./probe/pairing
func BenchmarkResolveOverlapping(b *testing.B) {
	resolveConnections(b, func(c int) uint64 { return uint64(c) * 100 * us },
		func(p *Pairer, rng *rand.Rand, c int, at uint64) uint64 {
			in := 50*us + uint64(rng.IntN(50))*us
			dur := 600*us + uint64(rng.IntN(400))*us
			p.Add(appEv(8080, 50000+uint16(c), at+in, at+in+10*us, at+dur-in-10*us, at+dur-in))
			p.Add(edgeEv(8080, 40000+uint16(c), at, at+5*us, at+dur-5*us, at+dur))
			return at + dur + 20*us
		})
}

// resolveConnections drives a Pairer with 8 connections as fortio's are:
// each step, the connection whose next request is due first sends it
// (send adds its exchanges and returns when that connection sends the
// next), and every 100 ms of request time resolves, as the agent does.
// first gives each connection's first request time.
func resolveConnections(b *testing.B, first func(c int) uint64, send func(p *Pairer, rng *rand.Rand, c int, at uint64) uint64) {
	const conns = 8
	p := New(Config{Horizon: time.Second})
	rng := rand.New(rand.NewPCG(1, 2))
	var next [conns]uint64 // when each connection sends its next request
	for c := range next {
		next[c] = first(c)
	}
	lastResolve := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		c := 0
		for k := range next {
			if next[k] < next[c] {
				c = k
			}
		}
		at := next[c]
		next[c] = send(p, rng, c, at)
		if at-lastResolve >= 100*ms { // the agent's resolve interval
			p.Resolve(base + at)
			lastResolve = at
		}
	}
	p.Drain()
	cn := p.Counts()
	b.ReportMetric(float64(cn.AmbiguousEdge)/float64(max(cn.Edge, 1)), "ambiguous/request")
}

// The candidate links that resolve finds in its sweep are exactly the
// (edge, app) pairs where the edge contains the app on a matching port,
// compared with every pair. Durations spread over three orders of
// magnitude, so that long edges stay in flight over many short ones and
// short ones leave the sweep's active list early.
func TestCandidateLinksMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for round := 0; round < 200; round++ {
		p := New(Config{Horizon: time.Second, PortMap: map[uint16]uint16{80: 8080}})
		n := 1 + rng.IntN(60)
		for i := 0; i < n; i++ {
			at := uint64(rng.IntN(5000)) * us
			dur := uint64(1+rng.IntN(3)) * uint64(1+rng.IntN(1000)) * us
			port := []uint16{80, 8080, 9090}[rng.IntN(3)]
			if rng.IntN(2) == 0 {
				p.Add(edgeEv(port, uint16(40000+i), at, at+dur/4, at+dur/2, at+dur))
			} else {
				p.Add(appEv(port, uint16(50000+i), at, at+dur/4, at+dur/2, at+dur))
			}
		}
		edges := slices.Clone(p.edges.pending())
		apps := slices.Clone(p.apps.pending())
		p.Drain()
		links := &p.scratch.links
		for ai := range apps {
			var want []int
			for ei := range edges {
				if contains(&edges[ei].x, &apps[ai].x) && p.portMatches(&edges[ei].x, &apps[ai].x) {
					want = append(want, ei)
				}
			}
			if got := links.of(ai); !slices.Equal(got, want) {
				t.Fatalf("round %d, app %d %+v: candidates %v, want %v", round, ai, apps[ai].x, got, want)
			}
		}
	}
}

// BenchmarkResolveBursts: 8 connections as fortio runs them at maximum
// throughput through a proxy, in bursts: each connection's next request
// starts at the next of a shared 120 us cadence, edges last 60 us plus a
// log-normal part (median ~240 us, p99 ~2 ms), and the app exchange, 10-40%
// of its edge, lies anywhere inside it. Long edges bridge bursts: nearly
// every group holds 5 to 128 requests, most 9 to 64, where ResolveOverlapping's
// hold mostly 8 or fewer. (The bench's real groups at 22k rps are larger
// still, half of the requests in groups over 64: docs/benchmarks.md,
// session 10.) ns/op is per request.
//
//	go test -run '^$' -bench ResolveBursts -benchtime 200000x ./probe/pairing
func BenchmarkResolveBursts(b *testing.B) {
	tick := uint64(0)
	resolveConnections(b, func(int) uint64 { return 0 },
		func(p *Pairer, rng *rand.Rand, c int, at uint64) uint64 {
			dur := 60*us + uint64(180*float64(us)*math.Exp(rng.NormFloat64()))
			app := uint64((0.1 + 0.3*rng.Float64()) * float64(dur))
			in := uint64(rng.Float64() * float64(dur-app))
			p.Add(appEv(8080, 50000+uint16(c), at+in, at+in, at+in+app, at+in+app))
			p.Add(edgeEv(8080, 40000+uint16(c), at, at, at+dur, at+dur))
			for tick < at+dur+7*us {
				tick += 120 * us
			}
			return tick + uint64(rng.IntN(8))*us
		})
}
