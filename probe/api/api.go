// Package api defines the probe's versioned snapshot document, served as
// JSON by GET /v1/snapshot and read by the kubectl plugin. docs/probe.md
// describes every field.
package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// Version and kind of the snapshot document.
const (
	APIVersion   = "kubectl-mesh.io/v1alpha1"
	KindSnapshot = "ProbeSnapshot"
)

// Status values of a snapshot: one line saying how to read it.
const (
	StatusOK        = "ok"
	StatusNoTraffic = "no traffic in the window"
	StatusNoProxy   = "no proxy detected"
	// StatusMeanOnly: requests overlapped so much (HTTP/2 or gRPC
	// multiplexing, or heavy HTTP/1.1 concurrency) that no request could
	// be paired on its own; only the mean proxy-added time is known.
	StatusMeanOnly = "requests could not be paired individually: mean only"
)

// Snapshot is one window's measurements.
type Snapshot struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// Window is the requested window name; Start and End bound the
	// complete slots it covers (End - Start is less than the window while
	// the probe has run for less than that).
	Window          string    `json:"window"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	DurationSeconds float64   `json:"durationSeconds"`
	// DecidedThrough: every exchange that ended before this instant had
	// been paired and recorded by the end of the window's last slot. A
	// request is recorded when it is decided, up to about 1.5 s after it
	// ended (its partner may still be on its way until then), so a reader
	// that wants all requests up to time T waits for a window with
	// DecidedThrough at or after T. Absent from probes before it existed.
	DecidedThrough *time.Time `json:"decidedThrough,omitempty"`

	// Mesh is the configured mesh: none, istio, linkerd or custom.
	Mesh string `json:"mesh"`
	// ProxyDetected: an exchange between a proxy and the application was
	// seen on lo since the probe started.
	ProxyDetected bool   `json:"proxyDetected"`
	Status        string `json:"status"`
	// Notes list what the numbers do not cover.
	Notes []string `json:"notes,omitempty"`

	// Requests counts inbound request/response exchanges seen on eth0;
	// Measured those with latency known individually (paired with their
	// application exchange, or all of them when there is no proxy).
	Requests uint64  `json:"requests"`
	Measured uint64  `json:"measured"`
	RPS      float64 `json:"rps"`

	// Latencies of the Measured requests, in milliseconds.
	Edge         Percentiles `json:"edge"`
	App          Percentiles `json:"app"`
	ProxyAdded   Percentiles `json:"proxyAdded"`
	RequestPath  Percentiles `json:"requestPath"`
	ResponsePath Percentiles `json:"responsePath"`
	// ProxyAddedMean also covers ambiguous requests whose individual pairs
	// are unknown but whose total is (see Pairing.AmbiguousSettled): the
	// one figure available for multiplexed protocols.
	ProxyAddedMean MeanOnly `json:"proxyAddedMean"`
	// Histograms are the distributions behind the percentiles above, so
	// that a reader can merge several pods' exchanges and take
	// percentiles over all of them. Absent from probes that predate it.
	Histograms *Histograms `json:"histograms,omitempty"`

	CPU     []ContainerCPU `json:"cpu"`
	Pairing Pairing        `json:"pairing"`
	Losses  Losses         `json:"losses"`
	// Sampling is present when the probe followed requests during part
	// of the window only.
	Sampling *Sampling `json:"sampling,omitempty"`

	// Outbound are the pod's outgoing calls through its proxy; absent
	// when the probe does not measure them (no outbound port configured,
	// or a probe older than outbound measurement).
	Outbound *Traffic `json:"outbound,omitempty"`
}

// Traffic is one direction's requests, measured like the inbound ones at
// the top of a Snapshot. For outbound calls the application's exchange
// with the proxy on lo (App) is the outer one and the proxy's exchange
// with the upstream on eth0 (Edge) lies within it: ProxyAdded is App minus
// Edge, RequestPath from the application's first request byte on lo to the
// proxy's on eth0, ResponsePath from the upstream's last response byte on
// eth0 to the proxy's on lo.
type Traffic struct {
	Status        string `json:"status"`
	ProxyDetected bool   `json:"proxyDetected"`
	// Requests: outbound, the calls the application made (its exchanges
	// with the proxy on lo, plus those that bypassed the proxy);
	// Measured those with latency known individually.
	Requests       uint64      `json:"requests"`
	Measured       uint64      `json:"measured"`
	RPS            float64     `json:"rps"`
	Edge           Percentiles `json:"edge"`
	App            Percentiles `json:"app"`
	ProxyAdded     Percentiles `json:"proxyAdded"`
	RequestPath    Percentiles `json:"requestPath"`
	ResponsePath   Percentiles `json:"responsePath"`
	ProxyAddedMean MeanOnly    `json:"proxyAddedMean"`
	Histograms     *Histograms `json:"histograms,omitempty"`
	Pairing        Pairing     `json:"pairing"`
}

// Inbound returns the snapshot's inbound figures (its top-level fields) as
// a Traffic, the shape of Outbound, so that a reader can treat both
// directions alike.
func (s *Snapshot) Inbound() Traffic {
	return Traffic{
		Status: s.Status, ProxyDetected: s.ProxyDetected,
		Requests: s.Requests, Measured: s.Measured, RPS: s.RPS,
		Edge: s.Edge, App: s.App, ProxyAdded: s.ProxyAdded,
		RequestPath: s.RequestPath, ResponsePath: s.ResponsePath,
		ProxyAddedMean: s.ProxyAddedMean, Histograms: s.Histograms, Pairing: s.Pairing,
	}
}

// Percentiles of a latency distribution in milliseconds. Quantiles are
// within 0.39% of the exact sample quantile (nearest rank); Max and Mean
// are exact.
type Percentiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Histograms are the latency histograms of the Measured requests, one per
// percentile field of the same name; an empty one is omitted.
type Histograms struct {
	ProxyAdded   *histogram.Sparse `json:"proxyAdded,omitempty"`
	Edge         *histogram.Sparse `json:"edge,omitempty"`
	App          *histogram.Sparse `json:"app,omitempty"`
	RequestPath  *histogram.Sparse `json:"requestPath,omitempty"`
	ResponsePath *histogram.Sparse `json:"responsePath,omitempty"`
}

// Each calls f with the name (the JSON key) and value of every histogram
// present, in a fixed order.
func (h *Histograms) Each(f func(name string, s *histogram.Sparse)) {
	if h == nil {
		return
	}
	for _, e := range []struct {
		name string
		s    *histogram.Sparse
	}{{"proxyAdded", h.ProxyAdded}, {"edge", h.Edge}, {"app", h.App}, {"requestPath", h.RequestPath}, {"responsePath", h.ResponsePath}} {
		if e.s != nil {
			f(e.name, e.s)
		}
	}
}

// MeanOnly is a mean in milliseconds over Count requests.
type MeanOnly struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
}

// ContainerCPU is the on-CPU time of one cgroup of the pod over the window.
type ContainerCPU struct {
	CgroupID uint64 `json:"cgroupId"`
	// Cgroup is the path below the cgroup v2 root, when the probe can see
	// it (not inside a cgroup namespace).
	Cgroup      string `json:"cgroup,omitempty"`
	ContainerID string `json:"containerId,omitempty"`
	// Name is the container's name when known: the configured proxy
	// container for the proxy's cgroup.
	Name string `json:"name,omitempty"`
	// Role: "proxy" (its socket answers on the pod's service ports while
	// a proxy is detected), "app" (the same, without a proxy), "probe"
	// (this probe), or empty.
	Role                 string  `json:"role,omitempty"`
	Millicores           float64 `json:"millicores"`
	CPUMsPer1000Requests float64 `json:"cpuMsPer1000Requests"`
}

// Pairing accounts for every exchange that did not yield a measurement.
type Pairing struct {
	UnmatchedEdge uint64 `json:"unmatchedEdge"`
	UnmatchedApp  uint64 `json:"unmatchedApp"`
	AmbiguousEdge uint64 `json:"ambiguousEdge"`
	AmbiguousApp  uint64 `json:"ambiguousApp"`
	// AmbiguousSettled: ambiguous edge exchanges counted in ProxyAddedMean.
	AmbiguousSettled  uint64 `json:"ambiguousSettled"`
	PairedByRequestID uint64 `json:"pairedByRequestId"`
	Incomplete        uint64 `json:"incomplete"`
	PredatesProbe     uint64 `json:"predatesProbe"`
	Pipelined         uint64 `json:"pipelined"`
	TLSHandshake      uint64 `json:"tlsHandshake"`
	Outbound          uint64 `json:"outbound"`
	// OutsideSample: application exchanges (outbound: upstream calls)
	// without a partner that started while the sampling gate was letting
	// only them through, so their outer exchange was not followed by
	// design. Absent from probes without sampling.
	OutsideSample uint64 `json:"outsideSample,omitempty"`
}

// Losses are events the probe could not use at all.
type Losses struct {
	// RingBufferFull: exchanges the kernel could not queue.
	RingBufferFull uint64 `json:"ringBufferFull"`
	// DecodeErrors: ring-buffer records that did not decode.
	DecodeErrors uint64 `json:"decodeErrors"`
	// Overload: exchanges decided early because too many were pending.
	Overload uint64 `json:"overload"`
	// IdleLate: response segments that came after the idle scan emitted
	// their exchange (responses pausing longer than the idle time).
	IdleLate uint64 `json:"idleLate"`
	// SamplingCut: exchanges in progress when the sampling gate closed,
	// whose end the probe therefore did not see (longer than its settle
	// time, 100ms). Absent from probes without sampling.
	SamplingCut uint64 `json:"samplingCut,omitempty"`
}

// Sampling says that the probe followed exchanges during part of the
// window only: above AboveRPS requests (and outbound calls) per second it
// follows them during a part of each period that keeps its cost near what
// AboveRPS costs (probe/sampler). Requests, Measured and the pairing
// counts are then the exchanges followed; RPS and CPU per 1000 requests
// are estimated from them, each followed exchange standing for 1/f, f the
// share of its sampling period the probe followed new ones.
type Sampling struct {
	// Fraction of the window's requests (and outbound calls) followed, as
	// estimated: Requests / Fraction estimates all of them, and the window
	// times Fraction is the time over which Requests make the rate. Under
	// steady traffic, also the share of the window during which new
	// requests were followed.
	Fraction float64 `json:"fraction"`
	AboveRPS float64 `json:"aboveRps"`
}

// ParseWindow validates the window query parameter. The empty string is
// the default, "1m".
func ParseWindow(s string) (window.Spec, error) {
	if s == "" {
		s = "1m"
	}
	if spec, ok := window.Lookup(s); ok {
		return spec, nil
	}
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return window.Spec{}, fmt.Errorf("unknown window %q: use one of %s", s, strings.Join(window.Names(), ", "))
}

// PercentilesOf summarises h as snapshots report it: milliseconds rounded to the microsecond,
// the resolution the probe claims (its timestamps are nanoseconds, but the quantiles are bucket
// midpoints). The plugin summarises merged histograms with it too, so that a namespace of one
// pod shows that pod's figures.
func PercentilesOf(h *histogram.Histogram) Percentiles {
	return Percentiles{
		Count: h.Count(),
		P50:   MillisUs(h.Quantile(0.5)),
		P90:   MillisUs(h.Quantile(0.9)),
		P99:   MillisUs(h.Quantile(0.99)),
		P999:  MillisUs(h.Quantile(0.999)),
		Max:   MillisUs(h.Max()),
		Mean:  MillisUs(h.Mean()),
	}
}

// MillisUs is d in milliseconds rounded to the microsecond.
func MillisUs(d time.Duration) float64 {
	return Millis(d.Round(time.Microsecond))
}

// Millis converts a duration to fractional milliseconds.
func Millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
