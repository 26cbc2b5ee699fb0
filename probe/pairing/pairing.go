// Package pairing matches the exchanges a pod's sidecar proxy handled on its
// two sides, and from each matched pair derives the time the proxy added.
//
// An inbound request crosses the pod twice: client -> proxy on eth0 (the
// edge leg, seen with the original service port) and proxy -> application
// on lo (the app leg). The edge exchange starts before and ends after the
// app exchange it caused, so an app exchange is a candidate partner of every
// edge exchange on the matching port that contains it in time. When both
// heads carry the same x-request-id that decides; otherwise a pair is
// reported only when every maximum matching of the containment graph
// contains it. Everything else is counted as ambiguous or unmatched, never
// dropped silently.
//
// For a pair:
//
//	proxy added   = edge duration - app duration
//	request path  = app request start - edge request start
//	response path = edge response end - app response end
//
// A pod whose lo never showed an app exchange has no proxy in the path: its
// edge exchanges are reported with Method NoProxy and zero proxy time.
//
// An outbound call is the mirror: the application's exchange with the proxy
// on lo is the outer one, the proxy's exchange with the upstream on eth0
// lies within it. A Pairer configured with Direction Outbound takes only
// outbound exchanges and swaps the roles; its Results still hold the eth0
// exchange in Edge and the lo one in App, with
//
//	proxy added   = app duration - edge duration
//	request path  = edge request start - app request start
//	response path = app response end - edge response end
//
// and, when lo never showed an outbound exchange, the eth0 ones are calls
// that bypass the proxy (NoProxy).
package pairing

