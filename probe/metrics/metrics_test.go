package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
)

// gather returns every sample of the registry as "name{label=value,...}"
// -> value (histograms: their sample count).
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, metric := range f.Metric {
			key := f.GetName()
			if len(metric.Label) > 0 {
				key += "{"
				for i, l := range metric.Label {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + "=" + l.GetValue()
				}
				key += "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = metric.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = metric.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(metric.Histogram.GetSampleCount())
				out[key+"_sum"] = metric.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

func TestExposition(t *testing.T) {
	m := New(func() Totals {
		return Totals{
			Counts:        pairing.Counts{Edge: 10, App: 9, Paired: 8, PairedByRequestID: 3, UnmatchedEdge: 2},
			CPU:           []CPU{{CgroupID: 42, Name: "istio-proxy", Role: "proxy", Seconds: 1.5}},
			ProxyDetected: true,
			NotOpen:       2500 * time.Millisecond,
			Estimated:     40,
		}
	})
	m.Observe([]pairing.Result{{EdgeDuration: 3 * time.Millisecond, AppDuration: 2 * time.Millisecond,
		ProxyAdded: time.Millisecond, RequestPath: 400 * time.Microsecond, ResponsePath: 600 * time.Microsecond}})
	got := gather(t, m)
	for key, want := range map[string]float64{
		"mesh_probe_requests_total":                                                   10,
		"mesh_probe_exchanges_total{leg=app}":                                         9,
		"mesh_probe_measured_requests_total{method=containment}":                      5,
		"mesh_probe_measured_requests_total{method=request-id}":                       3,
		"mesh_probe_unmatched_exchanges_total{leg=edge}":                              2,
		"mesh_probe_cpu_seconds_total{cgroup_id=42,container=istio-proxy,role=proxy}": 1.5,
		"mesh_probe_proxy_detected":                                                   1,
		"mesh_probe_sampling_not_followed_seconds_total":                              2.5,
		"mesh_probe_sampling_estimated_exchanges_total":                               40,
		"mesh_probe_proxy_added_seconds":                                              1,
		"mesh_probe_proxy_added_seconds_sum":                                          0.001,
		"mesh_probe_edge_duration_seconds_sum":                                        0.003,
		"mesh_probe_request_path_seconds_sum":                                         0.0004,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	// Everything of ours is named mesh_probe_*, counters end in _total.
	families, _ := m.Registry.Gather()
	for _, f := range families {
		name := f.GetName()
		if len(name) > 11 && name[:11] == "mesh_probe_" && f.GetType() == dto.MetricType_COUNTER &&
			name[len(name)-6:] != "_total" {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
}
