// Package recorder turns the pairing engine's output into rolling windows
// of latency histograms, counts and CPU time, and windows into snapshots.
// It knows nothing of the kernel: the agent feeds it.
package recorder

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// Traffic is one direction's requests in a slot.
type Traffic struct {
	// Requests: inbound, the exchanges seen on eth0 (pairing.Counts.Edge);
	// outbound, the application's calls (Counts.App + Counts.NoProxy).
	Requests uint64
	// Latencies of the requests measured individually (histograms stay
	// unallocated until used: a pod without outbound calls pays nothing).
	Edge, App, ProxyAdded, RequestPath, ResponsePath histogram.Histogram
	// Pairing counters over the slot (differences of the running totals).
	Counts pairing.Counts
}

func (t *Traffic) merge(o *Traffic) {
	t.Requests += o.Requests
	t.Edge.Merge(&o.Edge)
	t.App.Merge(&o.App)
	t.ProxyAdded.Merge(&o.ProxyAdded)
	t.RequestPath.Merge(&o.RequestPath)
	t.ResponsePath.Merge(&o.ResponsePath)
	t.Counts = addCounts(t.Counts, o.Counts)
}

func (t *Traffic) reset() {
	t.Requests = 0
	t.Edge.Reset()
	t.App.Reset()
	t.ProxyAdded.Reset()
	t.RequestPath.Reset()
	t.ResponsePath.Reset()
	t.Counts = pairing.Counts{}
}

// record adds one result's latencies.
func (t *Traffic) record(r *pairing.Result) {
	t.Edge.Record(r.EdgeDuration)
	t.App.Record(r.AppDuration)
	t.ProxyAdded.Record(r.ProxyAdded)
	t.RequestPath.Record(r.RequestPath)
	t.ResponsePath.Record(r.ResponsePath)
}

// Aggregate is the content of one window slot.
type Aggregate struct {
	// Traffic: the inbound requests.
	Traffic
	// Outbound: the pod's outgoing calls.
	Outbound Traffic
	// CPU is on-CPU time per cgroup id.
	CPU    map[uint64]time.Duration
	Losses api.Losses
	// DecidedThrough is the latest Totals.DecidedThrough recorded.
	DecidedThrough time.Time
	// NotOpen: time the sampling gate kept new requests from being
	// followed (Totals.NotOpen's growth).
	NotOpen time.Duration
	// Followed and Estimated: the growth of Totals.Followed and
	// Totals.Estimated.
	Followed  uint64
	Estimated float64
}

// NewAggregate returns an empty aggregate.
func NewAggregate() *Aggregate { return &Aggregate{CPU: map[uint64]time.Duration{}} }

// Merge adds o into a.
func (a *Aggregate) Merge(o *Aggregate) {
	a.Traffic.merge(&o.Traffic)
	a.Outbound.merge(&o.Outbound)
	for id, d := range o.CPU {
		a.CPU[id] += d
	}
	a.Losses = addLosses(a.Losses, o.Losses)
	a.NotOpen += o.NotOpen
	a.Followed += o.Followed
	a.Estimated += o.Estimated
	if o.DecidedThrough.After(a.DecidedThrough) {
		a.DecidedThrough = o.DecidedThrough
	}
}

// Reset empties a, keeping its memory.
func (a *Aggregate) Reset() {
	a.Traffic.reset()
	a.Outbound.reset()
	clear(a.CPU)
	a.Losses = api.Losses{}
	a.DecidedThrough = time.Time{}
	a.NotOpen = 0
	a.Followed, a.Estimated = 0, 0
}

// Totals are the running totals the agent holds; the recorder keeps the
// previous ones and stores the differences.
type Totals struct {
	// Counts of the inbound pairing, OutboundCounts of the outbound one.
	Counts, OutboundCounts pairing.Counts
	CPU                    map[uint64]time.Duration // nil: not sampled this time
	Losses                 api.Losses
	// DecidedThrough: every exchange that ended before it has been
	// decided (the pairing's cutoff, on the wall clock); zero if unknown.
	DecidedThrough time.Time
	// NotOpen: total time the sampling gate was not open
	// (sampler.Sampler.NotOpen).
	NotOpen time.Duration
	// Followed: the outer exchanges (inbound requests, outbound calls)
	// received; Estimated: how many exchanges they stand for
	// (sampler.Sampler.Estimated), Followed itself while nothing was
	// sampled.
	Followed  uint64
	Estimated float64
}

// Recorder is safe for concurrent use: the agent records, the HTTP server
// takes snapshots.
type Recorder struct {
	rolling *window.Rolling[*Aggregate]

	mu   sync.Mutex // guards last
	last Totals
}

