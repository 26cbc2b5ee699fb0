package loadgen

import (
	"encoding/json"
	"math"
	"time"

	"fortio.org/fortio/stats"

	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// KindResult is the kind of a result document.
const KindResult = "LoadResult"

// The percentiles every run reports. p99.9 is beyond SMPS's latency fields; it
// is kept here because tail latency is where proxies differ.
var percentiles = []float64{50, 90, 99, 99.9}

// resolutionSeconds is the width of the histogram's finest buckets: 10 µs.
// fortio's default, 1 ms, would put a whole sub-millisecond distribution in
// one bucket and leave its percentiles to linear interpolation.
const resolutionSeconds = 0.00001

// Result is what a run measured. Latencies are milliseconds, rates are per
// second, durations are Go duration strings ("30s").
type Result struct {
	Kind string `json:"kind"`
	// Generator names the load library and its version, e.g. "fortio 1.75.3".
	Generator string `json:"generator"`
	// Partial is true when the run was stopped before it completed; the
	// figures then cover StartTime..EndTime only.
	Partial bool `json:"partial"`
	// PartialReason says why, when Partial.
	PartialReason string `json:"partialReason,omitempty"`

	// StartTime and EndTime bound the measured phase (warmup excluded), UTC.
	StartTime time.Time `json:"startTime"`
	EndTime   time.Time `json:"endTime"`

	URL      string   `json:"url"`
	Protocol Protocol `json:"protocol"`
	// RequestedQPS is the requested rate; 0 means as fast as possible.
	RequestedQPS float64 `json:"requestedQps"`
	// ActualQPS is Requests divided by the measured phase's length.
	ActualQPS float64 `json:"actualQps"`
	// Connections is the number of connections used. fortio lowers it when
	// the run is too short to give each connection two requests.
	Connections int `json:"connections"`
	// Sockets is the number of TCP connections opened over the measured phase
	// (HTTP and HTTP2 only); with working keep-alive it equals Connections.
	Sockets int64 `json:"sockets,omitempty"`
	// RequestedDuration is the requested length of the measured phase ("" when
	// a request count was requested instead); ActualDuration its length.
	RequestedDuration string `json:"requestedDuration,omitempty"`
	ActualDuration    string `json:"actualDuration"`
	// RequestedRequests is the requested request count, when one was.
	RequestedRequests int64  `json:"requestedRequests,omitempty"`
	Warmup            string `json:"warmup,omitempty"`
	// WarmupRequests counts the requests of the warmup phase (not measured).
	WarmupRequests int64 `json:"warmupRequests,omitempty"`
	PayloadSize    int   `json:"payloadSize,omitempty"`
	// Uniform, Jitter, NoCatchUp and KeepAlive echo the pacing options (see
	// the package documentation); they only matter when RequestedQPS > 0.
	Uniform   bool `json:"uniform"`
	Jitter    bool `json:"jitter"`
	NoCatchUp bool `json:"noCatchUp"`
	KeepAlive bool `json:"keepAlive"`

	// Requests is the number of requests of the measured phase, answered or
	// failed; Errors those that failed.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Codes counts the answers by code: the HTTP status ("200", "-1" for a
	// socket error) or the gRPC health status ("SERVING", "ERROR").
	Codes map[string]int64 `json:"codes"`
	// LatencyMs summarises all requests' latencies, failed ones included (as
	// fortio does), in milliseconds.
	LatencyMs LatencyMs `json:"latencyMs"`
	// HistogramMs is the latency histogram, in milliseconds.
	HistogramMs []Bucket `json:"histogramMs"`
}

// LatencyMs are latency statistics in milliseconds.
type LatencyMs struct {
	Min    float64 `json:"min"`
	Avg    float64 `json:"avg"`
	StdDev float64 `json:"stdDev"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P999   float64 `json:"p999"`
	Max    float64 `json:"max"`
}

// Bucket is one histogram bucket: Count requests took more than StartMs and
// at most EndMs (the first bucket starts at the minimum, the last ends at the
// maximum). Percent is cumulative: the share of requests up to EndMs.
type Bucket struct {
	StartMs float64 `json:"startMs"`
	EndMs   float64 `json:"endMs"`
	Count   int64   `json:"count"`
	Percent float64 `json:"percent"`
}

// secondsToMs converts fortio's seconds to milliseconds, rounded to the
// nanosecond: fortio's values come from time.Duration, so nothing finer is
// real, and the rounding drops float noise such as 1.4000000000000001.
func secondsToMs(s float64) float64 { return math.Round(s*1e9) / 1e6 }

// latencyFromFortio converts fortio's histogram (seconds) to LatencyMs and
// buckets. The histogram must have had CalcPercentiles(percentiles) applied.
func latencyFromFortio(h *stats.HistogramData) (LatencyMs, []Bucket) {
	buckets := []Bucket{}
	if h == nil || h.Count == 0 {
		return LatencyMs{}, buckets
	}
	l := LatencyMs{
		Min:    secondsToMs(h.Min),
		Avg:    secondsToMs(h.Avg),
		StdDev: secondsToMs(h.StdDev),
		Max:    secondsToMs(h.Max),
	}
	// Sum/Count can land a rounding error outside [min, max] when all values
	// are equal; SMPS validation rejects an average outside that range.
	l.Avg = math.Min(math.Max(l.Avg, l.Min), l.Max)
	for _, p := range h.Percentiles {
		v := secondsToMs(p.Value)
		switch p.Percentile {
		case 50:
			l.P50 = v
		case 90:
			l.P90 = v
		case 99:
			l.P99 = v
		case 99.9:
			l.P999 = v
		}
	}
	for _, b := range h.Data {
		buckets = append(buckets, Bucket{
			StartMs: secondsToMs(b.Start),
			EndMs:   secondsToMs(b.End),
			Count:   b.Count,
			Percent: b.Percent,
		})
	}
	return l, buckets
}

// SMPSLatency returns the measured latencies as SMPS latencies_ms.
func (r *Result) SMPSLatency() *smps.Latency {
	return &smps.Latency{
		Min:     r.LatencyMs.Min,
		Average: r.LatencyMs.Avg,
		P50:     r.LatencyMs.P50,
		P90:     r.LatencyMs.P90,
		P99:     r.LatencyMs.P99,
		Max:     r.LatencyMs.Max,
	}
}

// PartialLabel is the label FillSMPS sets on the PerformanceTestResult of a
// partial run: SMPS has no field for it, and a reader must not take a
// stopped run's figures for a complete one.
const PartialLabel = "kubectl-mesh.io/partial"

// FillSMPS copies what the load generator measured into res: start and end
// time, latencies (ms) and actual QPS, and PartialLabel when the run was
// partial. The ids and the rest are the caller's.
func (r *Result) FillSMPS(res *smps.PerformanceTestResult) {
	res.StartTime = smps.NewTimestamp(r.StartTime)
	res.EndTime = smps.NewTimestamp(r.EndTime)
	res.LatenciesMs = r.SMPSLatency()
	res.ActualQPS = r.ActualQPS
	if r.Partial {
		if res.Labels == nil {
			res.Labels = map[string]string{}
		}
		res.Labels[PartialLabel] = "true"
	}
}

// SMPSClient describes c as an SMPS PerformanceTestConfig client. Internal
// (whether it ran in the cluster) is the caller's to set.
func (c *Config) SMPSClient() smps.Client {
	proto := smps.ProtocolHTTP
	if c.Protocol == GRPC {
		proto = smps.ProtocolGRPC
	}
	// SMPS has no fields for these; Meshery keeps tool options as a JSON
	// object in additional_options.
	opts, _ := json.Marshal(map[string]any{
		"protocol":     c.Protocol,
		"qps":          c.QPS,
		"warmup":       c.Warmup.String(),
		"payload_size": c.PayloadSize,
		"requests":     c.Requests,
		"uniform":      true,
		"jitter":       true,
		"nocatchup":    true,
		"keepalive":    true,
	})
	// 0 means "as fast as possible" in SMPS as in fortio: a fractional rate
	// must not round down to it.
	rps := int64(math.Ceil(c.QPS))
	return smps.Client{
		LoadGenerator:     "fortio",
		Protocol:          proto,
		Connections:       int32(min(c.Connections, math.MaxInt32)),
		RPS:               rps,
		EndpointURLs:      []string{c.URL},
		AdditionalOptions: string(opts),
	}
}
