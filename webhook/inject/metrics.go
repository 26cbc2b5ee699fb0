package inject

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the injector's Prometheus metrics. They are registered on the registry the caller
// passes (controller-runtime's metrics.Registry in the manager, a fresh one in tests), never on
// the global default registry, so two handlers in one process do not collide.
type Metrics struct {
	latency   prometheus.Histogram
	decisions *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kubectl_mesh",
			Subsystem: "injector",
			Name:      "admission_duration_seconds",
			Help:      "Time to answer one pod admission review, from receiving it to having the response.",
			// Sub-millisecond resolution: the budget is 1 ms, and the API server's webhook
			// timeout (seconds) is the far end.
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1},
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubectl_mesh",
			Subsystem: "injector",
			Name:      "decisions_total",
			Help:      "Injection decisions by reason; see the inject package's reasons for their meaning.",
		}, []string{"reason"}),
	}
	for r := range reasons {
		m.decisions.WithLabelValues(string(r)) // pre-create every series at zero
	}
	if err := reg.Register(m.latency); err != nil {
		return nil, err
	}
	if err := reg.Register(m.decisions); err != nil {
		reg.Unregister(m.latency)
		return nil, err
	}
	return m, nil
}

func (m *Metrics) observe(elapsed time.Duration, r Reason) {
	if m == nil {
		return
	}
	m.latency.Observe(elapsed.Seconds())
	m.decisions.WithLabelValues(string(r)).Inc()
}
