package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// Source is what the server serves: the agent.
type Source interface {
	Snapshot(window.Spec) (api.Snapshot, error)
	// Ready returns nil when the programs are attached and the ring
	// buffer is being read.
	Ready() error
}

// Handler routes the probe's endpoints.
func Handler(src Source, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if len(q["window"]) > 1 {
			writeError(w, http.StatusBadRequest, "window given more than once")
			return
		}
		spec, err := api.ParseWindow(q.Get("window"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		snap, err := src.Snapshot(spec)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		// Compact unless asked otherwise, as the Kubernetes API does: indenting the
		// histograms' [index, count] pairs makes a snapshot five times larger, and the
		// plugin reads hundreds of them through the API server.
		if p := q.Get("pretty"); p == "true" || p == "1" {
			enc.SetIndent("", "  ")
		}
		_ = enc.Encode(snap)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// One failing collector must not hide the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// The process answers: that is all liveness means here.
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := src.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// errorBody is the JSON of a failed snapshot request.
type errorBody struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Code       int    `json:"code"`
	Message    string `json:"message"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{APIVersion: api.APIVersion, Kind: "Status", Code: code, Message: msg})
}

// Serve listens on addr until ctx ends, then shuts down gracefully. ready,
// if not nil, receives the bound address once listening.
func Serve(ctx context.Context, addr string, h http.Handler, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
