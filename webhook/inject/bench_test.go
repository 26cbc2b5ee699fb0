package inject

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
)

// BenchmarkHandle measures in-process admission of a typical meshed pod (testdata/istio-classic:
// an app container, istio-init and istio-proxy, Istio's annotations): the whole HTTP handler
// (decode review, decode pod, namespace lookup, Decide, encode patch and response), the
// admission.Handler path without HTTP, and Decide alone. Besides ns/op it reports p50 and p99
// per operation; the budget is p99 <= 1 ms.
func BenchmarkHandle(b *testing.B) {
	tc := loadCase(b, "testdata/istio-classic.yaml")
	h, err := NewHandler(Options{
		Namespaces: staticNamespaces{tc.Namespace.Name: &tc.Namespace}, NativeSidecars: true,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	req := podRequest(b, "bench", tc.Namespace.Name, &tc.Pod)
	body := reviewBody(b, req)

	b.Run("ServeHTTP", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodPost, "/inject", nil)
		w := httptest.NewRecorder()
		timed(b, func() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			w.Body.Reset()
			h.ServeHTTP(w, r)
		})
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	})
	b.Run("Review", func(b *testing.B) {
		var resp *admissionv1.AdmissionResponse
		timed(b, func() { resp = h.Review(context.Background(), req) })
		if len(resp.Patch) == 0 {
			b.Fatal("no patch")
		}
	})
	b.Run("Decide", func(b *testing.B) {
		in := tc.input(&tc.Pod)
		timed(b, func() { Decide(in) })
	})
}

// timed runs op in a b.Loop, timing every call, and reports the 50th and 99th percentiles.
func timed(b *testing.B, op func()) {
	b.ReportAllocs()
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		op()
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
}