// New starts recording at origin (the probe's start).
func New(origin time.Time) *Recorder {
	return &Recorder{
		rolling: window.New(origin, NewAggregate),
		last:    Totals{CPU: map[uint64]time.Duration{}},
	}
}

// Record stores decided results and the growth of the totals since the
// previous call, in the slot of now.
func (r *Recorder) Record(now time.Time, results []pairing.Result, t Totals) {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts := subCounts(t.Counts, r.last.Counts)
	out := subCounts(t.OutboundCounts, r.last.OutboundCounts)
	losses := subLosses(t.Losses, r.last.Losses)
	notOpen := max(t.NotOpen-r.last.NotOpen, 0)
	followed := t.Followed - min(r.last.Followed, t.Followed)
	estimated := max(t.Estimated-r.last.Estimated, 0)
	r.rolling.Update(now, func(a *Aggregate) {
		a.NotOpen += notOpen
		a.Followed += followed
		a.Estimated += estimated
		for i := range results {
			if results[i].Edge.Direction == exchange.Outbound {
				a.Outbound.record(&results[i])
			} else {
				a.record(&results[i])
			}
		}
		a.Requests += counts.Edge
		a.Counts = addCounts(a.Counts, counts)
		a.Outbound.Requests += out.App + out.NoProxy
		a.Outbound.Counts = addCounts(a.Outbound.Counts, out)
		a.Losses = addLosses(a.Losses, losses)
		if t.DecidedThrough.After(a.DecidedThrough) {
			a.DecidedThrough = t.DecidedThrough
		}
		for id, total := range t.CPU {
			// A cgroup's total only grows; a smaller one is a new
			// cgroup that reused the id (ids are inode numbers).
			prev := r.last.CPU[id]
			if total >= prev {
				a.CPU[id] += total - prev
			} else {
				a.CPU[id] += total
			}
		}
	})
	r.last.Counts, r.last.OutboundCounts, r.last.Losses = t.Counts, t.OutboundCounts, t.Losses
	r.last.NotOpen = max(t.NotOpen, r.last.NotOpen)
	r.last.Followed = max(t.Followed, r.last.Followed)
	r.last.Estimated = max(t.Estimated, r.last.Estimated)
	if t.CPU != nil {
		r.last.CPU = maps.Clone(t.CPU)
	}
}

// Context is what a snapshot needs besides the window's numbers.
type Context struct {
	Mesh          string
	ProxyDetected bool
	// Outbound: outgoing calls are measured (the snapshot has them);
	// OutboundProxyDetected: one of them was seen on lo.
	Outbound, OutboundProxyDetected bool
	Notes                           []string
	// Containers describes known cgroups (identity fields only).
	Containers map[uint64]api.ContainerCPU
	// SampleAboveRPS: the probe's sampling threshold (0: never).
	SampleAboveRPS float64
}

