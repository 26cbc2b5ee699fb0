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
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// Aggregate is the content of one window slot.
type Aggregate struct {
	// Requests: inbound exchanges seen on eth0 (pairing.Counts.Edge).
	Requests uint64
	// Latencies of the requests measured individually.
	Edge, App, ProxyAdded, RequestPath, ResponsePath histogram.Histogram
	// Pairing counters over the slot (differences of the running totals).
	Counts pairing.Counts
	// CPU is on-CPU time per cgroup id.
	CPU    map[uint64]time.Duration
	Losses api.Losses
	// DecidedThrough is the latest Totals.DecidedThrough recorded.
	DecidedThrough time.Time
}

// NewAggregate returns an empty aggregate.
func NewAggregate() *Aggregate { return &Aggregate{CPU: map[uint64]time.Duration{}} }

// Merge adds o into a.
func (a *Aggregate) Merge(o *Aggregate) {
	a.Requests += o.Requests
	a.Edge.Merge(&o.Edge)
	a.App.Merge(&o.App)
	a.ProxyAdded.Merge(&o.ProxyAdded)
	a.RequestPath.Merge(&o.RequestPath)
	a.ResponsePath.Merge(&o.ResponsePath)
	a.Counts = addCounts(a.Counts, o.Counts)
	for id, d := range o.CPU {
		a.CPU[id] += d
	}
	a.Losses = addLosses(a.Losses, o.Losses)
	if o.DecidedThrough.After(a.DecidedThrough) {
		a.DecidedThrough = o.DecidedThrough
	}
}

// Reset empties a, keeping its memory.
func (a *Aggregate) Reset() {
	a.Requests = 0
	a.Edge.Reset()
	a.App.Reset()
	a.ProxyAdded.Reset()
	a.RequestPath.Reset()
	a.ResponsePath.Reset()
	a.Counts = pairing.Counts{}
	clear(a.CPU)
	a.Losses = api.Losses{}
	a.DecidedThrough = time.Time{}
}

// record adds one result's latencies.
func (a *Aggregate) record(r *pairing.Result) {
	a.Edge.Record(r.EdgeDuration)
	a.App.Record(r.AppDuration)
	a.ProxyAdded.Record(r.ProxyAdded)
	a.RequestPath.Record(r.RequestPath)
	a.ResponsePath.Record(r.ResponsePath)
}

