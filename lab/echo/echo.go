// Package echo is the lab's demo and test workload: an HTTP server with a configurable service
// time and response size, and a small client that retries until it gets an answer. It is a
// fixture for measuring, not part of the product: the service time it adds is known, so the
// probe's view of "time in the application" can be checked against it.
package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Server answers every request after ServiceTime with PayloadSize bytes.
type Server struct {
	ServiceTime time.Duration
	PayloadSize int
	requests    atomic.Int64
}

// Requests is the number of requests served (health checks excluded).
func (s *Server) Requests() int64 { return s.requests.Load() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	s.requests.Add(1)
	// Read the request body fully before "working", as a real handler would.
	_, _ = io.Copy(io.Discard, r.Body)
	st := s.ServiceTime
	if v := r.URL.Query().Get("service_time"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= time.Minute {
			st = d
		}
	}
	if st > 0 {
		sleepPrecise(st)
	}
	w.Header().Set("Content-Type", "text/plain")
	if rid := r.Header.Get("X-Request-Id"); rid != "" {
		w.Header().Set("X-Request-Id", rid)
	}
	size := s.PayloadSize
	if v := r.URL.Query().Get("size"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 16<<20 {
			size = n
		}
	}
	if size <= 0 {
		fmt.Fprintf(w, "%s %s\n", r.Method, r.URL.Path)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(size))
	buf := make([]byte, min(size, 32<<10))
	for i := range buf {
		buf[i] = 'x'
	}
	for left := size; left > 0; left -= len(buf) {
		_, _ = w.Write(buf[:min(left, len(buf))])
	}
}

// sleepPrecise waits d. time.Sleep alone overshoots short durations by the timer slack; the
// last 100 microseconds are spun so that the service time is what was asked for.
func sleepPrecise(d time.Duration) {
	end := time.Now().Add(d)
	if d > 200*time.Microsecond {
		time.Sleep(d - 100*time.Microsecond)
	}
	for time.Now().Before(end) {
	}
}

// Get GETs url until it answers 200 or retryFor passes, and returns the body.
func Get(ctx context.Context, url string, retryFor time.Duration) ([]byte, error) {
	deadline := time.Now().Add(retryFor)
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return body, nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("get %s: gave up after %s: %w", url, retryFor, last)
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
