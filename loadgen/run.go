package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
)

// Run generates the load c describes: the warmup phase, if any, then the
// measured one. onProgress, which may be nil, receives progress snapshots from
// another goroutine, never two at a time.
//
// When ctx is cancelled Run stops early (requests in flight finish or time
// out) and returns what was measured so far with Partial set, and a nil error.
// It returns an error only when the load could not start: invalid
// configuration, a target that cannot be resolved or does not answer the first
// request on each connection.
func Run(ctx context.Context, c Config, onProgress func(Progress)) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	payload := makePayload(c.PayloadSize)

	waitForTarget(ctx, &c)
	var warmupRequests int64
	if c.Warmup > 0 {
		w, err := runPhase(ctx, &c, payload, PhaseWarmup, onProgress)
		if err != nil {
			return nil, fmt.Errorf("warmup: %w", err)
		}
		if h := w.runner.DurationHistogram; h != nil {
			warmupRequests = h.Count
		}
	}
	load, err := runPhase(ctx, &c, payload, PhaseLoad, onProgress)
	if err != nil {
		return nil, err
	}

	r := newResult(&c, load)
	r.WarmupRequests = warmupRequests
	if load.interrupted {
		r.Partial = true
		r.PartialReason = "stopped before the end: " + context.Cause(ctx).Error()
	}
	return r, nil
}

// phaseOutcome is what one fortio run returned.
type phaseOutcome struct {
	runner  periodic.RunnerResults
	codes   map[string]int64
	sockets int64
	// interrupted is true when ctx ended the run (or kept it from starting).
	interrupted bool
}

// runPhase runs fortio once. The warmup phase runs for c.Warmup, the load
// phase for c.Duration or c.Requests.
func runPhase(ctx context.Context, c *Config, payload []byte, phase Phase, onProgress func(Progress)) (*phaseOutcome, error) {
	cnt := &counter{}
	ro := periodic.RunnerOptions{
		RunType:     "kubectl-mesh " + string(phase),
		QPS:         c.QPS,
		Duration:    c.Duration,
		NumThreads:  c.Connections,
		Percentiles: percentiles,
		Resolution:  resolutionSeconds,
		// fortio's text report is not wanted: the result is ours to write.
		Out:          io.Discard,
		Jitter:       true,
		Uniform:      true,
		NoCatchUp:    true,
		AccessLogger: cnt,
		// Our own aborter: fortio then leaves signal handling alone (it would
		// catch SIGINT process-wide) and we decide when to stop.
		Stop: periodic.NewAborter(),
	}
	if c.QPS == 0 {
		ro.QPS = -1 // fortio's max-speed mode; 0 would mean its default, 8
	}
	if phase == PhaseWarmup {
		ro.Duration = c.Warmup
	} else if c.Requests > 0 {
		ro.Exactly = c.Requests
		// At max speed fortio gives each connection Requests/Connections
		// requests but at least one, so fewer requests than connections would
		// send one per connection.
		ro.NumThreads = int(min(int64(c.Connections), c.Requests))
	}
	aborter := ro.Stop

	start := time.Now()
	stopProgress := cnt.reportEvery(c.ProgressInterval, phase, start, onProgress)
	// interrupted records that ctx ended the run; returned that fortio had
	// already finished by itself, so a cancellation that comes later does not
	// mark a complete run partial.
	var interrupted, returned atomic.Bool
	done := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case <-ctx.Done():
			if !returned.Load() {
				interrupted.Store(true)
				aborter.Abort(false)
			}
		case <-done:
		}
	}()

	out := &phaseOutcome{codes: map[string]int64{}}
	var err error
	if ctx.Err() == nil {
		switch c.Protocol {
		case HTTP, HTTP2:
			err = runHTTP(c, payload, ro, out)
		case GRPC:
			err = runGRPC(c, payload, ro, out)
		}
	} else {
		interrupted.Store(true)
	}
	returned.Store(true)
	close(done)
	<-watcherDone
	stopProgress()
	out.interrupted = interrupted.Load()
	if err != nil && !out.interrupted {
		return nil, err
	}
	// A run stopped before it started, or while fortio was still connecting,
	// returns fortio's error result or none: report it as zero requests.
	if err != nil || out.runner.DurationHistogram == nil {
		out.runner = periodic.RunnerResults{StartTime: start, NumThreads: c.Connections}
		out.codes = map[string]int64{}
	}
	if onProgress != nil {
		p := cnt.snapshot(phase, start)
		p.Final = true
		onProgress(p)
	}
	return out, nil
}