import (
	"cmp"
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// Config tells the Pairer which ports correspond and how long to wait.
type Config struct {
	// PortMap maps an edge server port to the app server port the proxy
	// forwards it to. Ports not in the map forward to the same number,
	// which is what sidecar meshes do (the proxy connects to the
	// container port).
	PortMap map[uint16]uint16
	// AnyPort ignores ports when pairing (a pod whose forwarding is not
	// known; containment alone decides).
	AnyPort bool
	// Horizon is how long after an exchange ends its partner may still
	// arrive: the programs emit an exchange only when the next request on
	// its connection starts or the connection closes. Default 2s.
	Horizon time.Duration
	// Direction is the direction of the exchanges this Pairer takes:
	// Inbound (the zero value) or Outbound. Outbound pairs by time alone
	// (the application dials the proxy's port, the proxy the upstream's).
	Direction exchange.Direction
}

// Method says how a Result was obtained.
type Method int

const (
	// ByRequestID: both heads carried the same x-request-id.
	ByRequestID Method = iota + 1
	// ByContainment: the only possible partner in time.
	ByContainment
	// NoProxy: no app leg was ever seen in the pod; nothing sits between
	// the client and the application.
	NoProxy
)

func (m Method) String() string {
	switch m {
	case ByRequestID:
		return "request-id"
	case ByContainment:
		return "containment"
	case NoProxy:
		return "no-proxy"
	}
	return "unknown"
}

// Result is one edge exchange with its app partner. Results are valid
// until the Pairer's next Resolve or Drain, which reuses their memory.
type Result struct {
	Edge Exchange
	// App is the partner; zero for NoProxy.
	App    Exchange
	Method Method

	EdgeDuration time.Duration
	AppDuration  time.Duration
	// ProxyAdded = EdgeDuration - AppDuration = RequestPath + ResponsePath.
	ProxyAdded   time.Duration
	RequestPath  time.Duration
	ResponsePath time.Duration
}

// Exchange is what the Pairer keeps of an exchange.Event: its leg,
// direction, ports and times. Pairing and everything downstream of it need
// no more; the whole event (addresses, head) is four times the size and
// holds pointers. At ten thousand requests per second, copying events into
// pending nodes that had gone cold in the cache was the largest single
// cost of the probe's process (a seventh of its CPU), and the garbage
// collector scanned every pending node.
type Exchange struct {
	// CLOCK_MONOTONIC nanoseconds, as in exchange.Event.
	RequestStart, RequestEnd   uint64
	ResponseStart, ResponseEnd uint64
	ClientPort, ServerPort     uint16
	Leg                        exchange.Leg
	Direction                  exchange.Direction
}

func exchangeOf(ev *exchange.Event) Exchange {
	return Exchange{
		RequestStart: ev.RequestStart, RequestEnd: ev.RequestEnd,
		ResponseStart: ev.ResponseStart, ResponseEnd: ev.ResponseEnd,
		ClientPort: ev.Client.Port(), ServerPort: ev.Server.Port(),
		Leg: ev.Leg, Direction: ev.Direction,
	}
}

// Duration is first request byte to last response byte. The Pairer keeps
// only exchanges whose timing can be used (exchange.Event.Complete).
func (x *Exchange) Duration() time.Duration {
	return time.Duration(x.ResponseEnd - x.RequestStart)
}

// Counts account for every exchange given to the Pairer.
type Counts struct {
	Edge, App uint64 // exchanges received, by leg

	Paired            uint64 // results with an app partner
	PairedByRequestID uint64 // of which decided by x-request-id
	NoProxy           uint64 // edge exchanges of a pod without proxy

	UnmatchedEdge, UnmatchedApp uint64 // no possible partner
	AmbiguousEdge, AmbiguousApp uint64 // several possible partners

	// AmbiguousSettled counts the ambiguous edge exchanges that belong to
	// groups where every edge and app can be paired at once, and
	// AmbiguousProxyAdded is their total proxy time, which is the same
	// for every such pairing. So the mean proxy time over everything
	// measured is (sum of Result.ProxyAdded + AmbiguousProxyAdded) /
	// (Paired + AmbiguousSettled), even when single pairs are unknown.
	AmbiguousSettled    uint64
	AmbiguousProxyAdded time.Duration

	// Exchanges whose timing cannot be used, counted once each.
	Incomplete   uint64 // no request start or no response seen
	Predates     uint64 // connection first seen mid-stream
	Pipelined    uint64 // several HTTP/1.1 messages in one exchange
	TLSHandshake uint64 // an edge exchange that is a TLS handshake
	Outbound     uint64 // of another direction than the Pairer's: not paired by it (the name is older than outbound pairing)

	// OutsideSample counts the inner exchanges without a partner that
	// started while the sampling gate admitted inner exchanges only
	// (exchange.FlagGateInner): their outer exchange was not followed, by
	// design (probe/sampler), so they are not unmatched.
	OutsideSample uint64
}

// node is a pending exchange. Below, "edge" and "app" name the roles of
// inbound pairing: the outer exchange (edges) and the one inside it
// (apps). An outbound Pairer keeps its lo exchanges in edges and its eth0
// ones in apps; Counts and Results use the real legs.
// Nodes hold no pointers, so the garbage collector does not scan them, and
// fit a cache line.
type node struct {
	x Exchange
	// id is a hash of the x-request-id, 0 if none. Comparing hashes
	// instead of the IDs, two different IDs among a group's candidates
	// collide with a probability of about 2^-64.
	id   uint64
	used bool
	// gateInner: exchange.FlagGateInner, see Counts.OutsideSample.
	gateInner bool
}

// idSeed keys the request ID hashes of this process.
var idSeed = maphash.MakeSeed()

// requestID returns node.id for an exchange's head.
func requestID(head []byte) uint64 {
	id, ok := exchange.RequestIDBytes(head)
	if !ok {
		return 0
	}
	return max(maphash.Bytes(idSeed, id), 1)
}

// Pairer accumulates exchanges and resolves them once their partners can
// no longer arrive. It is not safe for concurrent use.
type Pairer struct {
	cfg       Config
	outbound  bool
	edges     queue // outer exchanges
	apps      queue // inner exchanges
	counts    Counts
	proxySeen bool

	// Working memory of resolve, reused: at thousands of requests per
	// second fresh arrays for every resolve were a third of the probe's
	// CPU.
	scratch scratch
	match   matcher
}

// scratch holds resolve's working arrays between calls.
type scratch struct {
	parent            []int
	end               []uint64
	slot              []int32
	links             linkTable
	active            []int
	groups            []group
	doneEdge, doneApp []bool
	results           []Result
	nonCausal         int // of the last resolve's links
}

// retain bounds what the Pairer keeps for reuse, in nodes or array
// elements: a burst (an early Drain of everything pending) should not pin
// its memory for the rest of the probe's life.
const retain = 1 << 14

// trim drops arrays that a burst grew beyond retain.
func (s *scratch) trim() {
	if cap(s.parent) > retain {
		*s = scratch{}
	}
	if cap(s.results) > retain {
		s.results = nil
	}
}

// sized returns s with length n and zero elements, reusing its array when
// it is large enough.
func sized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	s = s[:n]
	clear(s)
	return s
}

