package probes

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes/probestest"
)

// BenchmarkSnapshotDecode is the plugin's CPU per probe read: decoding and checking one
// snapshot as a probe serves it (150 rps over the window, lognormal latencies: about 2600
// histogram buckets, 27 KB).
func BenchmarkSnapshotDecode(b *testing.B) {
	tr := probestest.Traffic{RPS: 150, ProxyAdded: 300 * time.Microsecond, App: 3 * time.Millisecond,
		ProxyCPUPerRequest: 250 * time.Microsecond, Ambiguous: 0.05, Unmatched: 0.001, Seed: 7}
	p := probestest.NewProbe(t0, now, "istio", "istio-proxy", tr)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/snapshot?window=1m", nil))
	body := rec.Body.Bytes()
	pod := probestest.Pod("ns", "a", "istio-proxy", true)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (answer{code: 200, body: body}).snapshot(context.Background(), &pod, "1m"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReport200 is building the report of 200 pods in 10 namespaces: importing and merging
// their histograms.
func BenchmarkReport200(b *testing.B) {
	var snaps []PodSnapshot
	pods := make([]corev1.Pod, 200)
	for i := range pods {
		pods[i] = probestest.Pod(fmt.Sprintf("team-%02d", i%10), fmt.Sprintf("svc-%03d", i), "istio-proxy", true)
		s, err := probestest.NewProbe(t0, now, "istio", "istio-proxy", probestest.Traffic{RPS: 100, ProxyAdded: 300 * time.Microsecond,
			App: 2 * time.Millisecond, ProxyCPUPerRequest: 200 * time.Microsecond, Seed: uint64(i)}).Snapshot(spec("1m"))
		if err != nil {
			b.Fatal(err)
		}
		snaps = append(snaps, PodSnapshot{Pod: &pods[i], Probed: true, Snapshot: &s})
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := Report("bench", t0, now, snaps); len(r.Pods) != 200 {
			b.Fatal(len(r.Pods))
		}
	}
}
