package smps

import (
	"encoding/json"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The OverheadReport's type identity, written in every report.
const (
	OverheadReportAPIVersion = "kubectl-mesh.io/v1alpha1"
	OverheadReportKind       = "OverheadReport"
)

// OverheadReport is kubectl-mesh's companion to the SMPS documents. SMPS has
// no place for per-pod or per-proxy figures, for percentiles above p99, for
// error or mismatch counts, or for a with/without-mesh comparison, so those
// live here; the SMPS documents stay strictly valid and the
// PerformanceTestResult's details_uri names this report's file.
//
// It is kubectl-mesh's own format, so it follows Kubernetes conventions
// instead of SMPS ones: apiVersion/kind, camelCase keys, times as RFC 3339
// strings, enum-like fields as strings. Measured quantities carry no
// omitempty: a measured zero is written out, and an absent optional section
// (a nil pointer) means "not measured". Latencies are milliseconds, CPU is
// millicores.
type OverheadReport struct {
	// APIVersion is OverheadReportAPIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind is OverheadReportKind.
	Kind string `json:"kind"`
	// RunID identifies the measurement run. Required.
	RunID string `json:"runId"`
	// ResultID is the id of the SMPS PerformanceTestResult whose details_uri
	// points here, when there is one: the link back.
	ResultID string `json:"resultId,omitempty"`
	// Window is the interval the figures cover.
	Window Window `json:"window"`
	// Pods holds one entry per measured pod.
	Pods []PodOverhead `json:"pods,omitempty"`
	// Namespaces aggregates Pods per namespace; every namespace that has a pod
	// entry has exactly one aggregate, and the aggregate's counts are the sums
	// of its pods' counts.
	Namespaces []NamespaceOverhead `json:"namespaces,omitempty"`
	// Baseline compares client-side latency with and without the proxy, when
	// such a comparison was run.
	Baseline *Baseline `json:"baseline,omitempty"`
}

// NewOverheadReport returns a report with its type identity and window set
// (times are stored in UTC).
func NewOverheadReport(runID string, start, end time.Time) *OverheadReport {
	return &OverheadReport{
		APIVersion: OverheadReportAPIVersion,
		Kind:       OverheadReportKind,
		RunID:      runID,
		Window:     Window{Start: start.UTC(), End: end.UTC()},
	}
}

// Window is a time interval, both ends in UTC, written as RFC 3339.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// MarshalJSON writes the window in UTC whatever zone the caller's times are
// in, as the report promises.
func (w Window) MarshalJSON() ([]byte, error) {
	type plain Window // no MarshalJSON: avoids recursion
	return json.Marshal(plain{Start: w.Start.UTC(), End: w.End.UTC()})
}

// Duration is End - Start.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

// OverheadStats are the figures kept for a pod and, summed or merged, for a
// namespace.
//
// The probe times every request/response exchange twice: at the pod's network
// edge (eth0, where the client's traffic enters before the proxy intercepts
// it) and between the proxy and the application (loopback). For one exchange,
// edge time = request path + app time + response path, and the proxy added
// edge time - app time. Percentiles are taken over exchanges, so they do not
// add up across fields (p99 of a sum is not the sum of p99s).
//
// Outbound calls are the mirror: the application's exchange with its proxy
// on loopback (AppMs) contains the proxy's exchange with the upstream on
// eth0 (EdgeMs), and the proxy added app time - edge time; the request path
// runs from the application's first byte to the proxy's first byte
// upstream, the response path from the upstream's last byte to the proxy's
// last byte to the application. Proxy CPU is one figure for both
// directions and is only in the inbound stats.
type OverheadStats struct {
	// Requests is the number of exchanges matched at both vantage points; the
	// latency decomposition is computed over these.
	Requests int64 `json:"requests"`
	// RPS is Requests divided by the window, in requests per second.
	RPS float64 `json:"rps"`
	// ProxyAddedLatencyMs is edge time - app time per exchange, ms.
	ProxyAddedLatencyMs *TailLatencyMs `json:"proxyAddedLatencyMs,omitempty"`
	// RequestPathMs is the time from the request arriving at the pod edge to
	// the application receiving it (inbound proxy work), ms.
	RequestPathMs *PercentilesMs `json:"requestPathMs,omitempty"`
	// ResponsePathMs is the time from the application's response to the
	// response leaving the pod edge (outbound proxy work), ms.
	ResponsePathMs *PercentilesMs `json:"responsePathMs,omitempty"`
	// EdgeMs is the whole exchange as seen at the pod edge, ms.
	EdgeMs *PercentilesMs `json:"edgeMs,omitempty"`
	// AppMs is the exchange as seen between proxy and application, ms.
	AppMs *PercentilesMs `json:"appMs,omitempty"`
	// ProxyCPUMillicores is the proxy container's mean CPU use over the
	// window, millicores (1000 = one core busy all the time).
	ProxyCPUMillicores *float64 `json:"proxyCpuMillicores,omitempty"`
	// ProxyCPUMsPer1000Requests is proxy CPU time per 1000 requests, in CPU
	// milliseconds: ProxyCPUMillicores * window seconds / Requests * 1000
	// (a millicore for one second is one CPU millisecond).
	ProxyCPUMsPer1000Requests *float64 `json:"proxyCpuMsPer1000Requests,omitempty"`
	// Unmatched counts exchanges seen at only one vantage point.
	Unmatched UnmatchedCounts `json:"unmatched"`
}

// PodOverhead is the overhead measured for one pod's proxy.
type PodOverhead struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ProxyContainer is the name of the proxy container, e.g. "istio-proxy"
	// or "linkerd-proxy".
	ProxyContainer string `json:"proxyContainer"`
	OverheadStats  `json:",inline"`
	// Outbound are the pod's outgoing calls through its proxy, when the
	// probe measures them (a mesh with an outbound port).
	Outbound *OverheadStats `json:"outbound,omitempty"`
	// Probe says how well the measurement itself went for this pod.
	Probe ProbeHealth `json:"probe"`
	// Note is free text for a human reader, e.g. why a figure is missing.
	Note string `json:"note,omitempty"`
}