// Snapshot builds the document for the window spec as of now.
func (r *Recorder) Snapshot(now time.Time, spec window.Spec, ctx Context) (api.Snapshot, error) {
	w, err := r.rolling.Snapshot(now, spec.Name)
	if err != nil {
		return api.Snapshot{}, err
	}
	a := w.Agg
	// Rates are over the time requests were followed: all of the window
	// unless the sampling gate closed in it. Sampled, that time is the
	// window's times the share of its requests followed, which the
	// sampler estimates period by period; the time the gate was open
	// would count the quiet parts of a window, when it stays open, as
	// fully as a burst's open parts.
	followed := w.Covered
	var sampling *api.Sampling
	if a.NotOpen > 0 && w.Covered > 0 {
		share := 1 - a.NotOpen.Seconds()/w.Covered.Seconds() // no requests to tell by
		if a.Estimated > 0 {
			share = min(float64(a.Followed)/a.Estimated, 1)
		}
		followed = max(time.Duration(share*float64(w.Covered)), w.Covered/100)
		sampling = &api.Sampling{
			Fraction: math.Round(1000*followed.Seconds()/w.Covered.Seconds()) / 1000,
			AboveRPS: ctx.SampleAboveRPS,
		}
	}
	in := summarize(&a.Traffic, ctx.ProxyDetected, followed)
	s := api.Snapshot{
		APIVersion:      api.APIVersion,
		Kind:            api.KindSnapshot,
		Window:          spec.Name,
		Start:           w.Start.UTC(),
		End:             w.End.UTC(),
		DurationSeconds: w.Covered.Seconds(),
		Mesh:            ctx.Mesh,
		ProxyDetected:   ctx.ProxyDetected,
		Status:          in.Status,
		Notes:           ctx.Notes,
		Requests:        in.Requests,
		Measured:        in.Measured,
		RPS:             in.RPS,
		Edge:            in.Edge,
		App:             in.App,
		ProxyAdded:      in.ProxyAdded,
		RequestPath:     in.RequestPath,
		ResponsePath:    in.ResponsePath,
		ProxyAddedMean:  in.ProxyAddedMean,
		Histograms:      in.Histograms,
		CPU:             []api.ContainerCPU{},
		Pairing:         in.Pairing,
		Losses:          a.Losses,
		Sampling:        sampling,
	}
	if sampling != nil {
		s.Notes = append(slices.Clone(s.Notes), fmt.Sprintf(
			"above %g requests per second the probe follows requests during part of each period: about %.0f%% of this window's requests; requests and pairing counts are those followed, rps and CPU per 1000 requests estimates",
			ctx.SampleAboveRPS, 100*sampling.Fraction))
	}
	if !a.DecidedThrough.IsZero() {
		d := a.DecidedThrough.UTC()
		s.DecidedThrough = &d
	}
	// Pairs are decided by time containment: requests that overlap on
	// several connections can be impossible to tell apart, and those that
	// can are rather the short ones. Say so when it matters.
	if note := overlapNote(a.Requests, a.Counts.AmbiguousEdge, "requests"); note != "" {
		s.Notes = append(slices.Clone(s.Notes), note)
	}
	if ctx.Outbound {
		out := summarize(&a.Outbound, ctx.OutboundProxyDetected, followed)
		s.Outbound = &out
		if note := overlapNote(a.Outbound.Requests, a.Outbound.Counts.AmbiguousApp, "outbound calls"); note != "" {
			s.Notes = append(slices.Clone(s.Notes), note)
		}
	}
	for id, d := range a.CPU {
		c := ctx.Containers[id]
		c.CgroupID = id
		if w.Covered > 0 {
			c.Millicores = round2(1000 * d.Seconds() / w.Covered.Seconds())
		}
		if a.Requests > 0 {
			// The requests of the whole window, estimated when
			// sampled: the CPU is measured throughout.
			requests := float64(a.Requests) * w.Covered.Seconds() / followed.Seconds()
			c.CPUMsPer1000Requests = round2(1000 * api.Millis(d) / requests)
		}
		s.CPU = append(s.CPU, c)
	}
	sort.Slice(s.CPU, func(i, j int) bool {
		if s.CPU[i].Millicores != s.CPU[j].Millicores {
			return s.CPU[i].Millicores > s.CPU[j].Millicores
		}
		return s.CPU[i].CgroupID < s.CPU[j].CgroupID
	})
	return s, nil
}

// summarize is one direction's part of a snapshot.
func summarize(t *Traffic, proxy bool, covered time.Duration) api.Traffic {
	s := api.Traffic{
		ProxyDetected: proxy,
		Requests:      t.Requests,
		Measured:      t.Edge.Count(),
		Edge:          api.PercentilesOf(&t.Edge),
		App:           api.PercentilesOf(&t.App),
		ProxyAdded:    api.PercentilesOf(&t.ProxyAdded),
		RequestPath:   api.PercentilesOf(&t.RequestPath),
		ResponsePath:  api.PercentilesOf(&t.ResponsePath),
		Histograms: &api.Histograms{
			ProxyAdded:   sparse(&t.ProxyAdded),
			Edge:         sparse(&t.Edge),
			App:          sparse(&t.App),
			RequestPath:  sparse(&t.RequestPath),
			ResponsePath: sparse(&t.ResponsePath),
		},
		Pairing: api.Pairing{
			UnmatchedEdge:     t.Counts.UnmatchedEdge,
			UnmatchedApp:      t.Counts.UnmatchedApp,
			AmbiguousEdge:     t.Counts.AmbiguousEdge,
			AmbiguousApp:      t.Counts.AmbiguousApp,
			AmbiguousSettled:  t.Counts.AmbiguousSettled,
			PairedByRequestID: t.Counts.PairedByRequestID,
			Incomplete:        t.Counts.Incomplete,
			PredatesProbe:     t.Counts.Predates,
			Pipelined:         t.Counts.Pipelined,
			TLSHandshake:      t.Counts.TLSHandshake,
			Outbound:          t.Counts.Outbound,
			OutsideSample:     t.Counts.OutsideSample,
		},
	}
	if covered > 0 {
		s.RPS = round2(float64(t.Requests) / covered.Seconds())
	}
	// The mean over every request whose proxy time is known, alone or
	// only in total with other ambiguous ones.
	if n := t.ProxyAdded.Count() + t.Counts.AmbiguousSettled; n > 0 {
		total := t.ProxyAdded.Sum() + t.Counts.AmbiguousProxyAdded
		s.ProxyAddedMean = api.MeanOnly{Count: n, Mean: api.MillisUs(total / time.Duration(n))}
	}
	switch {
	case t.Requests == 0 && t.Edge.Count() == 0:
		s.Status = api.StatusNoTraffic
	case !proxy:
		s.Status = api.StatusNoProxy
	case t.Edge.Count() == 0 && t.Counts.AmbiguousSettled > 0:
		s.Status = api.StatusMeanOnly
	default:
		s.Status = api.StatusOK
	}
	return s
}