// New returns a Pairer.
func New(cfg Config) *Pairer {
	if cfg.Horizon <= 0 {
		cfg.Horizon = 2 * time.Second
	}
	if cfg.Direction == 0 {
		cfg.Direction = exchange.Inbound
	}
	p := &Pairer{cfg: cfg, outbound: cfg.Direction == exchange.Outbound}
	if p.outbound {
		p.cfg.AnyPort = true
	}
	return p
}

// Add takes one exchange. Exchanges whose timing cannot be used are
// counted at once; the others wait for Resolve.
func (p *Pairer) Add(ev exchange.Event) {
	if ev.Direction != p.cfg.Direction {
		p.counts.Outbound++
		return
	}
	onEth0 := ev.Leg == exchange.LegEdge
	if onEth0 {
		p.counts.Edge++
	} else {
		p.counts.App++
		// Any app-leg traffic, usable or not, proves a proxy forwards
		// over lo.
		p.proxySeen = true
	}
	isEdge := onEth0 != p.outbound // the outer exchange
	switch {
	case ev.Flags&exchange.FlagPredatesProbe != 0:
		p.counts.Predates++
		return
	case !ev.Complete():
		p.counts.Incomplete++
		return
	case ev.Flags&exchange.FlagPipelined != 0:
		p.counts.Pipelined++
		return
	case onEth0 && exchange.IsTLSHandshake(ev.Head):
		p.counts.TLSHandshake++
		return
	}
	// The head may be the reader's buffer, reused by its next Read: only
	// the request ID read from it is kept.
	n := node{x: exchangeOf(&ev), id: requestID(ev.Head), gateInner: ev.Flags&exchange.FlagGateInner != 0}
	if isEdge {
		p.edges.insert(&n)
	} else {
		p.apps.insert(&n)
	}
}

// ProxyDetected reports whether any app-leg exchange was seen.
func (p *Pairer) ProxyDetected() bool { return p.proxySeen }

// Counts returns the running totals.
func (p *Pairer) Counts() Counts { return p.counts }

// Pending returns how many exchanges wait for Resolve.
func (p *Pairer) Pending() (edges, apps int) { return p.edges.len(), p.apps.len() }

// Resolve decides every group of exchanges that ended at least Horizon
// before now (CLOCK_MONOTONIC ns, see Now) and returns the results in edge
// start order. Groups still within the horizon wait.
func (p *Pairer) Resolve(now uint64) []Result {
	horizon := uint64(p.cfg.Horizon)
	if now < horizon {
		return nil
	}
	return p.resolve(now - horizon)
}

// Drain decides everything pending, as if the horizon had passed.
func (p *Pairer) Drain() []Result {
	return p.resolve(math.MaxUint64)
}

func (p *Pairer) portMatches(edge, app *Exchange) bool {
	if p.cfg.AnyPort {
		return true
	}
	want := edge.ServerPort
	if mapped, ok := p.cfg.PortMap[want]; ok {
		want = mapped
	}
	return app.ServerPort == want
}

// contains: the app exchange lies within the edge exchange.
func contains(edge, app *Exchange) bool {
	return edge.RequestStart <= app.RequestStart && app.ResponseEnd <= edge.ResponseEnd
}

// causal: also the inner bounds a proxy cannot break for one request: it
// cannot finish forwarding the request before receiving all of it, nor
// start the response before the application did. Used only to break ties:
// TLS records the proxy sends on its own (session tickets) can precede the
// response on the edge leg.
func causal(edge, app *Exchange) bool {
	return contains(edge, app) && causalBounds(edge, app)
}

// causalBounds: the inner bounds of causal alone.
func causalBounds(edge, app *Exchange) bool {
	return edge.RequestEnd <= app.RequestEnd && app.ResponseStart <= edge.ResponseStart
}