// NamespaceOverhead aggregates the PodOverhead entries of one namespace.
// Counts are sums; latency percentiles are over the merged exchanges of all
// pods (not averages of pod percentiles); ProxyCPUMillicores is the sum over
// pods.
type NamespaceOverhead struct {
	Namespace string `json:"namespace"`
	// Pods is the number of pod entries in this namespace.
	Pods          int32 `json:"pods"`
	OverheadStats `json:",inline"`
	// Outbound aggregates the pods' Outbound entries; present when one of
	// them is.
	Outbound *OverheadStats `json:"outbound,omitempty"`
}

// PercentilesMs are latency percentiles in milliseconds.
type PercentilesMs struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// TailLatencyMs are latency percentiles up to p99.9 and the maximum, ms.
type TailLatencyMs struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// UnmatchedCounts are exchanges the probe saw at one vantage point but could
// not pair with the other; they are not in Requests. Many of them mean the
// decomposition covers only part of the traffic (for example the proxy
// answering by itself, or lost probe events).
type UnmatchedCounts struct {
	// Edge counts exchanges seen at the pod edge only.
	Edge int64 `json:"edge"`
	// App counts exchanges seen between proxy and application only.
	App int64 `json:"app"`
}

// ProbeStatus is the state of the measurement for a pod.
type ProbeStatus string

// ProbeStatus values.
const (
	// ProbeOK: the probe ran for the whole window without loss.
	ProbeOK ProbeStatus = "ok"
	// ProbeDegraded: the probe ran but lost events or part of the window;
	// the figures are usable with care (see ProbeHealth.Message).
	ProbeDegraded ProbeStatus = "degraded"
	// ProbeFailed: the probe did not produce usable data for this pod.
	ProbeFailed ProbeStatus = "failed"
)

// ProbeHealth describes how the measurement went.
type ProbeHealth struct {
	Status ProbeStatus `json:"status"`
	// LostEvents is the number of events the kernel side dropped (ring
	// buffer full).
	LostEvents int64 `json:"lostEvents,omitempty"`
	// Message explains a degraded or failed status.
	Message string `json:"message,omitempty"`
}

