package probes

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// NoProxyContainer is PodOverhead.ProxyContainer for a pod without a proxy: the field is
// required, and no name would be true.
const NoProxyContainer = "none"

// Latency series, in the order they are kept per namespace.
const (
	seriesProxyAdded = iota
	seriesRequestPath
	seriesResponsePath
	seriesEdge
	seriesApp
	numSeries
)

// Report builds the companion OverheadReport: one PodOverhead per probed pod (ProxyContainer
// from the snapshot/pod: istio-proxy, linkerd-proxy, or the container the probe names; Probe
// health ok/degraded/failed from Err, snapshot status, losses), one NamespaceOverhead per
// namespace with percentiles from merged histograms, sums of counts, CPU summed. It passes
// (*smps.OverheadReport).Validate when start <= end are set, runID is not empty and the pods
// come from the API server (valid names).
//
// Figures, per pod with a snapshot:
//   - Requests are the requests whose proxy time is known: paired one by one (the
//     percentiles' population) plus ambiguous ones settled in total (see api.Pairing); RPS is
//     Requests over the snapshot's duration.
//   - Unmatched counts exchanges seen at one vantage point without a partner, plus those
//     whose partner could not be told apart (ambiguous, not settled).
//   - Proxy CPU is the probe's "proxy" cgroups; per 1000 requests it is
//     millicores × duration / Requests × 1000.
//   - A pod where the probe saw no proxy has no proxy-added, request/response path, app or
//     proxy CPU figures, and a Note saying the overhead is none.
//
// Per namespace: counts and RPS are sums over its pod entries; latency percentiles are over the
// merged histograms of its pods (proxy-related series over the pods with a proxy), absent when
// a pod's snapshot lacks a histogram (an older probe) since pod percentiles cannot be merged;
// proxy CPU is summed, absent when a pod with a proxy has no CPU figure.
func Report(runID string, start, end time.Time, snaps []PodSnapshot) *smps.OverheadReport {
	return report(runID, start, end, nil, snaps)
}

// ReportRun is Report for a measurement run over [runStart, runEnd]: a probe is judged by
// whether its window covers the run, not whether it has run for the whole window (a probe
// started a minute before a 20 s run measured all of it).
func ReportRun(runID string, start, end, runStart, runEnd time.Time, snaps []PodSnapshot) *smps.OverheadReport {
	return report(runID, start, end, &[2]time.Time{runStart, runEnd}, snaps)
}

