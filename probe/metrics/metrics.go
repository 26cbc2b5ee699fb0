// Package metrics exposes the probe's measurements to Prometheus on a
// registry of its own (nothing from client_golang's global registry).
//
// Latencies are histograms observed once per measured request. Everything
// the agent already counts (exchanges, pairing outcomes, losses, CPU per
// cgroup) is read from it at scrape time, so the hot path pays nothing for
// them.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
)

// Buckets of the latency histograms, in seconds: 5 us to 60 s.
var Buckets = []float64{
	5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10, 30, 60,
}

// CPU is one cgroup's running total.
type CPU struct {
	CgroupID uint64
	Name     string
	Role     string
	Seconds  float64
}

// Totals are the agent's running totals at scrape time.
type Totals struct {
	// Counts of the inbound pairing, Outbound of the outbound one.
	Counts        pairing.Counts
	Outbound      pairing.Counts
	Losses        api.Losses
	Exchange      bpf.ExchangeStats
	CPU           []CPU
	ProxyDetected bool
	// NotOpen: total time the sampling gate kept new requests from
	// being followed (sampler.Sampler.NotOpen).
	NotOpen time.Duration
	// Estimated: the outer exchanges (inbound requests and outbound
	// calls) the followed ones stand for (sampler.Sampler.Estimated).
	Estimated float64
}

// Metrics owns the registry and the latency histograms.
type Metrics struct {
	Registry *prometheus.Registry

	edge, app, added, reqPath, respPath prometheus.Histogram
	// Outbound calls: the application's wait on lo, the upstream
	// exchange on eth0, and the proxy's time between them.
	outCall, outUpstream, outAdded prometheus.Histogram
}

// New builds the registry. totals is called at every scrape.
func New(totals func() Totals) *Metrics {
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mesh_probe_" + name, Help: help, Buckets: Buckets,
		})
	}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		edge:     hist("edge_duration_seconds", "Inbound request on eth0: first request byte from the client to last response byte to it."),
		app:      hist("app_duration_seconds", "The same request between the proxy and the application on lo."),
		added:    hist("proxy_added_seconds", "Time the sidecar proxy added to a request: edge duration minus app duration (0 without a proxy)."),
		reqPath:  hist("request_path_seconds", "Proxy time on the way in: edge request start to app request start."),
		respPath: hist("response_path_seconds", "Proxy time on the way out: app response end to edge response end."),

		outCall:     hist("outbound_call_duration_seconds", "Outbound call as the application made it, to its proxy on lo: first request byte to last response byte."),
		outUpstream: hist("outbound_upstream_duration_seconds", "The same call between the proxy and the upstream on eth0."),
		outAdded:    hist("outbound_proxy_added_seconds", "Time the sidecar proxy added to an outbound call: call duration minus upstream duration (0 when the call bypassed the proxy)."),
	}
	m.Registry.MustRegister(m.edge, m.app, m.added, m.reqPath, m.respPath, m.outCall, m.outUpstream, m.outAdded,
		&totalsCollector{totals: totals},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records measured requests.
func (m *Metrics) Observe(results []pairing.Result) {
	for i := range results {
		r := &results[i]
		if r.Edge.Direction == exchange.Outbound {
			m.outCall.Observe(r.AppDuration.Seconds())
			m.outUpstream.Observe(r.EdgeDuration.Seconds())
			m.outAdded.Observe(r.ProxyAdded.Seconds())
			continue
		}
		m.edge.Observe(r.EdgeDuration.Seconds())
		m.app.Observe(r.AppDuration.Seconds())
		m.added.Observe(r.ProxyAdded.Seconds())
		m.reqPath.Observe(r.RequestPath.Seconds())
		m.respPath.Observe(r.ResponsePath.Seconds())
	}
}

var (
	descRequests = prometheus.NewDesc("mesh_probe_requests_total",
		"Inbound request/response exchanges seen on the pod's eth0.", nil, nil)
	descExchanges = prometheus.NewDesc("mesh_probe_exchanges_total",
		"Exchanges received from the kernel, by leg (edge: eth0, app: lo).", []string{"leg"}, nil)
	descMeasured = prometheus.NewDesc("mesh_probe_measured_requests_total",
		"Requests whose latencies were measured, by how their two legs were matched.", []string{"method"}, nil)
	descUnmatched = prometheus.NewDesc("mesh_probe_unmatched_exchanges_total",
		"Exchanges with no possible partner on the other leg.", []string{"leg"}, nil)
	descAmbiguous = prometheus.NewDesc("mesh_probe_ambiguous_exchanges_total",
		"Exchanges with several possible partners, not paired individually.", []string{"leg"}, nil)
	descAmbiguousSettled = prometheus.NewDesc("mesh_probe_ambiguous_settled_total",
		"Ambiguous edge exchanges whose proxy time is known in total.", nil, nil)
	descAmbiguousSeconds = prometheus.NewDesc("mesh_probe_ambiguous_proxy_added_seconds_total",
		"Total proxy time of the settled ambiguous exchanges.", nil, nil)
	descUnusable = prometheus.NewDesc("mesh_probe_unusable_exchanges_total",
		"Exchanges whose timing cannot be used, by reason.", []string{"reason"}, nil)
	descLost = prometheus.NewDesc("mesh_probe_lost_total",
		"Exchanges or records lost, by reason.", []string{"reason"}, nil)
	descIdleFlushed = prometheus.NewDesc("mesh_probe_idle_flushed_total",
		"Exchanges emitted by the idle scan of quiet keep-alive connections.", nil, nil)
	descPackets = prometheus.NewDesc("mesh_probe_packets_total",
		"Packets seen by the TC programs.", nil, nil)
	descNotFollowed = prometheus.NewDesc("mesh_probe_sampling_not_followed_seconds_total",
		"Seconds during which the probe followed no new request (above its sampling threshold): the request counters' rates cover the rest of the time.", nil, nil)
	descEstimated = prometheus.NewDesc("mesh_probe_sampling_estimated_exchanges_total",
		"Inbound requests and outbound calls, estimated: each one followed counts 1/f, f the share of its sampling period during which new ones were followed (1 below the sampling threshold).", nil, nil)
	descCPU = prometheus.NewDesc("mesh_probe_cpu_seconds_total",
		"On-CPU time of the pod's cgroups (containers) since the probe started.", []string{"cgroup_id", "container", "role"}, nil)
	descProxy = prometheus.NewDesc("mesh_probe_proxy_detected",
		"1 when proxy-to-application traffic was seen on lo.", nil, nil)
	descOutCalls = prometheus.NewDesc("mesh_probe_outbound_calls_total",
		"Outbound calls of the application: its exchanges with the proxy on lo, and those that bypassed the proxy.", nil, nil)
	descOutMeasured = prometheus.NewDesc("mesh_probe_outbound_measured_calls_total",
		"Outbound calls whose latencies were measured, by how their two legs were matched.", []string{"method"}, nil)
	descOutUnpaired = prometheus.NewDesc("mesh_probe_outbound_unpaired_exchanges_total",
		"Outbound exchanges not paired individually, by leg (edge: eth0, app: lo) and outcome (unmatched, ambiguous).", []string{"leg", "outcome"}, nil)
)

type totalsCollector struct{ totals func() Totals }

func (c *totalsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descExchanges, descMeasured, descUnmatched, descAmbiguous,
		descAmbiguousSettled, descAmbiguousSeconds, descUnusable, descLost, descIdleFlushed, descPackets, descNotFollowed, descEstimated, descCPU, descProxy,
		descOutCalls, descOutMeasured, descOutUnpaired} {
		ch <- d
	}
}