func (p *Pairer) resolve(cutoff uint64) []Result {
	// Only exchanges that started by the cutoff can belong to a group
	// that ended by it, and they form a prefix of each pending list (kept
	// sorted by start, see queue). Leaving the rest out changes
	// no decision: an exchange that started after the cutoff ended after
	// it, and so did every exchange it can be linked with (an edge
	// contains its app partner, so that partner started after the cutoff
	// too, and an app's partner edge ends after the app). So a group of
	// the prefix whose members all ended by the cutoff is a whole group.
	// At a high request rate most pending exchanges are still within the
	// horizon: scanning only the prefix does a fraction of the work.
	// The previous Results are no longer valid: their arrays can be
	// reused.
	p.scratch.trim()
	p.match.trim()
	s := &p.scratch
	edges, apps := p.edges.pending(), p.apps.pending()
	ne := sort.Search(len(edges), func(i int) bool { return edges[i].x.RequestStart > cutoff })
	na := sort.Search(len(apps), func(i int) bool { return apps[i].x.RequestStart > cutoff })
	if ne+na == 0 {
		return nil
	}
	edges, apps = edges[:ne], apps[:na]
	// Union-find over edges [0,ne) and apps [ne,ne+na).
	parent := sized(s.parent, ne+na)
	s.parent = parent
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	// Candidates, in one sweep: apps and edges are both sorted by
	// request start, so walking the apps in order, the edges that started
	// by the app's start join an active list, and an edge leaves it once
	// it ended before the app started (it cannot contain this app, nor any
	// later one). The active edges are those in flight at the app's start:
	// about as many as the connections. Before, each app binary-searched
	// the edges (cold cache lines, one per step, at ten thousand requests
	// per second) and scanned every edge that started within the longest
	// edge's duration before it.
	links := linkTable{start: sized(s.links.start, na+1), flat: s.links.flat[:0]}
	active := s.active[:0] // edge indices, ascending
	next := 0
	nonCausal := 0 // links that hold by containment but not by the causal bounds
	for ai := range apps {
		a := &apps[ai]
		links.start[ai] = len(links.flat)
		for next < ne && edges[next].x.RequestStart <= a.x.RequestStart {
			active = append(active, next)
			next++
		}
		kept := active[:0]
		for _, ei := range active {
			e := &edges[ei].x
			if e.ResponseEnd < a.x.RequestStart {
				continue
			}
			kept = append(kept, ei)
			if contains(e, &a.x) && p.portMatches(e, &a.x) {
				links.flat = append(links.flat, ei)
				if !causalBounds(e, &a.x) {
					nonCausal++
				}
				if ra, re := find(ne+ai), find(ei); ra != re {
					parent[ra] = re
				}
			}
		}
		active = kept
	}
	s.active = active
	links.start[na] = len(links.flat)
	s.links = links
	s.nonCausal = nonCausal
	// Every node's root, once: the loops below read it from parent.
	for i := range parent {
		parent[i] = find(i)
	}

	// Each group's latest end, by root. Only groups past the cutoff are
	// decided, so only their members are gathered.
	end := sized(s.end, ne+na)
	s.end = end
	for ei := range edges {
		r := parent[ei]
		end[r] = max(end[r], edges[ei].x.ResponseEnd)
	}
	for ai := range apps {
		r := parent[ne+ai]
		end[r] = max(end[r], apps[ai].x.ResponseEnd)
	}
	slot := sized(s.slot, ne+na) // root -> 1 + index in groups
	s.slot = slot
	// Most groups are one request (an edge and its app): sized for that,
	// the appends below rarely grow. A group reused from the last resolve
	// keeps its member arrays.
	if cap(s.groups) < ne {
		s.groups = make([]group, 0, ne)
	}
	groups := s.groups[:0]
	get := func(root int) *group {
		if slot[root] == 0 {
			if len(groups) < cap(groups) {
				groups = groups[:len(groups)+1]
				g := &groups[len(groups)-1]
				g.edges, g.apps, g.end = g.edges[:0], g.apps[:0], end[root]
			} else {
				groups = append(groups, group{end: end[root]})
			}
			slot[root] = int32(len(groups))
		}
		return &groups[slot[root]-1]
	}
	for ei := range edges {
		if r := parent[ei]; end[r] <= cutoff {
			g := get(r)
			g.edges = append(g.edges, ei)
		}
	}
	for ai := range apps {
		if r := parent[ne+ai]; end[r] <= cutoff {
			g := get(r)
			g.apps = append(g.apps, ai)
		}
	}

	// At most one result per edge: sized once, rather than grown (and
	// copied, at a few hundred bytes a result) append by append.
	if cap(s.results) < ne {
		s.results = make([]Result, 0, ne)
	}
	results := s.results[:0]
	doneEdge, doneApp := sized(s.doneEdge, ne), sized(s.doneApp, na)
	s.doneEdge, s.doneApp = doneEdge, doneApp
	p.match.local = sized(p.match.local, ne)
	for i := range groups {
		g := &groups[i]
		results = p.solve(results, g, &links, edges, apps)
		for _, ei := range g.edges {
			doneEdge[ei] = true
		}
		for _, ai := range g.apps {
			doneApp[ai] = true
		}
	}
	s.groups = groups
	p.edges.cut(doneEdge)
	p.apps.cut(doneApp)
	slices.SortFunc(results, func(a, b Result) int {
		return cmp.Compare(a.Edge.RequestStart, b.Edge.RequestStart)
	})
	s.results = results
	return results
}

