// Command mesh-echo is the lab's demo workload: `mesh-echo serve` is an HTTP server with a
// configurable service time, `mesh-echo get URL` a client that retries until it gets a 200.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/echo"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "get":
		err = get(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-echo:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mesh-echo serve [--listen :8080] [--service-time 0] [--payload-size 0]\n       mesh-echo get [--retry-for 30s] URL")
	os.Exit(2)
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to listen on; several, comma-separated, serve the same handler (a second port is how the demo reaches the app past its sidecar, as a mesh's excluded port does)")
	st := fs.Duration("service-time", 0, "time spent on each request before answering")
	size := fs.Int("payload-size", 0, "response body size in bytes (0: a one-line echo)")
	_ = fs.Parse(args)
	h := &echo.Server{ServiceTime: *st, PayloadSize: *size}
	var srvs []*http.Server
	var lns []net.Listener
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", strings.TrimSpace(addr))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		srvs = append(srvs, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range srvs {
			_ = srv.Shutdown(sctx)
		}
	}()
	fmt.Printf("mesh-echo serving on %s (service time %s, payload %d bytes)\n", *listen, *st, *size)
	errs := make(chan error, len(srvs))
	for i := range srvs {
		go func() { errs <- srvs[i].Serve(lns[i]) }()
	}
	for range srvs {
		if err := <-errs; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

func get(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	retry := fs.Duration("retry-for", 30*time.Second, "keep retrying for this long")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	body, err := echo.Get(ctx, fs.Arg(0), *retry)
	if err != nil {
		return err
	}
	fmt.Printf("200 OK from %s: %s", fs.Arg(0), body)
	return nil
}
