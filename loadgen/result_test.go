package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"fortio.org/fortio/stats"

	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// fortio records seconds; every figure of a Result must be the same figure in
// milliseconds.
func TestSecondsBecomeMilliseconds(t *testing.T) {
	h := stats.NewHistogram(0, resolutionSeconds)
	for _, s := range []float64{0.0015, 0.0025, 0.0100, 0.000250} {
		h.Record(s)
	}
	data := h.Export().CalcPercentiles(percentiles)
	l, buckets := latencyFromFortio(data)

	if l.Min != 0.25 || l.Max != 10 || l.Avg != 3.5625 {
		t.Errorf("min %g max %g avg %g, want 0.25, 10, 3.5625 ms", l.Min, l.Max, l.Avg)
	}
	for _, p := range data.Percentiles {
		want := secondsToMs(p.Value)
		var got float64
		switch p.Percentile {
		case 50:
			got = l.P50
		case 90:
			got = l.P90
		case 99:
			got = l.P99
		case 99.9:
			got = l.P999
		}
		if got != want || got < 0.25 || got > 10 {
			t.Errorf("p%g = %g ms, want fortio's %g s = %g ms", p.Percentile, got, p.Value, want)
		}
	}
	if len(buckets) != len(data.Data) {
		t.Fatalf("%d buckets, fortio has %d", len(buckets), len(data.Data))
	}
	for i, b := range buckets {
		f := data.Data[i]
		if b.StartMs != secondsToMs(f.Start) || b.EndMs != secondsToMs(f.End) || b.Count != f.Count || b.Percent != f.Percent {
			t.Errorf("bucket %d = %+v, fortio's %+v", i, b, f)
		}
	}
	// With 10 µs resolution, buckets around 1.5 ms are 0.2 ms wide (at
	// fortio's default 1 ms resolution the bucket would be 0-2 ms).
	for _, b := range buckets {
		if b.StartMs < 1.5 && 1.5 <= b.EndMs && b.EndMs-b.StartMs > 0.2+1e-9 {
			t.Errorf("bucket [%g, %g] around 1.5 ms is wider than 0.2 ms", b.StartMs, b.EndMs)
		}
	}
	if secondsToMs(1.4e-3) != 1.4 || secondsToMs(0.000000001) != 0.000001 {
		t.Errorf("rounding: %v %v", secondsToMs(1.4e-3), secondsToMs(0.000000001))
	}
	if l, b := latencyFromFortio(stats.NewHistogram(0, resolutionSeconds).Export()); l != (LatencyMs{}) || len(b) != 0 || b == nil {
		t.Errorf("empty histogram: %+v %v", l, b)
	}
}

func TestFillSMPS(t *testing.T) {
	start := time.Date(2026, 5, 1, 10, 0, 0, 500, time.UTC)
	r := &Result{
		StartTime: start, EndTime: start.Add(30 * time.Second), ActualQPS: 999.5, Partial: true,
		LatencyMs: LatencyMs{Min: 0.4, Avg: 1.2, P50: 1.1, P90: 1.9, P99: 3.5, P999: 7, Max: 12},
	}
	res := &smps.PerformanceTestResult{SMPVersion: smps.Version, ID: "run-1"}
	r.FillSMPS(res)
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	want := smps.Latency{Min: 0.4, Average: 1.2, P50: 1.1, P90: 1.9, P99: 3.5, Max: 12}
	if *res.LatenciesMs != want || res.ActualQPS != 999.5 || !res.StartTime.Time().Equal(start) || !res.EndTime.Time().Equal(r.EndTime) {
		t.Errorf("got %+v %+v", res, res.LatenciesMs)
	}
	if res.Labels[PartialLabel] != "true" {
		t.Errorf("labels %v, want the partial label", res.Labels)
	}
	var buf strings.Builder
	if err := smps.Encode(&buf, res, smps.JSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"p90": 1.9,`) {
		t.Errorf("SMPS JSON %s", buf.String())
	}
}

func TestSMPSClient(t *testing.T) {
	c := Config{URL: "grpc://echo:9090", Protocol: GRPC, QPS: 0.5, Connections: 8, Warmup: 5 * time.Second}
	cl := c.SMPSClient()
	if cl.LoadGenerator != "fortio" || cl.Protocol != smps.ProtocolGRPC || cl.Connections != 8 || cl.RPS != 1 || cl.EndpointURLs[0] != c.URL {
		t.Errorf("client %+v", cl)
	}
	var opts map[string]any
	if err := json.Unmarshal([]byte(cl.AdditionalOptions), &opts); err != nil || opts["warmup"] != "5s" || opts["nocatchup"] != true {
		t.Errorf("additional options %s: %v", cl.AdditionalOptions, err)
	}
	if (&Config{Protocol: HTTP2}).SMPSClient().Protocol != smps.ProtocolHTTP {
		t.Errorf("http2 is SMPS HTTP")
	}
}