// Baseline compares client-side latency of the same load with and without the
// proxy in the path. The percentile differences are differences of
// percentiles, not percentiles of per-request differences, and may be
// negative when the proxy's cost is within run-to-run noise.
type Baseline struct {
	// WithProxyResultID and WithoutProxyResultID are the ids of the SMPS
	// PerformanceTestResults of the two runs, when written.
	WithProxyResultID    string `json:"withProxyResultId,omitempty"`
	WithoutProxyResultID string `json:"withoutProxyResultId,omitempty"`
	// WithProxyMs and WithoutProxyMs are client-side latency, ms.
	WithProxyMs    PercentilesMs `json:"withProxyMs"`
	WithoutProxyMs PercentilesMs `json:"withoutProxyMs"`
	// DifferenceMs is WithProxyMs - WithoutProxyMs, per percentile, ms.
	DifferenceMs PercentilesMs `json:"differenceMs"`
}

// NewBaseline fills DifferenceMs from the two measurements.
func NewBaseline(withProxy, withoutProxy PercentilesMs) Baseline {
	return Baseline{
		WithProxyMs:    withProxy,
		WithoutProxyMs: withoutProxy,
		DifferenceMs: PercentilesMs{
			P50: withProxy.P50 - withoutProxy.P50,
			P90: withProxy.P90 - withoutProxy.P90,
			P99: withProxy.P99 - withoutProxy.P99,
		},
	}
}

// baselineToleranceMs is how far a stored difference may be from
// with - without: 1 µs, below any latency resolution that matters here, but
// large enough for producers that round to microseconds, and far too small to
// hide swapped or sign-flipped fields.
const baselineToleranceMs = 0.001

// Validate checks an OverheadReport. Paths start with "report".
func (r *OverheadReport) Validate() error {
	var v validator
	v.overheadReport("report", r)
	return v.err()
}

func (v *validator) overheadReport(p string, r *OverheadReport) {
	if !v.document(p, r == nil) {
		return
	}
	if r.APIVersion != OverheadReportAPIVersion {
		v.add(field(p, "apiVersion"), "%q is not %q", truncate(r.APIVersion, 80), OverheadReportAPIVersion)
	}
	if r.Kind != OverheadReportKind {
		v.add(field(p, "kind"), "%q is not %q", truncate(r.Kind, 80), OverheadReportKind)
	}
	v.required(field(p, "runId"), r.RunID)
	v.window(field(p, "window"), r.Window)

	seenPods := map[string]int{}
	podsByNS := map[string][]int{} // namespace -> indexes into r.Pods
	for i := range r.Pods {
		pod := &r.Pods[i]
		pp := index(field(p, "pods"), i)
		v.dnsLabel(field(pp, "namespace"), pod.Namespace)
		if pod.Name == "" {
			v.add(field(pp, "name"), "required")
		} else if errs := validation.IsDNS1123Subdomain(pod.Name); len(errs) > 0 {
			v.add(field(pp, "name"), "%q is not a pod name: %s", truncate(pod.Name, 80), errs[0])
		}
		v.dnsLabel(field(pp, "proxyContainer"), pod.ProxyContainer)
		id := pod.Namespace + "/" + pod.Name
		if first, dup := seenPods[id]; dup {
			v.add(pp, "duplicate of pods[%d] (%s)", first, id)
		} else {
			seenPods[id] = i
		}
		v.overheadStats(pp, &pod.OverheadStats)
		v.outbound(field(pp, "outbound"), pod.Outbound)
		v.probe(field(pp, "probe"), pod.Probe)
		podsByNS[pod.Namespace] = append(podsByNS[pod.Namespace], i)
	}

	seenNS := map[string]int{}
	for i := range r.Namespaces {
		ns := &r.Namespaces[i]
		np := index(field(p, "namespaces"), i)
		v.dnsLabel(field(np, "namespace"), ns.Namespace)
		if first, dup := seenNS[ns.Namespace]; dup {
			v.add(np, "duplicate of namespaces[%d] (%s)", first, ns.Namespace)
			continue
		}
		seenNS[ns.Namespace] = i
		v.nonNegative(field(np, "pods"), int64(ns.Pods))
		v.overheadStats(np, &ns.OverheadStats)
		v.outbound(field(np, "outbound"), ns.Outbound)

		// The aggregate must be the sum of the pod entries it stands for,
		// or the two views of the same run would disagree.
		members := podsByNS[ns.Namespace]
		if int(ns.Pods) != len(members) {
			v.add(field(np, "pods"), "%d, but the report has %d pod entries in namespace %q", ns.Pods, len(members), ns.Namespace)
		}
		pods := make([]*OverheadStats, 0, len(members))
		var outs []*OverheadStats
		for _, pi := range members {
			pods = append(pods, &r.Pods[pi].OverheadStats)
			if o := r.Pods[pi].Outbound; o != nil {
				outs = append(outs, o)
			}
		}
		v.sums(np, &ns.OverheadStats, pods)
		switch {
		case ns.Outbound != nil:
			v.sums(field(np, "outbound"), ns.Outbound, outs)
		case len(outs) > 0:
			v.add(field(np, "outbound"), "missing, but %d of its pods have outbound figures", len(outs))
		}
	}
	for i := range r.Pods {
		if _, ok := seenNS[r.Pods[i].Namespace]; !ok && r.Pods[i].Namespace != "" {
			v.add(field(index(field(p, "pods"), i), "namespace"), "%q has no entry in namespaces", r.Pods[i].Namespace)
		}
	}

	if r.Baseline != nil {
		v.baseline(field(p, "baseline"), r.Baseline)
	}
}

