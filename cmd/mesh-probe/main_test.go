package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
)

// A probe that cannot measure stays alive and says why on every endpoint but liveness.
func TestUnavailableProbeExplains(t *testing.T) {
	srv := httptest.NewServer(server.Handler(unavailable{errors.New("kernel lacks TCX and clsact")}, prometheus.NewRegistry()))
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/v1/snapshot?window=1m": 500} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if want != 200 && !strings.Contains(string(body), "kernel lacks TCX") {
			t.Errorf("%s does not say why: %s", path, body)
		}
	}
}

// The probe runs on one processor unless GOMAXPROCS is set, which the Go
// runtime has then already applied and which is left alone.
func TestOneProcessorUnlessSet(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	runtime.GOMAXPROCS(2)
	oneProcessor(func(k string) string {
		if k == "GOMAXPROCS" {
			return "2"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("with GOMAXPROCS set: %d processors, want the 2 it asked for", got)
	}
	oneProcessor(func(string) string { return "" })
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("by default: %d processors, want 1", got)
	}
}