// report builds the report; run, when set, is the interval every snapshot must cover.
func report(runID string, start, end time.Time, run *[2]time.Time, snaps []PodSnapshot) *smps.OverheadReport {
	r := smps.NewOverheadReport(runID, start, end)
	aggs := map[string]*nsAggregate{}
	seen := map[string]bool{}
	for i := range snaps {
		ps := &snaps[i]
		if !ps.Probed || ps.Pod == nil {
			continue
		}
		key := ps.Pod.Namespace + "/" + ps.Pod.Name
		if seen[key] {
			continue // the same pod twice would make the report invalid
		}
		seen[key] = true
		po, data := podOverhead(ps, run)
		r.Pods = append(r.Pods, po)
		a := aggs[po.Namespace]
		if a == nil {
			a = &nsAggregate{}
			aggs[po.Namespace] = a
		}
		a.add(&po, data)
	}
	names := make([]string, 0, len(aggs))
	for ns := range aggs {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range names {
		r.Namespaces = append(r.Namespaces, aggs[ns].overhead(ns))
	}
	return r
}

// podData is what a pod contributes to its namespace besides its PodOverhead.
type podData struct {
	valid bool // a snapshot that checks out
	// dirData: the inbound requests; out the outbound calls (nil: not measured).
	dirData
	out *dirData
	// cpuMs is proxy CPU time over the part of the pod's window its requests were followed
	// in (all of it unless sampled), CPU ms; cpuKnown whether there is one.
	cpuMs    float64
	cpuKnown bool
}

// dirData is what one direction of a pod contributes.
type dirData struct {
	proxy bool // the probe saw a proxy in this direction
	// hists are the series' histograms (nil: none or empty); missing marks a series with
	// values but no histogram (a probe predating them).
	hists   [numSeries]*histogram.Histogram
	missing [numSeries]bool
}

// trafficStats are one direction's figures: the counts, the latency series (the proxy's only
// where it saw a proxy) and their histograms for the namespace.
func trafficStats(t *api.Traffic, seconds float64) (smps.OverheadStats, dirData) {
	var s smps.OverheadStats
	d := dirData{proxy: t.ProxyDetected}
	s.Requests = saturatingAdd(clampInt(t.Measured), clampInt(t.Pairing.AmbiguousSettled))
	if seconds > 0 {
		s.RPS = round3(float64(s.Requests) / seconds)
	}
	p := t.Pairing
	s.Unmatched = smps.UnmatchedCounts{
		Edge: saturatingAdd(clampInt(p.UnmatchedEdge), clampInt(subFloor(p.AmbiguousEdge, p.AmbiguousSettled))),
		App:  saturatingAdd(clampInt(p.UnmatchedApp), clampInt(subFloor(p.AmbiguousApp, p.AmbiguousSettled))),
	}
	pcts := [numSeries]*api.Percentiles{&t.ProxyAdded, &t.RequestPath, &t.ResponsePath, &t.Edge, &t.App}
	var sparse [numSeries]*histogram.Sparse
	if h := t.Histograms; h != nil {
		sparse = [numSeries]*histogram.Sparse{h.ProxyAdded, h.RequestPath, h.ResponsePath, h.Edge, h.App}
	}
	for i := range numSeries {
		if sparse[i] != nil {
			// checkSnapshot validated it.
			d.hists[i], _ = histogram.FromSparse(*sparse[i])
		} else if pcts[i].Count > 0 {
			d.missing[i] = true
		}
	}
	if t.Edge.Count > 0 {
		s.EdgeMs = percentilesMs(&t.Edge)
	}
	if t.ProxyDetected {
		if s.Requests > 0 && t.ProxyAdded.Count > 0 {
			s.ProxyAddedLatencyMs = tailMs(&t.ProxyAdded)
		}
		if s.Requests > 0 && t.RequestPath.Count > 0 {
			s.RequestPathMs = percentilesMs(&t.RequestPath)
		}
		if s.Requests > 0 && t.ResponsePath.Count > 0 {
			s.ResponsePathMs = percentilesMs(&t.ResponsePath)
		}
		if t.App.Count > 0 {
			s.AppMs = percentilesMs(&t.App)
		}
	}
	return s, d
}

func podOverhead(ps *PodSnapshot, run *[2]time.Time) (smps.PodOverhead, podData) {
	pod := ps.Pod
	po := smps.PodOverhead{Namespace: pod.Namespace, Name: pod.Name}
	var data podData
	snap := ps.Snapshot
	var err error
	switch {
	case ps.Err != nil:
		err = ps.Err
	case snap == nil:
		err = fmt.Errorf("%w: no snapshot", ErrBadAnswer)
	default:
		if cerr := checkSnapshot(snap); cerr != nil {
			err = fmt.Errorf("%w: %s", ErrBadAnswer, cerr)
		}
	}
	if err != nil {
		po.ProxyContainer = proxyContainer(pod, nil)
		po.Probe = smps.ProbeHealth{Status: smps.ProbeFailed, Message: err.Error()}
		return po, data
	}
	data.valid = true
	po.ProxyContainer = proxyContainer(pod, snap)

	var problems, notes []string
	health := smps.ProbeHealth{Status: smps.ProbeOK}
	if run != nil {
		if snap.Start.After(run[0]) || snap.End.Before(run[1]) {
			problems = append(problems, fmt.Sprintf("the probe's window %s to %s does not cover the whole run (%s to %s)",
				snap.Start.UTC().Format(time.TimeOnly), snap.End.UTC().Format(time.TimeOnly), run[0].UTC().Format(time.TimeOnly), run[1].UTC().Format(time.TimeOnly)))
		}
	} else if spec, ok := window.Lookup(snap.Window); ok && snap.DurationSeconds < spec.Length.Seconds() {
		if snap.DurationSeconds == 0 {
			problems = append(problems, fmt.Sprintf("no complete %s slot yet: the probe started less than %s ago", spec.Slot, spec.Slot))
		} else {
			problems = append(problems, fmt.Sprintf("covers %s of the %s window: the probe has run for less", fmtSeconds(snap.DurationSeconds), spec.Name))
		}
	}
	if l := lossText(snap.Losses); l != "" {
		problems = append(problems, l)
	}
	health.LostEvents = clampInt(snap.Losses.RingBufferFull)
	if st := probeStatus(pod); st != nil && st.State.Running != nil && !st.Ready {
		problems = append(problems, fmt.Sprintf("container %s is not ready (kubectl -n %s logs %s -c %s)", inject.ProbeContainerName, pod.Namespace, pod.Name, inject.ProbeContainerName))
	}
	switch snap.Status {
	case api.StatusNoTraffic:
		notes = append(notes, "no traffic in the window")
	case api.StatusMeanOnly:
		problems = append(problems, fmt.Sprintf("requests overlapped too much to be paired one by one (HTTP/2, gRPC or heavy concurrency): only the mean proxy-added time is known, %.3f ms over %d requests",
			snap.ProxyAddedMean.Mean, snap.ProxyAddedMean.Count))
	}

	// Sampled (above the probe's MESH_PROBE_SAMPLE_ABOVE_RPS), the counts
	// are of the requests followed, about Fraction of them: rates and CPU
	// per request are over that share of the window.
	followed := snap.DurationSeconds
	if sm := snap.Sampling; sm != nil && sm.Fraction > 0 && sm.Fraction < 1 {
		followed *= sm.Fraction
		notes = append(notes, fmt.Sprintf("sampled: above %g rps the probe follows requests during part of each period, here about %.0f%% of the window's requests; requests are those followed, rps and proxy CPU per 1000 requests estimated from them",
			sm.AboveRPS, 100*sm.Fraction))
	}
	in := snap.Inbound()
	po.OverheadStats, data.dirData = trafficStats(&in, followed)
	s := &po.OverheadStats
	p := snap.Pairing

	if snap.ProxyDetected {
		var mc float64
		for _, c := range snap.CPU {
			if c.Role == "proxy" {
				mc += c.Millicores
				data.cpuKnown = true
			}
		}
		if data.cpuKnown {
			s.ProxyCPUMillicores = ptr(round3(mc))
			data.cpuMs = mc * followed
			if s.Requests > 0 {
				s.ProxyCPUMsPer1000Requests = ptr(round3(data.cpuMs / float64(s.Requests) * 1000))
			}
		} else {
			notes = append(notes, "proxy CPU unknown: the probe has not identified the proxy's cgroup")
		}
		if snap.Measured > 0 && snap.Pairing.AmbiguousSettled > 0 {
			notes = append(notes, fmt.Sprintf("percentiles cover %d of %d requests (the others overlapped and are known in total only); mean proxy-added time over all %.3f ms",
				snap.Measured, s.Requests, snap.ProxyAddedMean.Mean))
		}
		if n := subFloor(p.AmbiguousEdge, p.AmbiguousSettled); n > 0 {
			notes = append(notes, fmt.Sprintf("%d requests overlapped too much to be paired (counted as unmatched)", n))
		}
	} else if snap.Status != api.StatusNoTraffic {
		if po.ProxyContainer == NoProxyContainer {
			notes = append(notes, "no proxy in the pod: overhead none")
		} else {
			notes = append(notes, fmt.Sprintf("no request went through the proxy (%s) since the probe started: overhead none", po.ProxyContainer))
		}
	}

	if o := snap.Outbound; o != nil {
		stats, d := trafficStats(o, followed)
		po.Outbound, data.out = &stats, &d
		notes = append(notes, outboundNote(o, &stats))
	}

	if len(problems) > 0 {
		health.Status = smps.ProbeDegraded
		health.Message = strings.Join(problems, "; ")
	}
	po.Probe = health
	po.Note = strings.Join(notes, "; ")
	return po, data
}

// outboundNote sums up a pod's outbound calls in a sentence.
func outboundNote(o *api.Traffic, s *smps.OverheadStats) string {
	switch {
	case o.Requests == 0:
		return "outbound: no calls"
	case !o.ProxyDetected:
		return fmt.Sprintf("outbound: %d calls, none through the proxy", o.Requests)
	case s.ProxyAddedLatencyMs != nil:
		return fmt.Sprintf("outbound: %d calls, proxy added p50 %.3f ms, p99 %.3f ms", o.Requests, s.ProxyAddedLatencyMs.P50, s.ProxyAddedLatencyMs.P99)
	case o.ProxyAddedMean.Count > 0:
		return fmt.Sprintf("outbound: %d calls, proxy added %.3f ms on average (they overlapped too much to be paired one by one)", o.Requests, o.ProxyAddedMean.Mean)
	}
	return fmt.Sprintf("outbound: %d calls, none paired with its upstream exchange", o.Requests)
}

// proxyContainer names the pod's proxy container: the name the probe gives the proxy's cgroup,
// else the one the webhook configured the probe with, else a known proxy container of the pod,
// else the mesh's default, else NoProxyContainer.
func proxyContainer(pod *corev1.Pod, snap *api.Snapshot) string {
	valid := func(s string) bool { return s != "" && len(validation.IsDNS1123Label(s)) == 0 }
	if snap != nil {
		best := -1.0
		name := ""
		for _, c := range snap.CPU {
			if c.Role == "proxy" && valid(c.Name) && c.Millicores > best {
				best, name = c.Millicores, c.Name
			}
		}
		if name != "" {
			return name
		}
	}
	if c := probeContainer(pod); c != nil {
		for _, e := range c.Env {
			if e.Name == inject.EnvProxyContainer && valid(e.Value) {
				return e.Value
			}
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == inject.IstioProxyContainer || c.Name == inject.LinkerdProxyContainer {
				return c.Name
			}
		}
	}
	if snap != nil {
		switch snap.Mesh {
		case string(inject.MeshIstio):
			return inject.IstioProxyContainer
		case string(inject.MeshLinkerd):
			return inject.LinkerdProxyContainer
		}
	}
	return NoProxyContainer
}

func lossText(l api.Losses) string {
	var parts []string
	for _, x := range []struct {
		n    uint64
		what string
	}{
		{l.RingBufferFull, "exchanges lost (ring buffer full)"},
		{l.Overload, "exchanges decided early (overload)"},
		{l.DecodeErrors, "records not decoded"},
		{l.IdleLate, "response segments too late (responses pausing over 200 ms)"},
	} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	return strings.Join(parts, ", ")
}

// nsAggregate accumulates the pod entries of one namespace.
type nsAggregate struct {
	pods       int32
	in         dirAggregate
	out        *dirAggregate // nil until a pod has outbound figures
	cpuMc      float64
	cpuMs      float64
	cpuAny     bool
	cpuMissing bool
}

// dirAggregate accumulates one direction of the pod entries.
type dirAggregate struct {
	requests  int64
	rps       float64
	unmatched smps.UnmatchedCounts
	merged    [numSeries]histogram.Histogram
	// incomplete marks a series a pod could not contribute its histogram to.
	incomplete [numSeries]bool
}

func (a *nsAggregate) add(po *smps.PodOverhead, d podData) {
	a.pods++
	a.in.add(&po.OverheadStats, d.valid, &d.dirData)
	if po.Outbound != nil && d.out != nil {
		if a.out == nil {
			a.out = &dirAggregate{}
		}
		a.out.add(po.Outbound, d.valid, d.out)
	}
	if !d.valid {
		return
	}
	if d.proxy {
		if d.cpuKnown {
			a.cpuAny = true
			a.cpuMc += *po.ProxyCPUMillicores
			a.cpuMs += d.cpuMs
		} else {
			a.cpuMissing = true
		}
	}
}

func (a *dirAggregate) add(s *smps.OverheadStats, valid bool, d *dirData) {
	a.requests = saturatingAdd(a.requests, s.Requests)
	a.rps += s.RPS
	a.unmatched.Edge = saturatingAdd(a.unmatched.Edge, s.Unmatched.Edge)
	a.unmatched.App = saturatingAdd(a.unmatched.App, s.Unmatched.App)
	if !valid {
		return
	}
	for i := range numSeries {
		// Proxy series only mean something where there is a proxy; the edge is every pod's.
		if i != seriesEdge && !d.proxy {
			continue
		}
		if d.missing[i] {
			a.incomplete[i] = true
		}
		if d.hists[i] != nil {
			a.merged[i].Merge(d.hists[i])
		}
	}
}

func (a *nsAggregate) overhead(ns string) smps.NamespaceOverhead {
	no := smps.NamespaceOverhead{Namespace: ns, Pods: a.pods, OverheadStats: a.in.stats()}
	s := &no.OverheadStats
	if a.cpuAny && !a.cpuMissing {
		s.ProxyCPUMillicores = ptr(round3(a.cpuMc))
		if s.Requests > 0 {
			s.ProxyCPUMsPer1000Requests = ptr(round3(a.cpuMs / float64(s.Requests) * 1000))
		}
	}
	if a.out != nil {
		out := a.out.stats()
		no.Outbound = &out
	}
	return no
}

func (a *dirAggregate) stats() smps.OverheadStats {
	s := smps.OverheadStats{Requests: a.requests, RPS: round3(a.rps), Unmatched: a.unmatched}
	pct := func(i int) *api.Percentiles {
		h := &a.merged[i]
		if a.incomplete[i] || h.Count() == 0 {
			return nil
		}
		p := percentiles(h)
		return &p
	}
	if s.Requests > 0 {
		if p := pct(seriesProxyAdded); p != nil {
			s.ProxyAddedLatencyMs = tailMs(p)
		}
		if p := pct(seriesRequestPath); p != nil {
			s.RequestPathMs = percentilesMs(p)
		}
		if p := pct(seriesResponsePath); p != nil {
			s.ResponsePathMs = percentilesMs(p)
		}
	}
	if p := pct(seriesEdge); p != nil {
		s.EdgeMs = percentilesMs(p)
	}
	if p := pct(seriesApp); p != nil {
		s.AppMs = percentilesMs(p)
	}
	return s
}

// percentiles are the probe's own summary (api.PercentilesOf), so a namespace of one pod shows
// that pod's figures. A negative value (impossible for exchanges paired by containment, but the
// histogram can hold one) is clamped to zero: the report has no room for it.
func percentiles(h *histogram.Histogram) api.Percentiles {
	p := api.PercentilesOf(h)
	for _, v := range []*float64{&p.P50, &p.P90, &p.P99, &p.P999, &p.Max, &p.Mean} {
		*v = max(*v, 0)
	}
	return p
}

func tailMs(p *api.Percentiles) *smps.TailLatencyMs {
	return &smps.TailLatencyMs{P50: p.P50, P90: p.P90, P99: p.P99, P999: p.P999, Max: p.Max}
}

func percentilesMs(p *api.Percentiles) *smps.PercentilesMs {
	return &smps.PercentilesMs{P50: p.P50, P90: p.P90, P99: p.P99}
}

func ptr(f float64) *float64 { return &f }

// round3 keeps three decimals: a microsecond in milliseconds, a thousandth of a request per
// second or of a millicore, all below what the measurements resolve.
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func fmtSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func clampInt(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

func subFloor(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func saturatingAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
