package pairing

import "math/bits"

// smallGroupLimit is the most edges, and the most apps, of a group that
// smallGraph decides; larger groups take matcher's list-based graphs. A
// variable so that tests can send every group down the list-based path.
var smallGroupLimit = 64

// smallGraph is a group's candidate graph as bit sets: per edge, a word of
// its candidate apps. Every step of the matching and of the search for
// forced links is then a few word operations, where the list-based graphs
// clear and fill several arrays per group. At maximum throughput about half
// of the exchanges are in groups this small (fortio's connections run in
// bursts, and long edges bridge the bursts into groups of hundreds); see
// docs/benchmarks.md for the distribution and what this saved.
type smallGraph struct {
	ne, na   int
	adj      [64]uint64 // per edge, its candidate apps
	edgeMate [64]int8   // per edge, its app in the matching, or -1
	appMate  [64]int8   // per app, its edge in the matching, or -1
	next     [64]uint64 // per edge, the edges one alternating step away (see forced)
}

// fits: a group of ne edges and na apps can be a smallGraph.
func fits(ne, na int) bool { return ne <= smallGroupLimit && na <= smallGroupLimit }

// build sets g to the links among unused nodes (of edgeCands), as
// candidateLinks does, and finds a maximum matching.
func (g *smallGraph) build(edgeCands [][]int, edges, apps []*node, strict bool) int {
	g.ne, g.na = len(edges), len(apps)
	for i, e := range edges {
		var row uint64
		if !e.used {
			for _, j := range edgeCands[i] {
				if apps[j].used || (strict && !causal(&e.x, &apps[j].x)) {
					continue
				}
				row |= 1 << j
			}
		}
		g.adj[i] = row
	}
	return g.match()
}

// match is Kuhn's augmenting-path algorithm after a greedy start, as
// matcher.maxMatching. It returns the matching's size.
func (g *smallGraph) match() int {
	var taken uint64 // matched apps
	for i := range g.ne {
		g.edgeMate[i] = -1
	}
	for j := range g.na {
		g.appMate[j] = -1
	}
	size := 0
	for i := range g.ne {
		if free := g.adj[i] &^ taken; free != 0 {
			j := bits.TrailingZeros64(free)
			g.edgeMate[i], g.appMate[j] = int8(j), int8(i)
			taken |= 1 << j
			size++
		}
	}
	for i := range g.ne {
		if g.edgeMate[i] < 0 && g.adj[i] != 0 {
			var visited uint64
			if g.augment(i, &visited) {
				size++
			}
		}
	}
	return size
}

// perfect: the matching covers every edge and every app that has a link,
// as matcher.perfect.
func (g *smallGraph) perfect() bool {
	var linked, matched uint64 // apps
	for i := range g.ne {
		if g.adj[i] == 0 {
			continue
		}
		if g.edgeMate[i] < 0 {
			return false
		}
		linked |= g.adj[i]
		matched |= 1 << g.edgeMate[i]
	}
	return linked&^matched == 0
}

// augment looks for an augmenting path from edge i through apps not yet
// visited in this search.
func (g *smallGraph) augment(i int, visited *uint64) bool {
	for cand := g.adj[i]; cand != 0; cand &= cand - 1 {
		j := bits.TrailingZeros64(cand)
		if *visited&(1<<j) != 0 {
			continue
		}
		*visited |= 1 << j
		if k := g.appMate[j]; k < 0 || g.augment(int(k), visited) {
			g.appMate[j], g.edgeMate[i] = int8(i), int8(j)
			return true
		}
	}
	return false
}

// forced appends to out the links of the matching that every maximum
// matching contains. The test of matcher.forcedPairs, on the graph of edges
// alone: edge i steps to edge k when i has a link outside the matching to
// the app matched with k (an alternating path's two links). The link of a
// matched edge i can be swapped out of a maximum matching exactly when
//   - i steps back to itself (an alternating cycle), or
//   - an unmatched edge steps to i (an even alternating path from it ends
//     with i's link), or
//   - i, or an edge it steps to, has a link to an unmatched app (an even
//     alternating path from i's link ends at that app).
//
// An unmatched edge links only matched apps (else the matching would not
// be maximum), so it steps wherever it has a link.
func (g *smallGraph) forced(out [][2]int) [][2]int {
	var freeApps, matchedApps uint64
	for j := range g.na {
		if g.appMate[j] < 0 {
			freeApps |= 1 << j
		} else {
			matchedApps |= 1 << j
		}
	}
	var toFree, fromFree uint64 // edges that link a free app; edges an unmatched edge steps to
	var unmatched uint64        // unmatched edges with links
	for i := range g.ne {
		var own uint64
		if m := g.edgeMate[i]; m >= 0 {
			own = 1 << m
		} else if g.adj[i] != 0 {
			unmatched |= 1 << i
		}
		var next uint64
		for cand := g.adj[i] &^ own & matchedApps; cand != 0; cand &= cand - 1 {
			next |= 1 << g.appMate[bits.TrailingZeros64(cand)]
		}
		g.next[i] = next
		if g.adj[i]&freeApps != 0 {
			toFree |= 1 << i
		}
	}
	fromFree = g.reach(unmatched)
	for i := range g.ne {
		j := g.edgeMate[i]
		if j < 0 || fromFree&(1<<i) != 0 {
			continue
		}
		after := g.reach(1 << i) // edges i steps to, in one step or more
		if after&(1<<i) != 0 || (after|1<<i)&toFree != 0 {
			continue
		}
		out = append(out, [2]int{i, int(j)})
	}
	return out
}

// reach returns the edges that the edges in from step to, in one step or
// more.
func (g *smallGraph) reach(from uint64) uint64 {
	var seen uint64
	frontier := from
	for frontier != 0 {
		var next uint64
		for f := frontier; f != 0; f &= f - 1 {
			next |= g.next[bits.TrailingZeros64(f)]
		}
		frontier = next &^ seen
		seen |= next
	}
	return seen
}
