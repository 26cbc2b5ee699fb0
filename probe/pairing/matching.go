package pairing

// matcher decides the groups that are more than one pair: maximum matchings
// of the candidate graph and the links that every maximum matching
// contains. Its arrays keep their memory from group to group: under
// concurrency many requests go through here, and allocating the graphs for
// every group was half of the probe's CPU at 10k requests per second.
// Nothing it returns is valid after its next call.
type matcher struct {
	edges, apps []*node // the group being solved
	local       []int   // the resolve's edge index -> index in the group
	// The group's candidate links: per edge its apps, per app its
	// edges, by index in the group.
	edgeCands, appCands [][]int

	adj      [][]int // per edge, its candidate apps
	out, in  [][]int // forcedPairs' oriented graph, and its reverse
	appMate  []int
	edgeMate []int
	matched  []bool
	seen     []int
	fromFree []bool
	toFree   []bool
	stack    []int
	forced   [][2]int
	small    smallGraph // the graph of a group of at most smallGroupLimit a side

	// Tarjan's strongly connected components
	index, low, comp []int
	onStack          []bool
	tarjan           []int
	next, label      int
}

// release drops the group's node pointers: they point into the arrays of
// the Pairer's queues, which a later insert may replace.
func (m *matcher) release() {
	clear(m.edges)
	clear(m.apps)
	m.edges, m.apps = m.edges[:0], m.apps[:0]
}

// trim drops arrays that a burst (a group or a drain of thousands of
// exchanges) grew beyond retain.
func (m *matcher) trim() {
	if cap(m.local) > retain {
		m.local = nil
	}
	if cap(m.out) > retain || cap(m.adj) > retain || cap(m.appMate) > retain ||
		cap(m.edgeCands) > retain || cap(m.appCands) > retain {
		*m = matcher{local: m.local}
	}
}

// lists returns l with n empty lists, keeping the arrays it had.
func lists(l [][]int, n int) [][]int {
	if cap(l) < n {
		l = append(l[:cap(l)], make([][]int, n-cap(l))...)
	}
	l = l[:n]
	for i := range l {
		l[i] = l[i][:0]
	}
	return l
}