// sums checks that an aggregate's counts are the sums of its pods'.
func (v *validator) sums(p string, agg *OverheadStats, pods []*OverheadStats) {
	var requests, edge, app int64
	for _, s := range pods {
		requests = saturatingAdd(requests, s.Requests)
		edge = saturatingAdd(edge, s.Unmatched.Edge)
		app = saturatingAdd(app, s.Unmatched.App)
	}
	if agg.Requests != requests {
		v.add(field(p, "requests"), "%d is not the sum over its pods, %d", agg.Requests, requests)
	}
	if agg.Unmatched.Edge != edge {
		v.add(field(field(p, "unmatched"), "edge"), "%d is not the sum over its pods, %d", agg.Unmatched.Edge, edge)
	}
	if agg.Unmatched.App != app {
		v.add(field(field(p, "unmatched"), "app"), "%d is not the sum over its pods, %d", agg.Unmatched.App, app)
	}
}

// outbound checks an Outbound section: the figures of any stats, and no
// CPU (the proxy's CPU serves both directions and is reported once).
func (v *validator) outbound(p string, s *OverheadStats) {
	if s == nil {
		return
	}
	v.overheadStats(p, s)
	if s.ProxyCPUMillicores != nil {
		v.add(field(p, "proxyCpuMillicores"), "present: the proxy's CPU is reported once, in the inbound figures")
	}
	if s.ProxyCPUMsPer1000Requests != nil {
		v.add(field(p, "proxyCpuMsPer1000Requests"), "present: the proxy's CPU is reported once, in the inbound figures")
	}
}

// saturatingAdd keeps a sum of huge (invalid, but decodable) counts from
// wrapping around and accidentally matching.
func saturatingAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

func (v *validator) dnsLabel(path, s string) {
	if s == "" {
		v.add(path, "required")
		return
	}
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		v.add(path, "%q is not a DNS-1123 label: %s", truncate(s, 80), errs[0])
	}
}

// The RFC 3339 range: encoding/json cannot write a time.Time outside years
// 0000-9999, and SMPS's Timestamp range starts at 0001.
var (
	minReportTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxReportTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

func (v *validator) window(p string, w Window) {
	ok := true
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"start", w.Start}, {"end", w.End}} {
		switch {
		case t.t.IsZero():
			v.add(field(p, t.name), "required")
			ok = false
		case t.t.Before(minReportTime) || t.t.After(maxReportTime):
			v.add(field(p, t.name), "%s is outside years 0001 to 9999", t.t.UTC().Format(time.RFC3339Nano))
			ok = false
		}
	}
	if ok && w.End.Before(w.Start) {
		v.add(field(p, "end"), "%s is before start %s", w.End.UTC().Format(time.RFC3339Nano), w.Start.UTC().Format(time.RFC3339Nano))
	}
}