func (c *totalsCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.totals()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	k := t.Counts
	counter(descRequests, k.Edge)
	counter(descExchanges, k.Edge, "edge")
	counter(descExchanges, k.App, "app")
	counter(descMeasured, k.Paired-k.PairedByRequestID, "containment")
	counter(descMeasured, k.PairedByRequestID, "request-id")
	counter(descMeasured, k.NoProxy, "no-proxy")
	counter(descUnmatched, k.UnmatchedEdge, "edge")
	counter(descUnmatched, k.UnmatchedApp, "app")
	counter(descAmbiguous, k.AmbiguousEdge, "edge")
	counter(descAmbiguous, k.AmbiguousApp, "app")
	counter(descAmbiguousSettled, k.AmbiguousSettled)
	ch <- prometheus.MustNewConstMetric(descAmbiguousSeconds, prometheus.CounterValue, k.AmbiguousProxyAdded.Seconds())
	counter(descUnusable, k.Incomplete, "incomplete")
	counter(descUnusable, k.Predates, "predates-probe")
	counter(descUnusable, k.Pipelined, "pipelined")
	counter(descUnusable, k.TLSHandshake, "tls-handshake")
	counter(descUnusable, k.Outbound, "outbound")
	counter(descUnusable, k.OutsideSample, "outside-sample")
	o := t.Outbound
	counter(descOutCalls, o.App+o.NoProxy)
	counter(descOutMeasured, o.Paired-o.PairedByRequestID, "containment")
	counter(descOutMeasured, o.PairedByRequestID, "request-id")
	counter(descOutMeasured, o.NoProxy, "no-proxy")
	counter(descOutUnpaired, o.UnmatchedEdge, "edge", "unmatched")
	counter(descOutUnpaired, o.UnmatchedApp, "app", "unmatched")
	counter(descOutUnpaired, o.AmbiguousEdge, "edge", "ambiguous")
	counter(descOutUnpaired, o.AmbiguousApp, "app", "ambiguous")
	counter(descLost, t.Losses.RingBufferFull, "ring-buffer-full")
	counter(descLost, t.Losses.DecodeErrors, "decode-error")
	counter(descLost, t.Losses.Overload, "overload")
	counter(descLost, t.Losses.IdleLate, "idle-late")
	counter(descLost, t.Losses.SamplingCut, "sampling-cut")
	counter(descIdleFlushed, t.Exchange.IdleFlushed)
	counter(descPackets, t.Exchange.Packets)
	ch <- prometheus.MustNewConstMetric(descNotFollowed, prometheus.CounterValue, t.NotOpen.Seconds())
	ch <- prometheus.MustNewConstMetric(descEstimated, prometheus.CounterValue, t.Estimated)
	for _, cpu := range t.CPU {
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, cpu.Seconds,
			strconv.FormatUint(cpu.CgroupID, 10), cpu.Name, cpu.Role)
	}
	proxy := 0.0
	if t.ProxyDetected {
		proxy = 1
	}
	ch <- prometheus.MustNewConstMetric(descProxy, prometheus.GaugeValue, proxy)
}