type group struct {
	edges, apps []int
	end         uint64
}

// linkTable holds each app's candidate edges: those of app ai are
// flat[start[ai]:start[ai+1]].
type linkTable struct {
	start, flat []int
}

func (t *linkTable) of(ai int) []int { return t.flat[t.start[ai]:t.start[ai+1]] }

// solve decides one connected group of candidates, appending to results.
// The group's indexes point into pendingEdges and pendingApps, the parts
// of the queues that the resolve looked at.
func (p *Pairer) solve(results []Result, g *group, links *linkTable, pendingEdges, pendingApps []node) []Result {
	// Most groups are one request: one edge and one app exchange, each
	// the other's only candidate. That pair is the only maximum matching,
	// so it is forced; the general machinery below would decide the same
	// after building its graphs, which at thousands of requests per
	// second costs more than everything else the probe does.
	if len(g.edges) == 1 && len(g.apps) == 1 && len(links.of(g.apps[0])) == 1 {
		e, a := &pendingEdges[g.edges[0]], &pendingApps[g.apps[0]]
		m := ByContainment
		if e.id != 0 && e.id == a.id {
			m = ByRequestID
		}
		p.counts.Paired++
		if m == ByRequestID {
			p.counts.PairedByRequestID++
		}
		return append(results, p.paired(e, a, m))
	}
	// The group's nodes, numbered from 0 on each side; their candidate
	// lists and the arrays below keep their memory from group to group.
	mt := &p.match
	defer mt.release()
	edges := mt.edges[:0]
	for i, ei := range g.edges {
		n := &pendingEdges[ei]
		n.used = false
		edges = append(edges, n)
		mt.local[ei] = i
	}
	edgeCands := lists(mt.edgeCands, len(g.edges))
	appCands := lists(mt.appCands, len(g.apps))
	apps := mt.apps[:0]
	for j, ai := range g.apps {
		n := &pendingApps[ai]
		n.used = false
		for _, ei := range links.of(ai) {
			i := mt.local[ei]
			appCands[j] = append(appCands[j], i)
			edgeCands[i] = append(edgeCands[i], j)
		}
		apps = append(apps, n)
	}
	mt.edges, mt.apps = edges, apps
	mt.edgeCands, mt.appCands = edgeCands, appCands

	if !p.proxySeen {
		// No proxy: the eth0 exchanges are the requests themselves
		// (inbound, the outer ones; outbound, calls that never met a
		// proxy on lo, the inner ones).
		// Without a proxy no lo exchange was ever added, so the group
		// is only those.
		bypass := edges
		if p.outbound {
			bypass = apps
		}
		for _, e := range bypass {
			results = append(results, noProxy(e.x))
			p.counts.NoProxy++
		}
		return results
	}

	pair := func(i, j int, m Method) {
		edges[i].used, apps[j].used = true, true
		results = append(results, p.paired(edges[i], apps[j], m))
		p.counts.Paired++
		if m == ByRequestID {
			p.counts.PairedByRequestID++
		}
	}

	if len(apps) == 0 || len(edges) == 0 {
		// Nothing to pair with (and a proxy was seen, see above).
		p.unmatched(true, len(edges))
		for _, a := range apps {
			p.unmatchedInner(a)
		}
		return results
	}

	// 1. x-request-id, when it names exactly one candidate on each side.
	for i, e := range edges {
		if e.id == 0 {
			continue
		}
		match := -1
		for _, j := range edgeCands[i] {
			if apps[j].id == e.id {
				if match >= 0 {
					match = -2
					break
				}
				match = j
			}
		}
		if match >= 0 && uniqueID(e.id, appCands[match], edges) {
			pair(i, match, ByRequestID)
		}
	}

	// 2. Forced pairs: in every maximum matching of the containment
	// graph; then the same on the stricter causal graph for what is left.
	// The second pass only when some link between free nodes is not
	// causal: otherwise its graph is the first pass's graph without the
	// forced pairs' nodes, whose maximum matchings are those of the first
	// graph without the forced pairs, so it forces nothing new. With
	// requests and responses of one packet each, containment implies the
	// causal bounds and the second pass never runs; before, it ran for
	// every group left with ambiguous members (at maximum throughput nine
	// requests in ten), at the cost of the first.
	// settled: the first pass's maximum matching covered every free node
	// with a link, so what it left can all be paired at once (below).
	settled := false
	for _, strict := range []bool{false, true} {
		if strict {
			if p.scratch.nonCausal == 0 || !anyNonCausalLink(edges, apps, edgeCands) {
				break
			}
			settled = false // the causal graph may leave out linked nodes
		}
		forced, perfect := mt.forcedPairs(edges, apps, strict)
		if !strict {
			settled = perfect
		}
		for _, f := range forced {
			pair(f[0], f[1], ByContainment)
		}
	}

	// 3. The rest: ambiguous if a partner was possible, else unmatched.
	var ambEdges, ambApps int
	var edgeSum, appSum time.Duration
	for i, e := range edges {
		if e.used {
			continue
		}
		if hasFree(edgeCands[i], apps) {
			p.ambiguous(true)
			ambEdges++
			edgeSum += e.x.Duration()
		} else {
			p.unmatched(true, 1)
		}
	}
	for j, a := range apps {
		if a.used {
			continue
		}
		if hasFree(appCands[j], edges) {
			p.ambiguous(false)
			ambApps++
			appSum += a.x.Duration()
		} else {
			p.unmatchedInner(a)
		}
	}
	// Which ambiguous edge goes with which app is unknown, but if they
	// can all be paired at once, every such pairing adds up to the same
	// total proxy time: the sum of the outer durations minus the sum of
	// the inner ones. That keeps the mean exact under heavy concurrency.
	// When the forced pairs came from a perfect matching, the rest of
	// that matching pairs them; else a matching of what is left decides.
	if ambEdges > 0 && ambEdges == ambApps {
		if settled || mt.matchingSize(edges, apps) == ambEdges {
			p.counts.AmbiguousSettled += uint64(ambEdges)
			p.counts.AmbiguousProxyAdded += edgeSum - appSum
		}
	}
	return results
}

