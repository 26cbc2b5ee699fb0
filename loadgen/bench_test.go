package loadgen

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"

	"github.com/kubectl-mesh/kubectl-mesh/lab/echo"
)

// BenchmarkMaxQPS measures the maximum rate against a loopback echo server
// with no service time, b.N requests over benchConnections connections, for
// the load generator and for fortio's library called the way `fortio load
// -qps 0` calls it: the difference is what this package's wrapping costs
// (progress counting, our options). The comparison with fortio's own CLI is
// scripts/bench-loadgen.sh.
func BenchmarkMaxQPS(b *testing.B) {
	const benchConnections = 8
	defer log.SetLogLevelQuiet(log.SetLogLevelQuiet(log.Warning))
	srv := httptest.NewServer(&echo.Server{})
	defer srv.Close()

	b.Run("loadgen", func(b *testing.B) {
		c := Config{URL: srv.URL + "/", Protocol: HTTP, QPS: 0, Connections: benchConnections, Requests: int64(b.N)}
		b.ResetTimer()
		r, err := Run(context.Background(), c, nil)
		if err != nil {
			b.Fatal(err)
		}
		if r.Requests != int64(b.N) || r.Errors != 0 {
			b.Fatalf("requests %d errors %d, want %d and 0", r.Requests, r.Errors, b.N)
		}
		b.ReportMetric(r.ActualQPS, "req/s")
	})
	b.Run("fortio-library", func(b *testing.B) {
		o := fhttp.HTTPRunnerOptions{RunnerOptions: periodic.RunnerOptions{
			QPS: -1, Exactly: int64(b.N), NumThreads: min(b.N, benchConnections), Out: io.Discard, Stop: periodic.NewAborter(),
		}}
		o.URL = srv.URL + "/"
		b.ResetTimer()
		r, err := fhttp.RunHTTPTest(&o)
		if err != nil {
			b.Fatal(err)
		}
		if r.DurationHistogram.Count != int64(b.N) {
			b.Fatalf("requests %d, want %d", r.DurationHistogram.Count, b.N)
		}
		b.ReportMetric(r.ActualQPS, "req/s")
	})
}
