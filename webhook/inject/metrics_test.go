package inject

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	tc := loadCase(t, "testdata/plain.yaml")
	reg := prometheus.NewPedanticRegistry()
	h, _ := newTestHandler(t, Options{Registerer: reg, Namespaces: staticNamespaces{"shop": &tc.Namespace}, NativeSidecars: true})
	for i := 0; i < 3; i++ {
		post(h, reviewBody(t, podRequest(t, "a", "shop", &tc.Pod)))
	}
	post(h, reviewBody(t, podRequest(t, "b", "kube-system", &tc.Pod)))
	post(h, []byte("garbage"))

	for reason, want := range map[Reason]float64{
		ReasonInjected: 3, ReasonSystemNamespace: 1, ReasonMalformedRequest: 1, ReasonPodSecurity: 0,
	} {
		if got := counterValue(t, reg, string(reason)); got != want {
			t.Errorf("decisions_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, f := range families {
		switch f.GetName() {
		case "kubectl_mesh_injector_admission_duration_seconds":
			seen = true
			if n := f.GetMetric()[0].GetHistogram().GetSampleCount(); n != 5 {
				t.Errorf("latency samples %d, want 5", n)
			}
		case "kubectl_mesh_injector_decisions_total":
			if len(f.GetMetric()) != len(reasons) {
				t.Errorf("%d decision series, want one per reason (%d)", len(f.GetMetric()), len(reasons))
			}
		}
	}
	if !seen {
		t.Error("latency histogram not registered")
	}
}

func counterValue(t testing.TB, reg prometheus.Gatherer, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "kubectl_mesh_injector_decisions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series for reason %q", reason)
	return 0
}