// Totals are the running totals the agent holds; the recorder keeps the
// previous ones and stores the differences.
type Totals struct {
	Counts pairing.Counts
	CPU    map[uint64]time.Duration // nil: not sampled this time
	Losses api.Losses
	// DecidedThrough: every exchange that ended before it has been
	// decided (the pairing's cutoff, on the wall clock); zero if unknown.
	DecidedThrough time.Time
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
	losses := subLosses(t.Losses, r.last.Losses)
	r.rolling.Update(now, func(a *Aggregate) {
		for i := range results {
			a.record(&results[i])
		}
		a.Requests += counts.Edge
		a.Counts = addCounts(a.Counts, counts)
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
	r.last.Counts, r.last.Losses = t.Counts, t.Losses
	if t.CPU != nil {
		r.last.CPU = maps.Clone(t.CPU)
	}
}

// Context is what a snapshot needs besides the window's numbers.
type Context struct {
	Mesh          string
	ProxyDetected bool
	Notes         []string
	// Containers describes known cgroups (identity fields only).
	Containers map[uint64]api.ContainerCPU
}

// Snapshot builds the document for the window spec as of now.
func (r *Recorder) Snapshot(now time.Time, spec window.Spec, ctx Context) (api.Snapshot, error) {
	w, err := r.rolling.Snapshot(now, spec.Name)
	if err != nil {
		return api.Snapshot{}, err
	}
	a := w.Agg
	s := api.Snapshot{
		APIVersion:      api.APIVersion,
		Kind:            api.KindSnapshot,
		Window:          spec.Name,
		Start:           w.Start.UTC(),
		End:             w.End.UTC(),
		DurationSeconds: w.Covered.Seconds(),
		Mesh:            ctx.Mesh,
		ProxyDetected:   ctx.ProxyDetected,
		Notes:           ctx.Notes,
		Requests:        a.Requests,
		Measured:        a.Edge.Count(),
		Edge:            api.PercentilesOf(&a.Edge),
		App:             api.PercentilesOf(&a.App),
		ProxyAdded:      api.PercentilesOf(&a.ProxyAdded),
		RequestPath:     api.PercentilesOf(&a.RequestPath),
		ResponsePath:    api.PercentilesOf(&a.ResponsePath),
		Histograms: &api.Histograms{
			ProxyAdded:   sparse(&a.ProxyAdded),
			Edge:         sparse(&a.Edge),
			App:          sparse(&a.App),
			RequestPath:  sparse(&a.RequestPath),
			ResponsePath: sparse(&a.ResponsePath),
		},
		CPU: []api.ContainerCPU{},
		Pairing: api.Pairing{
			UnmatchedEdge:     a.Counts.UnmatchedEdge,
			UnmatchedApp:      a.Counts.UnmatchedApp,
			AmbiguousEdge:     a.Counts.AmbiguousEdge,
			AmbiguousApp:      a.Counts.AmbiguousApp,
			AmbiguousSettled:  a.Counts.AmbiguousSettled,
			PairedByRequestID: a.Counts.PairedByRequestID,
			Incomplete:        a.Counts.Incomplete,
			PredatesProbe:     a.Counts.Predates,
			Pipelined:         a.Counts.Pipelined,
			TLSHandshake:      a.Counts.TLSHandshake,
			Outbound:          a.Counts.Outbound,
		},
		Losses: a.Losses,
	}
	if !a.DecidedThrough.IsZero() {
		d := a.DecidedThrough.UTC()
		s.DecidedThrough = &d
	}
	if w.Covered > 0 {
		s.RPS = round2(float64(a.Requests) / w.Covered.Seconds())
	}
	// The mean over every request whose proxy time is known, alone or
	// only in total with other ambiguous ones.
	if n := a.ProxyAdded.Count() + a.Counts.AmbiguousSettled; n > 0 {
		total := a.ProxyAdded.Sum() + a.Counts.AmbiguousProxyAdded
		s.ProxyAddedMean = api.MeanOnly{Count: n, Mean: api.MillisUs(total / time.Duration(n))}
	}
	// Pairs are decided by time containment: requests that overlap on
	// several connections can be impossible to tell apart, and those that
	// can are rather the short ones. Say so when it matters.
	if a.Requests > 0 && a.Counts.AmbiguousEdge*10 > a.Requests {
		s.Notes = append(slices.Clone(s.Notes), fmt.Sprintf(
			"%.0f%% of requests overlapped too much to be paired individually: the percentiles describe the others (biased toward requests that did not overlap); proxyAddedMean covers the ambiguous ones too",
			100*float64(a.Counts.AmbiguousEdge)/float64(a.Requests)))
	}
	switch {
	case a.Requests == 0 && a.Edge.Count() == 0:
		s.Status = api.StatusNoTraffic
	case !ctx.ProxyDetected:
		s.Status = api.StatusNoProxy
	case a.Edge.Count() == 0 && a.Counts.AmbiguousSettled > 0:
		s.Status = api.StatusMeanOnly
	default:
		s.Status = api.StatusOK
	}
	for id, d := range a.CPU {
		c := ctx.Containers[id]
		c.CgroupID = id
		if w.Covered > 0 {
			c.Millicores = round2(1000 * d.Seconds() / w.Covered.Seconds())
		}
		if a.Requests > 0 {
			c.CPUMsPer1000Requests = round2(1000 * api.Millis(d) / float64(a.Requests))
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
		Outbound: a.Outbound + b.Outbound,
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
		Outbound: a.Outbound - b.Outbound,
	}
}

func addLosses(a, b api.Losses) api.Losses {
	return api.Losses{
		RingBufferFull: a.RingBufferFull + b.RingBufferFull, DecodeErrors: a.DecodeErrors + b.DecodeErrors,
		Overload: a.Overload + b.Overload, IdleLate: a.IdleLate + b.IdleLate,
	}
}

func subLosses(a, b api.Losses) api.Losses {
	return api.Losses{
		RingBufferFull: a.RingBufferFull - b.RingBufferFull, DecodeErrors: a.DecodeErrors - b.DecodeErrors,
		Overload: a.Overload - b.Overload, IdleLate: a.IdleLate - b.IdleLate,
	}
}