func runHTTP(c *Config, payload []byte, ro periodic.RunnerOptions, out *phaseOutcome) error {
	o := fhttp.HTTPRunnerOptions{
		RunnerOptions: ro,
		HTTPOptions: fhttp.HTTPOptions{
			// HTTP/1.1 goes through fortio's fast client, as `fortio load` does;
			// HTTP2 makes fortio switch to net/http's client (h2c on http://).
			H2:             c.Protocol == HTTP2,
			HTTPReqTimeOut: c.Timeout,
			Payload:        payload,
		},
	}
	o.URL = c.URL
	res, err := fhttp.RunHTTPTest(&o)
	if err != nil {
		return fmt.Errorf("%s did not answer the first request on every connection (fix the target or its URL): %w", c.URL, err)
	}
	if res.ServerReply.Error {
		return fmt.Errorf("fortio could not run: %s", res.ServerReply.Message)
	}
	out.runner = res.RunnerResults
	out.sockets = res.SocketCount
	for code, n := range res.RetCodes {
		out.codes[strconv.Itoa(code)] = n
	}
	return nil
}

func runGRPC(c *Config, payload []byte, ro periodic.RunnerOptions, out *phaseOutcome) error {
	o := fgrpc.GRPCRunnerOptions{
		RunnerOptions: ro,
		Destination:   c.grpcDestination(),
		Service:       c.GRPCService,
		UsePing:       c.GRPCPing,
		Payload:       string(payload),
		Streams:       1, // one stream per connection, like HTTP/1.1
	}
	res, err := fgrpc.RunGRPCTest(&o)
	if err != nil {
		return fmt.Errorf("%s did not answer the first gRPC call (fix the target, its port or --grpc-service): %w", c.URL, err)
	}
	out.runner = res.RunnerResults
	for code, n := range res.RetCodes {
		out.codes[code] = n
	}
	return nil
}

// makePayload returns size bytes of letters and digits: valid UTF-8 (gRPC
// string fields require it) and not compressible to nothing, so a proxy that
// compresses does not get an unrealistically easy body. The seed is fixed so
// that runs are comparable.
func makePayload(size int) []byte {
	if size <= 0 {
		return nil
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(4, 2))
	b := make([]byte, size)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

// newResult builds the Result of the measured phase.
func newResult(c *Config, load *phaseOutcome) *Result {
	rr := &load.runner
	lat, buckets := latencyFromFortio(rr.DurationHistogram)
	r := &Result{
		Kind:         KindResult,
		Generator:    "fortio " + fortioVersion(),
		StartTime:    rr.StartTime.UTC(),
		EndTime:      rr.StartTime.Add(rr.ActualDuration).UTC(),
		URL:          c.URL,
		Protocol:     c.Protocol,
		RequestedQPS: c.QPS,
		ActualQPS:    rr.ActualQPS,
		Connections:  rr.NumThreads,
		Sockets:      load.sockets,
		// Go's duration string, readable back with time.ParseDuration.
		ActualDuration:    rr.ActualDuration.String(),
		RequestedRequests: c.Requests,
		PayloadSize:       c.PayloadSize,
		Uniform:           true,
		Jitter:            true,
		NoCatchUp:         true,
		KeepAlive:         true,
		Codes:             load.codes,
		LatencyMs:         lat,
		HistogramMs:       buckets,
	}
	if c.Requests == 0 {
		r.RequestedDuration = c.Duration.String()
	}
	if c.Warmup > 0 {
		r.Warmup = c.Warmup.String()
	}
	if rr.DurationHistogram != nil {
		r.Requests = rr.DurationHistogram.Count
	}
	if rr.ErrorsDurationHistogram != nil {
		r.Errors = rr.ErrorsDurationHistogram.Count
	}
	return r
}

// fortioVersion is the version of the fortio module this binary was built
// with, from the build information ("1.75.3"), or "(unknown version)".
func fortioVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "fortio.org/fortio" {
				if m.Replace != nil {
					m = m.Replace
				}
				return strings.TrimPrefix(m.Version, "v")
			}
		}
	}
	return "(unknown version)"
}