// filled returns s with length n, every element v.
func filled(s []int, n, v int) []int {
	s = sized(s, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// forcedPairs returns the (edge, app) pairs among unused nodes that belong to
// every maximum matching of the candidate graph (the containment graph, or
// with strict the causal one). Take one maximum matching M and orient the
// graph: edge -> app along links outside M, app -> edge along M. A link of M
// can be swapped for another maximum matching exactly when it lies on an
// alternating cycle (both ends in one strongly connected component) or on an
// even alternating path from an unmatched node (its app reachable from an
// unmatched edge, or its edge reaching back from an unmatched app). The
// links of M that do neither are forced.
//
// perfect reports whether M covers every unused node that has a link: then
// the nodes left after the forced pairs can all still be paired at once
// (M without the forced pairs pairs them), which solve needs to know.
func (m *matcher) forcedPairs(edges, apps []*node, strict bool) (forced [][2]int, perfect bool) {
	if fits(len(edges), len(apps)) {
		m.small.build(m.edgeCands, edges, apps, strict)
		m.forced = m.small.forced(m.forced[:0])
		return m.forced, m.small.perfect()
	}
	adj := m.candidateLinks(edges, apps, strict)
	size, appMate := m.maxMatching(adj, len(apps))
	ne, n := len(edges), len(edges)+len(apps)
	m.edgeMate = filled(m.edgeMate, ne, -1)
	for j, i := range appMate {
		if i >= 0 {
			m.edgeMate[i] = j
		}
	}
	if m.perfect(adj, size) {
		return m.forcedInPerfect(adj), true
	}
	// Directed graph on ne+len(apps) vertices, and its reverse.
	m.out, m.in = lists(m.out, n), lists(m.in, n)
	for i, js := range adj {
		for _, j := range js {
			from, to := i, ne+j
			if m.edgeMate[i] == j {
				from, to = to, from
			}
			m.out[from] = append(m.out[from], to)
			m.in[to] = append(m.in[to], from)
		}
	}
	m.fromFree, m.toFree = sized(m.fromFree, n), sized(m.toFree, n)
	for i := range edges {
		if m.edgeMate[i] < 0 && len(adj[i]) > 0 {
			m.mark(m.out, i, m.fromFree)
		}
	}
	for j := range apps {
		if appMate[j] < 0 {
			m.mark(m.in, ne+j, m.toFree)
		}
	}
	comp := m.scc(m.out)
	m.forced = m.forced[:0]
	for i, j := range m.edgeMate {
		if j < 0 || m.fromFree[ne+j] || m.toFree[i] || comp[i] == comp[ne+j] {
			continue
		}
		m.forced = append(m.forced, [2]int{i, j})
	}
	return m.forced, false
}

// perfect: the matching of the given size covers every edge and every app
// that has a link in adj. Then no alternating path starts from an unmatched
// node, and only alternating cycles can free a link of the matching.
func (m *matcher) perfect(adj [][]int, size int) bool {
	linkedEdges := 0
	for _, js := range adj {
		if len(js) > 0 {
			linkedEdges++
		}
	}
	if size != linkedEdges {
		return false
	}
	// Every linked edge is matched; is every linked app? An app is linked
	// when some edge lists it, and matched when appMate says so.
	for _, js := range adj {
		for _, j := range js {
			if m.appMate[j] < 0 {
				return false
			}
		}
	}
	return true
}

// forcedInPerfect is forcedPairs when the matching is perfect on the linked
// nodes (see perfect), the usual case of a group of overlapping requests.
// A matched link (i, mate(i)) lies on an alternating cycle exactly when
// edge i lies on a cycle of the graph on edges alone where i -> k whenever
// i has a link to the app matched with k, other than its own: each such
// step is one link outside the matching and one along it. That graph has
// half the vertices of forcedPairs' general one, no reverse, and no
// searches from unmatched nodes; it has no self-loops, so the links whose
// edge is alone in its strongly connected component are the forced ones.
func (m *matcher) forcedInPerfect(adj [][]int) [][2]int {
	ne := len(adj)
	m.out = lists(m.out, ne)
	for i, js := range adj {
		for _, j := range js {
			if j != m.edgeMate[i] {
				m.out[i] = append(m.out[i], m.appMate[j])
			}
		}
	}
	comp := m.scc(m.out)
	// Component sizes, counted in the array Tarjan used for its stack
	// (empty again after scc).
	count := sized(m.tarjan[:0], m.label)
	for _, c := range comp {
		count[c]++
	}
	m.tarjan = count[:0]
	m.forced = m.forced[:0]
	for i, j := range m.edgeMate {
		if j >= 0 && count[comp[i]] == 1 {
			m.forced = append(m.forced, [2]int{i, j})
		}
	}
	return m.forced
}

// candidateLinks returns, per unused edge, its unused candidate apps (of
// edgeCands).
func (m *matcher) candidateLinks(edges, apps []*node, strict bool) [][]int {
	m.adj = lists(m.adj, len(edges))
	for i, e := range edges {
		if e.used {
			continue
		}
		for _, j := range m.edgeCands[i] {
			if apps[j].used || (strict && !causal(&e.x, &apps[j].x)) {
				continue
			}
			m.adj[i] = append(m.adj[i], j)
		}
	}
	return m.adj
}

// mark sets seen on every vertex reachable from v.
func (m *matcher) mark(g [][]int, v int, seen []bool) {
	stack := append(m.stack[:0], v)
	seen[v] = true
	for len(stack) > 0 {
		v = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, w := range g[v] {
			if !seen[w] {
				seen[w] = true
				stack = append(stack, w)
			}
		}
	}
	m.stack = stack
}

// scc labels the strongly connected components of g (Tarjan).
func (m *matcher) scc(g [][]int) []int {
	n := len(g)
	m.index, m.low, m.comp = filled(m.index, n, -1), sized(m.low, n), sized(m.comp, n)
	m.onStack, m.tarjan = sized(m.onStack, n), m.tarjan[:0]
	m.next, m.label = 0, 0
	for v := range g {
		if m.index[v] < 0 {
			m.visit(g, v)
		}
	}
	return m.comp
}

func (m *matcher) visit(g [][]int, v int) {
	m.index[v], m.low[v] = m.next, m.next
	m.next++
	m.tarjan = append(m.tarjan, v)
	m.onStack[v] = true
	for _, w := range g[v] {
		if m.index[w] < 0 {
			m.visit(g, w)
			m.low[v] = min(m.low[v], m.low[w])
		} else if m.onStack[w] {
			m.low[v] = min(m.low[v], m.index[w])
		}
	}
	if m.low[v] == m.index[v] {
		for {
			w := m.tarjan[len(m.tarjan)-1]
			m.tarjan = m.tarjan[:len(m.tarjan)-1]
			m.onStack[w] = false
			m.comp[w] = m.label
			if w == v {
				break
			}
		}
		m.label++
	}
}

// matchingSize is the size of a maximum matching of the links among unused
// nodes.
func (m *matcher) matchingSize(edges, apps []*node) int {
	if fits(len(edges), len(apps)) {
		return m.small.build(m.edgeCands, edges, apps, false)
	}
	size, _ := m.maxMatching(m.candidateLinks(edges, apps, false), len(apps))
	return size
}

// maxMatching is Kuhn's augmenting-path algorithm on the bipartite graph
// adj (edge -> apps), after a greedy start. It returns the matching size
// and, per app, its edge or -1.
func (m *matcher) maxMatching(adj [][]int, nApps int) (int, []int) {
	m.appMate = filled(m.appMate, nApps, -1)
	m.matched = sized(m.matched, len(adj))
	size := 0
	for i, js := range adj {
		for _, j := range js {
			if m.appMate[j] < 0 {
				m.appMate[j], m.matched[i] = i, true
				size++
				break
			}
		}
	}
	m.seen = sized(m.seen, nApps)
	for i := range adj {
		if !m.matched[i] && m.augment(adj, i, i+1) {
			size++
		}
	}
	return size, m.appMate
}

// augment looks for an augmenting path from edge i; stamp marks the apps
// visited in this search.
func (m *matcher) augment(adj [][]int, i, stamp int) bool {
	for _, j := range adj[i] {
		if m.seen[j] == stamp {
			continue
		}
		m.seen[j] = stamp
		if m.appMate[j] < 0 || m.augment(adj, m.appMate[j], stamp) {
			m.appMate[j] = i
			return true
		}
	}
	return false
}
