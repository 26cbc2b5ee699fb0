package pairing

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// forcedPairs against brute force: on random small candidate graphs, the
// links it returns are exactly those in every maximum matching, and
// matchingSize is the maximum size. One matcher serves every graph, as in
// a Pairer, so reused arrays that kept something of an earlier graph would
// show. Every other graph has as many apps as edges and a planted perfect
// matching (the case of forcedInPerfect); in a third of the others some
// nodes are already used (paired by request ID), and their links must not
// count. Both the bit-set graphs of small groups and the list-based ones
// of large groups are checked.
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
			got := slices.Clone(m.forcedPairs(edges, apps, false))
			want := bruteForced(cands, na)
			slices.SortFunc(got, func(a, b [2]int) int { return a[0]*16 + a[1] - b[0]*16 - b[1] })
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d, round %d: forced %v, want %v (links %v)", limit, round, got, want, cands)
			}
			best, _ := bruteMatchings(cands, na)
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
