package account

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

// residence arrived ago before now, with the given paths.
func residence(ago, req, resp time.Duration) fixture.Residence {
	at := monotonicNow() - int64(ago)
	return fixture.Residence{RequestPath: req, ResponsePath: resp, Arrived: at, Forwarded: at + int64(req),
		Answered: at + int64(req) + 1000, Returned: at + int64(req) + 1000 + int64(resp)}
}

func TestStatsPercentilesAndHistogram(t *testing.T) {
	a := New(Config{Listen: ":15006", Upstream: "127.0.0.1:8080", RequestDelay: time.Millisecond,
		CPUPerRequest: 200 * time.Microsecond}, 0)
	// 1..100 ms of request path, 1 ms of response path each.
	for i := 1; i <= 100; i++ {
		a.Record(residence(0, time.Duration(i)*time.Millisecond, time.Millisecond))
	}
	a.Error(errors.New("dial tcp 127.0.0.1:8080: connection refused"))
	s := a.Stats(time.Time{}, false)
	if s.Requests != 100 || s.TotalRequests != 100 || !s.Complete || s.Errors != 1 || !strings.Contains(s.LastError, "refused") {
		t.Fatalf("counts: %+v", s)
	}
	if s.RequestPath != (Summary{P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}) {
		t.Errorf("request path %+v", s.RequestPath)
	}
	if s.Residence.P50 != 51 || s.ResponsePath.P99 != 1 {
		t.Errorf("residence %+v, response path %+v", s.Residence, s.ResponsePath)
	}
	if s.Config.RequestDelayMs != 1 || s.Config.CPUPerRequestMs != 0.2 || s.Config.Keep != DefaultKeep || s.Samples != nil {
		t.Errorf("config %+v, %d samples without list", s.Config, len(s.Samples))
	}
	// Residences are 2..101 ms: buckets up to 2, 5, 10, 20, 50, 100 and one above.
	counts := map[float64]int{}
	sum := 0
	for _, b := range s.Histogram {
		counts[b.LeMs] = b.Count
		sum += b.Count
	}
	if sum != 100 || counts[2] != 1 || counts[5] != 3 || counts[100] != 50 || s.Histogram[len(s.Histogram)-1].LeMs != 200 {
		t.Errorf("histogram %+v", s.Histogram)
	}
	if s.CPU.TotalSeconds <= 0 || s.CPU.SinceResetSeconds < 0 {
		t.Errorf("cpu %+v", s.CPU)
	}
}

func TestSinceResetAndEviction(t *testing.T) {
	a := New(Config{}, 3)
	a.Record(residence(10*time.Second, time.Millisecond, 0))
	a.Record(residence(5*time.Second, 2*time.Millisecond, 0))
	s := a.Stats(time.Now().Add(-7*time.Second), true)
	if s.Requests != 1 || len(s.Samples) != 1 || s.Samples[0].RequestMs != 2 || !s.Complete {
		t.Fatalf("since 7s ago: %+v", s)
	}
	// Two more: the oldest (10 s ago) is pushed out; a window that reaches back to it is
	// incomplete, one that starts after it is not.
	a.Record(residence(3*time.Second, 3*time.Millisecond, 0))
	a.Record(residence(time.Second, 4*time.Millisecond, 0))
	if s := a.Stats(time.Now().Add(-time.Minute), true); s.Requests != 3 || s.Complete || s.TotalRequests != 4 ||
		s.Samples[0].RequestMs != 2 || s.Samples[2].RequestMs != 4 {
		t.Errorf("after eviction, since a minute: %+v", s)
	}
	if s := a.Stats(time.Now().Add(-7*time.Second), false); s.Requests != 3 || !s.Complete {
		t.Errorf("after eviction, since 7s: requests %d complete %t", s.Requests, s.Complete)
	}
	a.Reset()
	if s := a.Stats(time.Time{}, false); s.Requests != 0 || !s.Complete || s.TotalRequests != 4 {
		t.Errorf("after reset: %+v", s)
	}
	a.Record(residence(0, time.Millisecond, 0))
	if s := a.Stats(time.Time{}, false); s.Requests != 1 {
		t.Errorf("after reset and one request: %d", s.Requests)
	}
}

func TestHandler(t *testing.T) {
	a := New(Config{}, 0)
	a.Record(residence(0, time.Millisecond, time.Millisecond))
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	for url, want := range map[string]int{
		"/stats":                              200,
		"/stats?list=true":                    200,
		"/stats?since=2026-01-02T15:04:05Z":   200,
		"/stats?since=2026-01-02T15:04:05.5Z": 200,
		"/stats?since=yesterday":              400,
		"/stats?list=maybe":                   400,
		"/healthz":                            200,
		"/reset":                              405,
		"/nope":                               404,
	} {
		resp, err := http.Get(srv.URL + url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", url, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(srv.URL + "/stats?list=true")
	if err != nil {
		t.Fatal(err)
	}
	var s Stats
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil || s.Requests != 1 || len(s.Samples) != 1 || s.Samples[0].TotalMs != 2 {
		t.Fatalf("stats: %v %+v", err, s)
	}
	resp, err = http.Post(srv.URL+"/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || a.Stats(time.Time{}, false).Requests != 0 {
		t.Errorf("POST /reset: %d", resp.StatusCode)
	}
}
