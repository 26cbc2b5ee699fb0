package pairing

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// forcedPairs against brute force: on random small candidate graphs, the
// links it returns are exactly those in every maximum matching. One
// matcher serves every graph, as in a Pairer, so reused arrays that kept
// something of an earlier graph would show.
func TestForcedPairsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var m matcher
	for round := 0; round < 3000; round++ {
		ne, na := 1+rng.IntN(6), 1+rng.IntN(6)
		edges, apps := make([]*node, ne), make([]*node, na)
		for i := range edges {
			edges[i] = &node{}
		}
		for j := range apps {
			apps[j] = &node{}
		}
		m.edgeCands, m.appCands = lists(m.edgeCands, ne), lists(m.appCands, na)
		for i := range edges {
			for j := range apps {
				if rng.IntN(3) == 0 {
					m.edgeCands[i] = append(m.edgeCands[i], j)
					m.appCands[j] = append(m.appCands[j], i)
				}
			}
		}
		cands := slices.Clone(m.edgeCands)
		got := slices.Clone(m.forcedPairs(edges, apps, false))
		want := bruteForced(cands, na)
		slices.SortFunc(got, func(a, b [2]int) int { return a[0]*16 + a[1] - b[0]*16 - b[1] })
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: forced %v, want %v (links %v)", round, got, want, cands)
		}
		size, _ := m.maxMatching(m.candidateLinks(edges, apps, false), na)
		if best, _ := bruteMatchings(cands, na); size != best {
			t.Fatalf("round %d: maximum matching %d, want %d", round, size, best)
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
	const conns = 8
	p := New(Config{Horizon: time.Second})
	rng := rand.New(rand.NewPCG(1, 2))
	var next [conns]uint64 // when each connection sends its next request
	for c := range next {
		next[c] = uint64(c) * 100 * us
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
		in := 50*us + uint64(rng.IntN(50))*us
		dur := 600*us + uint64(rng.IntN(400))*us
		p.Add(appEv(8080, 50000+uint16(c), at+in, at+in+10*us, at+dur-in-10*us, at+dur-in))
		p.Add(edgeEv(8080, 40000+uint16(c), at, at+5*us, at+dur-5*us, at+dur))
		next[c] = at + dur + 20*us
		if at-lastResolve >= 100*ms { // the agent's resolve interval
			p.Resolve(base + at)
			lastResolve = at
		}
	}
	p.Drain()
	cn := p.Counts()
	b.ReportMetric(float64(cn.AmbiguousEdge)/float64(max(cn.Edge, 1)), "ambiguous/request")
}
