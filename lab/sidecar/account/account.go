// Package account is the demo sidecar's own record of what it did (cmd/mesh-sidecar proxy): every
// request's residence in the proxy, from kernel socket timestamps (internal/fixture), kept in a
// bounded list and served as JSON on the admin port. It is the ground truth that the lab's
// end-to-end tests compare the eBPF probe's figures with, so it reports exact nearest-rank
// percentiles over the very requests it saw, not estimates.
package account

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

// DefaultKeep bounds the list: 100k residences are about 8 MB, several minutes at the rates the
// lab runs, in a container that should stay small.
const DefaultKeep = 100_000

// Config is the proxy's configuration, echoed in every Stats so a reader knows what was added on
// purpose.
type Config struct {
	Listen        string        `json:"listen"`
	Upstream      string        `json:"upstream"`
	RequestDelay  time.Duration `json:"-"`
	ResponseDelay time.Duration `json:"-"`
	CPUPerRequest time.Duration `json:"-"`
}

// Account keeps the latest residences. Its methods are safe for concurrent use.
type Account struct {
	cfg     Config
	keep    int
	started time.Time

	mu      sync.Mutex
	ring    []entry // oldest first once full: ring[next:] then ring[:next]
	next    int
	total   uint64 // residences since start
	errors  uint64
	lastErr string
	resetAt time.Time
	// resetMono is resetAt on CLOCK_MONOTONIC, the residences' own clock: "since the reset" is
	// decided on it, exactly. Converting a residence's stamp to the wall clock is only as good
	// as the offset between the clocks, read each time, so a request arriving right after a
	// reset could land before it.
	resetMono int64
	cpuReset  time.Duration // process CPU time at resetAt
	// evicted is the arrival time of the newest residence pushed out of the ring: a window
	// starting at or before it is incomplete.
	evicted time.Time
}

type entry struct {
	at time.Time // arrival of the request, wall clock
	r  fixture.Residence
}

// New returns an empty account for a proxy configured as cfg, keeping at most keep residences
// (DefaultKeep when keep <= 0).
func New(cfg Config, keep int) *Account {
	if keep <= 0 {
		keep = DefaultKeep
	}
	now := time.Now()
	return &Account{cfg: cfg, keep: keep, started: now, resetAt: now, resetMono: monotonicNow(), cpuReset: processCPU(),
		ring: make([]entry, 0, min(keep, 4096))}
}

// Record adds one residence; it is the proxy's ProxyOptions.Record.
func (a *Account) Record(r fixture.Residence) {
	e := entry{at: fixture.MonotonicTime(r.Arrived), r: r}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total++
	if len(a.ring) < a.keep {
		a.ring = append(a.ring, e)
		return
	}
	a.evicted = a.ring[a.next].at
	a.ring[a.next] = e
	a.next = (a.next + 1) % a.keep
}

// Error counts an error of the proxy; it is the proxy's ProxyOptions.OnError.
func (a *Account) Error(err error) {
	a.mu.Lock()
	a.errors++
	a.lastErr = err.Error()
	a.mu.Unlock()
}

// Reset forgets every residence and restarts the CPU count: the next Stats without a since
// covers what follows.
func (a *Account) Reset() {
	cpu := processCPU()
	a.mu.Lock()
	a.ring, a.next, a.evicted = a.ring[:0], 0, time.Time{}
	a.resetAt, a.resetMono, a.cpuReset = time.Now(), monotonicNow(), cpu
	a.mu.Unlock()
}