// unmatched counts n exchanges without a possible partner, by their leg.
func (p *Pairer) unmatched(outer bool, n int) {
	if outer != p.outbound {
		p.counts.UnmatchedEdge += uint64(n)
	} else {
		p.counts.UnmatchedApp += uint64(n)
	}
}

// unmatchedInner counts an inner exchange without a possible partner:
// unmatched, unless the sampling gate kept its outer exchange from being
// followed.
func (p *Pairer) unmatchedInner(a *node) {
	if a.gateInner {
		p.counts.OutsideSample++
		return
	}
	p.unmatched(false, 1)
}

// ambiguous counts one exchange with several possible partners, by its leg.
func (p *Pairer) ambiguous(outer bool) {
	if outer != p.outbound {
		p.counts.AmbiguousEdge++
	} else {
		p.counts.AmbiguousApp++
	}
}

// uniqueID: exactly one of an app's candidate edges carries its ID.
func uniqueID(id uint64, cands []int, edges []*node) bool {
	n := 0
	for _, i := range cands {
		if edges[i].id == id {
			n++
		}
	}
	return n == 1
}

// anyNonCausalLink: some unused edge has an unused candidate that it does
// not hold by the causal bounds (candidates are contained already).
func anyNonCausalLink(edges, apps []*node, edgeCands [][]int) bool {
	for i, e := range edges {
		if e.used {
			continue
		}
		for _, j := range edgeCands[i] {
			if a := apps[j]; !a.used && !causalBounds(&e.x, &a.x) {
				return true
			}
		}
	}
	return false
}

func hasFree(cands []int, other []*node) bool {
	for _, k := range cands {
		if !other[k].used {
			return true
		}
	}
	return false
}

// paired makes the Result of an outer exchange and the inner one the proxy
// caused: the time between their starts and between their ends is the
// proxy's.
func (p *Pairer) paired(outerNode, innerNode *node, m Method) Result {
	outer, inner := &outerNode.x, &innerNode.x
	edge, app := outer, inner
	if p.outbound {
		edge, app = inner, outer
	}
	r := Result{
		Edge:         *edge,
		App:          *app,
		Method:       m,
		EdgeDuration: edge.Duration(),
		AppDuration:  app.Duration(),
		RequestPath:  time.Duration(inner.RequestStart - outer.RequestStart),
		ResponsePath: time.Duration(outer.ResponseEnd - inner.ResponseEnd),
	}
	r.ProxyAdded = r.RequestPath + r.ResponsePath
	return r
}

func noProxy(edge Exchange) Result {
	d := edge.Duration()
	return Result{Edge: edge, Method: NoProxy, EdgeDuration: d, AppDuration: d}
}