func (v *validator) overheadStats(p string, s *OverheadStats) {
	v.nonNegative(field(p, "requests"), s.Requests)
	v.finiteNonNegative(field(p, "rps"), s.RPS)
	// The decomposition exists only for matched exchanges; figures computed
	// over none of them cannot be real.
	needsRequests := func(name string) {
		if s.Requests <= 0 {
			v.add(field(p, name), "present, but requests is %d: there are no exchanges to compute it from", s.Requests)
		}
	}
	if t := s.ProxyAddedLatencyMs; t != nil {
		v.tailLatency(field(p, "proxyAddedLatencyMs"), t)
		needsRequests("proxyAddedLatencyMs")
	}
	for _, pc := range []struct {
		name string
		pct  *PercentilesMs
		// whether the section needs matched exchanges
		matched bool
	}{
		{"requestPathMs", s.RequestPathMs, true},
		{"responsePathMs", s.ResponsePathMs, true},
		{"edgeMs", s.EdgeMs, false},
		{"appMs", s.AppMs, false},
	} {
		if pc.pct == nil {
			continue
		}
		v.percentiles(field(p, pc.name), pc.pct)
		if pc.matched {
			needsRequests(pc.name)
		}
	}
	if s.ProxyCPUMillicores != nil {
		v.finiteNonNegative(field(p, "proxyCpuMillicores"), *s.ProxyCPUMillicores)
	}
	if s.ProxyCPUMsPer1000Requests != nil {
		v.finiteNonNegative(field(p, "proxyCpuMsPer1000Requests"), *s.ProxyCPUMsPer1000Requests)
		needsRequests("proxyCpuMsPer1000Requests")
	}
	v.nonNegative(field(field(p, "unmatched"), "edge"), s.Unmatched.Edge)
	v.nonNegative(field(field(p, "unmatched"), "app"), s.Unmatched.App)
}

func (v *validator) tailLatency(p string, t *TailLatencyMs) {
	vals := []namedValue{{"p50", t.P50}, {"p90", t.P90}, {"p99", t.P99}, {"p999", t.P999}, {"max", t.Max}}
	if v.allFiniteNonNegative(p, vals) {
		v.ordered(p, vals)
	}
}

func (v *validator) percentiles(p string, pc *PercentilesMs) {
	vals := []namedValue{{"p50", pc.P50}, {"p90", pc.P90}, {"p99", pc.P99}}
	if v.allFiniteNonNegative(p, vals) {
		v.ordered(p, vals)
	}
}

func (v *validator) probe(p string, h ProbeHealth) {
	switch h.Status {
	case ProbeOK, ProbeDegraded, ProbeFailed:
	case "":
		v.add(field(p, "status"), "required (%s, %s or %s)", ProbeOK, ProbeDegraded, ProbeFailed)
	default:
		v.add(field(p, "status"), "%q is not one of %s, %s, %s", truncate(string(h.Status), 40), ProbeOK, ProbeDegraded, ProbeFailed)
	}
	v.nonNegative(field(p, "lostEvents"), h.LostEvents)
}

func (v *validator) baseline(p string, b *Baseline) {
	v.percentiles(field(p, "withProxyMs"), &b.WithProxyMs)
	v.percentiles(field(p, "withoutProxyMs"), &b.WithoutProxyMs)
	dp := field(p, "differenceMs")
	for _, d := range []struct {
		name                string
		with, without, diff float64
	}{
		{"p50", b.WithProxyMs.P50, b.WithoutProxyMs.P50, b.DifferenceMs.P50},
		{"p90", b.WithProxyMs.P90, b.WithoutProxyMs.P90, b.DifferenceMs.P90},
		{"p99", b.WithProxyMs.P99, b.WithoutProxyMs.P99, b.DifferenceMs.P99},
	} {
		if !v.finite(field(dp, d.name), d.diff) {
			continue
		}
		want := d.with - d.without
		if math.IsNaN(want) || math.IsInf(want, 0) {
			continue // the inputs are already reported
		}
		if math.Abs(d.diff-want) > baselineToleranceMs {
			v.add(field(dp, d.name), "%s is not withProxyMs - withoutProxyMs = %s - %s = %s",
				fmtNum(d.diff), fmtNum(d.with), fmtNum(d.without), fmtNum(want))
		}
	}
}