// Summary is a distribution in milliseconds.
type Summary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Bucket counts residences up to LeMs (and above the previous bucket's bound); the last bucket
// has LeMs 0 and holds everything larger.
type Bucket struct {
	LeMs  float64 `json:"le_ms"`
	Count int     `json:"count"`
}

// Sample is one request in the list (?list=true).
type Sample struct {
	At         time.Time `json:"at"`
	RequestMs  float64   `json:"request_ms"`
	ResponseMs float64   `json:"response_ms"`
	TotalMs    float64   `json:"total_ms"`
}

// Stats is GET /stats.
type Stats struct {
	// Since is where the window starts: ?since, else the latest reset (or start).
	Since time.Time `json:"since"`
	Now   time.Time `json:"now"`
	// Requests is the number of residences in the window.
	Requests int `json:"requests"`
	// Complete is false when residences of the window were pushed out of the bounded list.
	Complete bool `json:"complete"`
	// TotalRequests counts every request since the proxy started; Errors every failed one.
	TotalRequests uint64 `json:"total_requests"`
	Errors        uint64 `json:"errors"`
	LastError     string `json:"last_error,omitempty"`
	// Residence is request path plus response path: what the proxy added to each request.
	Residence    Summary   `json:"residence_ms"`
	RequestPath  Summary   `json:"request_path_ms"`
	ResponsePath Summary   `json:"response_path_ms"`
	Histogram    []Bucket  `json:"histogram"`
	Samples      []Sample  `json:"residences,omitempty"`
	Config       ConfigOut `json:"config"`
	CPU          CPU       `json:"cpu"`
	Started      time.Time `json:"started"`
}

// ConfigOut is Config in milliseconds.
type ConfigOut struct {
	Listen          string  `json:"listen"`
	Upstream        string  `json:"upstream"`
	RequestDelayMs  float64 `json:"delay_ms"`
	ResponseDelayMs float64 `json:"response_delay_ms"`
	CPUPerRequestMs float64 `json:"cpu_per_request_ms"`
	Keep            int     `json:"keep"`
}

// CPU is the proxy process's own CPU time (user + system, getrusage), in total and since the
// latest reset: what the probe's CPU accounting of the proxy container should come close to.
type CPU struct {
	TotalSeconds      float64 `json:"total_seconds"`
	SinceResetSeconds float64 `json:"since_reset_seconds"`
}

// histogramBounds are the histogram's upper bounds in ms: a 1-2-5 series from 10 us to 10 s.
var histogramBounds = func() []float64 {
	var b []float64
	for decade := 0.01; decade < 10_000; decade *= 10 {
		b = append(b, decade, 2*decade, 5*decade)
	}
	return append(b, 10_000)
}()

// Stats summarises the residences of requests that arrived at or after since (the latest reset
// when since is zero), with the list of them when list is set.
func (a *Account) Stats(since time.Time, list bool) Stats {
	cpu := processCPU()
	a.mu.Lock()
	keep := func(e entry) bool { return !e.at.Before(since) }
	if since.IsZero() {
		since = a.resetAt
		keep = func(e entry) bool { return e.r.Arrived >= a.resetMono }
	}
	var in []entry
	// Oldest first: before the ring wraps next is 0 and ring[next:] is all of it.
	for _, part := range [][]entry{a.ring[a.next:], a.ring[:a.next]} {
		for _, e := range part {
			if keep(e) {
				in = append(in, e)
			}
		}
	}
	s := Stats{
		Since: since, Now: time.Now(), Requests: len(in),
		Complete:      a.evicted.IsZero() || a.evicted.Before(since),
		TotalRequests: a.total, Errors: a.errors, LastError: a.lastErr,
		Config: ConfigOut{Listen: a.cfg.Listen, Upstream: a.cfg.Upstream, RequestDelayMs: ms(a.cfg.RequestDelay),
			ResponseDelayMs: ms(a.cfg.ResponseDelay), CPUPerRequestMs: ms(a.cfg.CPUPerRequest), Keep: a.keep},
		CPU:     CPU{TotalSeconds: cpu.Seconds(), SinceResetSeconds: (cpu - a.cpuReset).Seconds()},
		Started: a.started,
	}
	a.mu.Unlock()

	total := make([]time.Duration, len(in))
	req := make([]time.Duration, len(in))
	resp := make([]time.Duration, len(in))
	for i, e := range in {
		total[i], req[i], resp[i] = e.r.Total(), e.r.RequestPath, e.r.ResponsePath
	}
	s.Residence, s.RequestPath, s.ResponsePath = summarize(total), summarize(req), summarize(resp)
	s.Histogram = histogram(total)
	if list {
		s.Samples = make([]Sample, len(in))
		for i, e := range in {
			s.Samples[i] = Sample{At: e.at, RequestMs: ms(e.r.RequestPath), ResponseMs: ms(e.r.ResponsePath), TotalMs: ms(e.r.Total())}
		}
	}
	return s
}

// monotonicNow is CLOCK_MONOTONIC in nanoseconds, the clock of fixture.Residence stamps.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Summary{
		P50: ms(fixture.Quantile(ds, 0.5)), P90: ms(fixture.Quantile(ds, 0.9)), P99: ms(fixture.Quantile(ds, 0.99)),
		Max: ms(slices.Max(ds)), Mean: ms(sum / time.Duration(len(ds))),
	}
}

func histogram(ds []time.Duration) []Bucket {
	out := make([]Bucket, len(histogramBounds)+1)
	for i, b := range histogramBounds {
		out[i].LeMs = b
	}
	for _, d := range ds {
		v := ms(d)
		i, _ := slices.BinarySearch(histogramBounds, v)
		out[i].Count++
	}
	// Trailing empty buckets say nothing.
	last := len(out)
	for last > 0 && out[last-1].Count == 0 {
		last--
	}
	return out[:last]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// processCPU is this process's CPU time, user and system, of every thread.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Handler serves the admin endpoints:
//
//	GET  /stats[?since=RFC3339][&list=true]   Stats as JSON
//	POST /reset                               Reset, then 204
//	GET  /healthz                             200 "ok" (the container's readiness probe)
func (a *Account) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				http.Error(w, fmt.Sprintf("since=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", v), http.StatusBadRequest)
				return
			}
			since = t
		}
		list := false
		switch v := r.URL.Query().Get("list"); v {
		case "", "false", "0":
		case "true", "1":
			list = true
		default:
			http.Error(w, fmt.Sprintf("list=%q: want true or false", v), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Stats(since, list))
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		a.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