// overlapNote says, when over 10% of a direction's requests (named by
// what) could not be paired individually, that its percentiles describe
// the others. ambiguous counts the requests' own exchanges among them:
// inbound the eth0 ones, outbound the lo ones.
func overlapNote(requests, ambiguous uint64, what string) string {
	if requests == 0 || ambiguous*10 <= requests {
		return ""
	}
	return fmt.Sprintf("%.0f%% of %s overlapped too much to be paired individually: the percentiles describe the others (biased toward %s that did not overlap); proxyAddedMean covers the ambiguous ones too",
		100*float64(ambiguous)/float64(requests), what, what)
}

// sparse exports a histogram for the snapshot; nil when empty, to keep
// idle windows' documents small.
func sparse(h *histogram.Histogram) *histogram.Sparse {
	if h.Count() == 0 {
		return nil
	}
	s := h.Sparse()
	return &s
}

// round2 keeps two decimals.
func round2(f float64) float64 { return math.Round(f*100) / 100 }

func addCounts(a, b pairing.Counts) pairing.Counts {
	return pairing.Counts{
		Edge: a.Edge + b.Edge, App: a.App + b.App,
		Paired: a.Paired + b.Paired, PairedByRequestID: a.PairedByRequestID + b.PairedByRequestID,
		NoProxy:       a.NoProxy + b.NoProxy,
		UnmatchedEdge: a.UnmatchedEdge + b.UnmatchedEdge, UnmatchedApp: a.UnmatchedApp + b.UnmatchedApp,
		AmbiguousEdge: a.AmbiguousEdge + b.AmbiguousEdge, AmbiguousApp: a.AmbiguousApp + b.AmbiguousApp,
		AmbiguousSettled:    a.AmbiguousSettled + b.AmbiguousSettled,
		AmbiguousProxyAdded: a.AmbiguousProxyAdded + b.AmbiguousProxyAdded,
		Incomplete:          a.Incomplete + b.Incomplete, Predates: a.Predates + b.Predates,
		Pipelined: a.Pipelined + b.Pipelined, TLSHandshake: a.TLSHandshake + b.TLSHandshake,
		Outbound: a.Outbound + b.Outbound, OutsideSample: a.OutsideSample + b.OutsideSample,
	}
}

func subCounts(a, b pairing.Counts) pairing.Counts {
	return pairing.Counts{
		Edge: a.Edge - b.Edge, App: a.App - b.App,
		Paired: a.Paired - b.Paired, PairedByRequestID: a.PairedByRequestID - b.PairedByRequestID,
		NoProxy:       a.NoProxy - b.NoProxy,
		UnmatchedEdge: a.UnmatchedEdge - b.UnmatchedEdge, UnmatchedApp: a.UnmatchedApp - b.UnmatchedApp,
		AmbiguousEdge: a.AmbiguousEdge - b.AmbiguousEdge, AmbiguousApp: a.AmbiguousApp - b.AmbiguousApp,
		AmbiguousSettled:    a.AmbiguousSettled - b.AmbiguousSettled,
		AmbiguousProxyAdded: a.AmbiguousProxyAdded - b.AmbiguousProxyAdded,
		Incomplete:          a.Incomplete - b.Incomplete, Predates: a.Predates - b.Predates,
		Pipelined: a.Pipelined - b.Pipelined, TLSHandshake: a.TLSHandshake - b.TLSHandshake,
		Outbound: a.Outbound - b.Outbound, OutsideSample: a.OutsideSample - b.OutsideSample,
	}
}

func addLosses(a, b api.Losses) api.Losses {
	return api.Losses{
		RingBufferFull: a.RingBufferFull + b.RingBufferFull, DecodeErrors: a.DecodeErrors + b.DecodeErrors,
		Overload: a.Overload + b.Overload, IdleLate: a.IdleLate + b.IdleLate,
		SamplingCut: a.SamplingCut + b.SamplingCut,
	}
}

func subLosses(a, b api.Losses) api.Losses {
	return api.Losses{
		RingBufferFull: a.RingBufferFull - b.RingBufferFull, DecodeErrors: a.DecodeErrors - b.DecodeErrors,
		Overload: a.Overload - b.Overload, IdleLate: a.IdleLate - b.IdleLate,
		SamplingCut: a.SamplingCut - b.SamplingCut,
	}
}
