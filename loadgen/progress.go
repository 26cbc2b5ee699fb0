package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"fortio.org/fortio/periodic"
)

// KindProgress is the kind of a progress line.
const KindProgress = "LoadProgress"

// Phase names a part of the run.
type Phase string

// Phases, in the order they run.
const (
	PhaseWarmup Phase = "warmup"
	PhaseLoad   Phase = "load"
)

// Progress is a snapshot of a phase, reported every Config.ProgressInterval
// and once more, with Final set, when the phase ends.
type Progress struct {
	Kind  string    `json:"kind"`
	Phase Phase     `json:"phase"`
	Time  time.Time `json:"time"`
	// ElapsedSeconds is the time since the phase started.
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	// Requests and Errors are the answered requests so far, and those that
	// failed (socket errors, non-2xx HTTP codes, non-SERVING gRPC answers).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// QPS is Requests / ElapsedSeconds: the rate achieved so far.
	QPS float64 `json:"qps"`
	// Final marks the phase's last report.
	Final bool `json:"final,omitempty"`
}

// counter counts requests as they complete. It plugs into fortio's runner as
// an AccessLogger, the one hook fortio calls after every request: its own
// counts are per connection and only merged when the run ends, too late for
// live progress. Two atomic adds per request cost nothing measurable next to
// a network round trip.
type counter struct {
	requests atomic.Int64
	errors   atomic.Int64
}

var _ periodic.AccessLogger = (*counter)(nil)

func (c *counter) Start(ctx context.Context, _ periodic.ThreadID, _ int64, _ time.Time) context.Context {
	return ctx
}

func (c *counter) Report(_ context.Context, _ periodic.ThreadID, _ int64, _ time.Time, _ float64, ok bool, _ string) {
	c.requests.Add(1)
	if !ok {
		c.errors.Add(1)
	}
}

func (c *counter) Info() string { return "kubectl-mesh progress counter" }

func (c *counter) snapshot(phase Phase, start time.Time) Progress {
	now := time.Now()
	p := Progress{
		Kind:           KindProgress,
		Phase:          phase,
		Time:           now.UTC(),
		ElapsedSeconds: now.Sub(start).Seconds(),
		Requests:       c.requests.Load(),
		Errors:         c.errors.Load(),
	}
	if p.ElapsedSeconds > 0 {
		p.QPS = float64(p.Requests) / p.ElapsedSeconds
	}
	return p
}

// reportEvery calls report with a snapshot every interval until the returned
// stop function is called; stop waits for the reporting goroutine, so no
// report arrives after it returns. A zero interval reports nothing.
func (c *counter) reportEvery(interval time.Duration, phase Phase, start time.Time, report func(Progress)) (stop func()) {
	if interval <= 0 || report == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(c.snapshot(phase, start))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
