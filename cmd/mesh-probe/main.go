// Command mesh-probe is the probe container injected next to workloads: it
// measures, inside its pod, the latency the sidecar proxy adds to each
// inbound request and the CPU of each container, and serves them on
// /v1/snapshot and /metrics (with /healthz and /readyz). Configuration comes
// from the environment the webhook sets (see probe/config); the work is done
// by probe/agent and probe/server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubectl-mesh/kubectl-mesh/internal/version"
	"github.com/kubectl-mesh/kubectl-mesh/probe/agent"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/config"
	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

func main() {
	oneProcessor(os.Getenv)
	os.Exit(run())
}

// oneProcessor runs the probe's goroutines on one processor (GOMAXPROCS
// 1) unless the GOMAXPROCS environment variable says otherwise. The
// probe's work is one loop (drain the ring, pair, record) and an HTTP
// server that answers a few scrapes a minute, within a CPU limit of a
// fraction of a core: a second processor gives it no parallelism, only a
// runtime that wakes and spins a second thread whenever a goroutine is
// readied. At ~10k requests per second the probe's process used 3.0-3.6%
// of a core with one processor against 3.4-3.8% with two (alternating
// 10 s runs, docs/benchmarks.md, session 9).
func oneProcessor(getenv func(string) string) {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

func run() int {
	fs := flag.NewFlagSet("mesh-probe", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	// For running the probe from outside the pod (benchmarks, debugging on
	// a node): the pod's network namespace, e.g. /proc/PID/ns/net.
	netns := fs.String("netns", "", "network namespace to attach in (default: the probe's own, which in a pod is the pod's)")
	// For finding where the probe's own CPU goes (make bench-probe's profile): written on exit.
	cpuProfile := fs.String("cpu-profile", "", "write a Go CPU profile of the probe to this file when it exits")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: mesh-probe [flags]")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), config.Usage())
	}
	cfg, err := config.Load(fs, os.Args[1:], os.Getenv)
	if fs.Parsed() && *showVersion {
		fmt.Println(version.Version)
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	// SIGTERM (the kubelet stopping the pod) detaches everything.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-probe:", err)
		if *netns != "" {
			return 2 // run by hand: say it and stop
		}
		return serveUnavailable(ctx, config.DefaultListen, fmt.Errorf("configuration: %w", err))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mesh-probe:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "mesh-probe:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	a, err := agent.Start(agent.Options{Config: cfg, NetNS: *netns, Logger: log})
	if err != nil {
		log.Error("cannot start the probe", "err", err)
		if *netns != "" {
			return 1
		}
		return serveUnavailable(ctx, cfg.Listen, err)
	}
	serr := server.Serve(ctx, cfg.Listen, server.Handler(a, a.Metrics().Registry), nil)
	cerr := a.Close()
	if err := errors.Join(serr, cerr); err != nil {
		log.Error("mesh-probe", "err", err)
		return 1
	}
	return 0
}

// serveUnavailable keeps a probe that cannot measure running, answering every request with why.
// Exiting would be worse than useless in a pod: a container that keeps crashing is not ready, a
// pod with a container that is not ready leaves its Services, and measuring must never cost the
// workload its traffic. So the pod keeps serving and `kubectl mesh overhead` shows the cause.
func serveUnavailable(ctx context.Context, listen string, cause error) int {
	src := unavailable{cause}
	if err := server.Serve(ctx, listen, server.Handler(src, prometheus.NewRegistry()), nil); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-probe:", err)
		return 1
	}
	return 0
}

// unavailable is the source of a probe that could not start.
type unavailable struct{ cause error }

func (u unavailable) Snapshot(window.Spec) (api.Snapshot, error) {
	return api.Snapshot{}, fmt.Errorf("the probe is not measuring: %w", u.cause)
}

func (u unavailable) Ready() error { return u.cause }
