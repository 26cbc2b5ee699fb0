// Command mesh-sidecar is the lab's demo sidecar: a test fixture that sits in a pod the way
// Istio's does, so the probe can be checked against a proxy whose every added microsecond is
// known. It is not a service mesh: no mTLS, no routing.
//
//	mesh-sidecar init --app-port 8080 --proxy-port 15006 [--exclude-ports 15000]
//	                  [--outbound-port 15001 --outbound-dest-ports 80 --proxy-uid 1337]
//	mesh-sidecar init --uninstall
//	mesh-sidecar proxy --listen :15006 --upstream 127.0.0.1:8080 --delay 1ms --cpu-per-request 200us --admin :15000
//	                   [--outbound-listen 127.0.0.1:15001]
//
// With the outbound flags, init also redirects the pod's outgoing TCP to the listed destination
// ports to the proxy's outbound listener (Istio's nat OUTPUT rules; the proxy's user is exempt),
// and the proxy forwards each such connection to its original destination with the same delays,
// keeping a second account at /outbound/stats.
//
// init runs as the pod's init container: it installs nftables rules in the pod's network
// namespace that redirect inbound TCP for the application's port to the proxy (Istio's
// `iptables -t nat -A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006`), in a table
// of its own that it replaces on every run. proxy runs as the sidecar container: HTTP/1.1
// keep-alive connections forwarded to the application on 127.0.0.1, each request held for the
// configured delay and CPU cost, and the proxy's own account of every residence (from kernel
// socket timestamps) served as JSON on the admin port: GET /stats, POST /reset, GET /healthz.
//
// As with Istio, the probe then sees client <-> proxy on eth0 (after the REDIRECT) and
// proxy <-> application on lo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/internal/version"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar/account"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar/redirect"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  mesh-sidecar init --app-port PORTS --proxy-port 15006 [--exclude-ports PORTS]
                    [--outbound-port 15001 --outbound-dest-ports PORTS [--proxy-uid 1337]]
  mesh-sidecar init --uninstall
  mesh-sidecar proxy [--listen :15006] [--upstream 127.0.0.1:8080] [--delay 0] [--response-delay 0]
                     [--cpu-per-request 0] [--admin :15000] [--keep 100000] [--outbound-listen ADDR]
  mesh-sidecar version
`

// run is the whole program; it returns the exit code (2 for usage errors).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "init":
		o, err := parseInit(args[1:], stderr)
		if err != nil {
			return usageError(stderr, err)
		}
		if err := runInit(o, log); err != nil {
			log.Error("init failed", "err", err)
			return 1
		}
		return 0
	case "proxy":
		o, err := parseProxy(args[1:], stderr)
		if err != nil {
			return usageError(stderr, err)
		}
		if err := runProxy(ctx, o, log); err != nil {
			log.Error("proxy failed", "err", err)
			return 1
		}
		return 0
	case "version":
		fmt.Fprintln(stdout, "mesh-sidecar", version.Version)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown mode %q\n%s", args[0], usage)
		return 2
	}
}

func usageError(stderr io.Writer, err error) int {
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "mesh-sidecar:", err)
	}
	return 2
}

// initOptions are init's flags, validated.
type initOptions struct {
	rules     redirect.Rules
	uninstall bool
}

func parseInit(args []string, out io.Writer) (initOptions, error) {
	fs := flag.NewFlagSet("mesh-sidecar init", flag.ContinueOnError)
	fs.SetOutput(out)
	appPorts := fs.String("app-port", "", `application port(s) whose inbound TCP goes to the proxy: "8080", "8080,9090", or "*" for every port (Istio's default)`)
	proxyPort := fs.Uint("proxy-port", 15006, "port the proxy listens on")
	exclude := fs.String("exclude-ports", "", "comma-separated ports never redirected (with --app-port '*': the admin port, health ports)")
	uninstall := fs.Bool("uninstall", false, "delete the sidecar's nftables table and exit")
	outPort := fs.Uint("outbound-port", 0, "port of the proxy's outbound listener; with it, outgoing TCP to --outbound-dest-ports is redirected there")
	outDests := fs.String("outbound-dest-ports", "", "destination ports of the outgoing TCP to capture (with --outbound-port)")
	proxyUID := fs.Uint("proxy-uid", 1337, "the proxy's user: its own connections are never captured")
	if err := fs.Parse(args); err != nil {
		return initOptions{}, err
	}
	if fs.NArg() > 0 {
		return initOptions{}, fmt.Errorf("init: unexpected arguments %q", fs.Args())
	}
	if *uninstall {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name != "uninstall" })
		if set {
			return initOptions{}, errors.New("init: --uninstall takes no other flag")
		}
		return initOptions{uninstall: true}, nil
	}
	var o initOptions
	var err error
	if *proxyPort == 0 || *proxyPort > 65535 {
		return o, fmt.Errorf("init: --proxy-port %d is not a port (1-65535)", *proxyPort)
	}
	o.rules.ProxyPort = uint16(*proxyPort)
	switch strings.TrimSpace(*appPorts) {
	case "":
		return o, errors.New(`init: --app-port is required (a port, a list, or "*")`)
	case "*":
		o.rules.AllPorts = true
	default:
		if o.rules.AppPorts, err = parsePorts(*appPorts); err != nil {
			return o, fmt.Errorf("init: --app-port: %w", err)
		}
	}
	if o.rules.ExcludePorts, err = parsePorts(*exclude); err != nil {
		return o, fmt.Errorf("init: --exclude-ports: %w", err)
	}
	switch {
	case *outPort > 65535:
		return o, fmt.Errorf("init: --outbound-port %d is not a port (1-65535)", *outPort)
	case *outPort == 0 && strings.TrimSpace(*outDests) != "":
		return o, errors.New("init: --outbound-dest-ports needs --outbound-port")
	case *outPort != 0:
		dests, err := parsePorts(*outDests)
		if err != nil {
			return o, fmt.Errorf("init: --outbound-dest-ports: %w", err)
		}
		if *proxyUID > 1<<31 {
			return o, fmt.Errorf("init: --proxy-uid %d is not a user id", *proxyUID)
		}
		o.rules.Outbound = &redirect.Outbound{ProxyPort: uint16(*outPort), DestPorts: dests, ProxyUID: uint32(*proxyUID)}
	}
	if err := o.rules.Validate(); err != nil {
		return o, fmt.Errorf("init: %w", err)
	}
	return o, nil
}

// parsePorts reads "8080, 9090" (empty: none), sorted and without duplicates.
func parsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint16
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", strings.TrimSpace(part))
		}
		out = append(out, uint16(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// runInit changes the network namespace it runs in: the pod's, in an init container with
// NET_ADMIN (nftables is configured over netlink, which needs CAP_NET_ADMIN in that namespace's
// owning user namespace; nothing needs NET_RAW).
func runInit(o initOptions, log *slog.Logger) error {
	if o.uninstall {
		if err := redirect.Uninstall(); err != nil {
			return err
		}
		log.Info("removed nftables table", "table", redirect.Table)
		return nil
	}
	if err := redirect.Install(o.rules); err != nil {
		return err
	}
	ports := "*"
	if !o.rules.AllPorts {
		ports = fmt.Sprint(o.rules.AppPorts)
	}
	log.Info("installed inbound redirect", "table", redirect.Table, "app_ports", ports,
		"proxy_port", o.rules.ProxyPort, "excluded", o.rules.ExcludePorts)
	if out := o.rules.Outbound; out != nil {
		log.Info("installed outbound redirect", "table", redirect.Table, "dest_ports", out.DestPorts,
			"proxy_port", out.ProxyPort, "exempt_uid", out.ProxyUID)
	}
	return nil
}

// proxyOptions are proxy's flags, validated.
type proxyOptions struct {
	listen, upstream, admin string
	outboundListen          string // "" without outbound
	delay, respDelay, cpu   time.Duration
	keep                    int
}

// maxHold bounds the configured delays and CPU cost: a proxy that holds each request longer
// than this is a misconfiguration (a wrong unit), not a workload worth measuring.
const maxHold = 10 * time.Second

func parseProxy(args []string, out io.Writer) (proxyOptions, error) {
	fs := flag.NewFlagSet("mesh-sidecar proxy", flag.ContinueOnError)
	fs.SetOutput(out)
	var o proxyOptions
	fs.StringVar(&o.listen, "listen", ":15006", "address to receive the redirected inbound traffic on")
	fs.StringVar(&o.upstream, "upstream", "127.0.0.1:8080", "the application, host:port (inside the pod: 127.0.0.1)")
	fs.DurationVar(&o.delay, "delay", 0, "wall time held on the request path of each request before forwarding it")
	fs.DurationVar(&o.respDelay, "response-delay", 0, "wall time held on the response path before returning each response")
	fs.DurationVar(&o.cpu, "cpu-per-request", 0, "CPU time burnt on the request path of each request (after --delay)")
	fs.StringVar(&o.admin, "admin", ":15000", "address of the admin endpoint (GET /stats, POST /reset, GET /healthz)")
	fs.IntVar(&o.keep, "keep", account.DefaultKeep, "residences kept for /stats (older ones are dropped and reported incomplete)")
	fs.StringVar(&o.outboundListen, "outbound-listen", "", "address of the outbound listener (e.g. 127.0.0.1:15001): redirected outgoing connections, forwarded to their original destination; account at /outbound/stats")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("proxy: unexpected arguments %q", fs.Args())
	}
	var errs []error
	listenPort, err := port(o.listen, false)
	if err != nil {
		errs = append(errs, fmt.Errorf("--listen: %w", err))
	}
	if _, err := port(o.upstream, true); err != nil {
		errs = append(errs, fmt.Errorf("--upstream: %w", err))
	}
	adminPort, err := port(o.admin, false)
	if err != nil {
		errs = append(errs, fmt.Errorf("--admin: %w", err))
	} else if adminPort == listenPort {
		errs = append(errs, fmt.Errorf("--admin and --listen both use port %d", adminPort))
	}
	if o.outboundListen != "" {
		if p, err := port(o.outboundListen, false); err != nil {
			errs = append(errs, fmt.Errorf("--outbound-listen: %w", err))
		} else if p == listenPort || p == adminPort {
			errs = append(errs, fmt.Errorf("--outbound-listen uses port %d, which --listen or --admin uses", p))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--delay", o.delay}, {"--response-delay", o.respDelay}, {"--cpu-per-request", o.cpu}} {
		if d.v < 0 || d.v > maxHold {
			errs = append(errs, fmt.Errorf("%s %v: want 0 to %v", d.name, d.v, maxHold))
		}
	}
	if o.keep < 1 || o.keep > 10_000_000 {
		errs = append(errs, fmt.Errorf("--keep %d: want 1 to 10000000", o.keep))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("proxy: %w", errors.Join(errs...))
	}
	return o, nil
}

// port checks host:port and returns the port; the host may be empty (every address) unless
// needHost.
func port(addr string, needHost bool) (uint16, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if needHost && host == "" {
		return 0, fmt.Errorf("%q has no host", addr)
	}
	if host != "" && host != "localhost" {
		if ip := net.ParseIP(host); ip == nil {
			return 0, fmt.Errorf("%q: host must be an IP address or localhost", addr)
		}
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: %q is not a port (1-65535)", addr, p)
	}
	return uint16(n), nil
}

func runProxy(ctx context.Context, o proxyOptions, log *slog.Logger) error {
	acct := account.New(account.Config{Listen: o.listen, Upstream: o.upstream, RequestDelay: o.delay,
		ResponseDelay: o.respDelay, CPUPerRequest: o.cpu}, o.keep)
	// Errors are counted in the account (/stats); the log gets at most one a second, so an
	// application that is down cannot flood it.
	var lastLog atomic.Int64
	logError := func(err error) {
		now := time.Now().UnixNano()
		if last := lastLog.Load(); now-last > int64(time.Second) && lastLog.CompareAndSwap(last, now) {
			log.Warn("request failed", "err", err)
		}
	}
	onError := func(err error) { acct.Error(err); logError(err) }
	p, err := fixture.StartProxyWith(fixture.ProxyOptions{Listen: o.listen, Upstream: o.upstream,
		RequestDelay: o.delay, ResponseDelay: o.respDelay, CPUPerRequest: o.cpu,
		Record: acct.Record, OnError: onError})
	if err != nil {
		return err
	}
	defer p.Close()
	mux := http.NewServeMux()
	mux.Handle("/", acct.Handler())
	if o.outboundListen != "" {
		outAcct := account.New(account.Config{Listen: o.outboundListen, Upstream: "original destination",
			RequestDelay: o.delay, ResponseDelay: o.respDelay, CPUPerRequest: o.cpu}, o.keep)
		outErr := func(err error) { outAcct.Error(err); logError(err) }
		out, err := fixture.StartProxyWith(fixture.ProxyOptions{Listen: o.outboundListen, OriginalDestination: true,
			RequestDelay: o.delay, ResponseDelay: o.respDelay, CPUPerRequest: o.cpu,
			Record: outAcct.Record, OnError: outErr})
		if err != nil {
			return fmt.Errorf("outbound: %w", err)
		}
		defer out.Close()
		mux.Handle("/outbound/", http.StripPrefix("/outbound", outAcct.Handler()))
		log.Info("outbound proxy serving", "listen", out.Addr().String())
	}
	adminLn, err := net.Listen("tcp", o.admin)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	admin := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- admin.Serve(adminLn) }()
	log.Info("proxy serving", "listen", p.Addr().String(), "upstream", o.upstream, "delay", o.delay,
		"response_delay", o.respDelay, "cpu_per_request", o.cpu, "admin", adminLn.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("admin: %w", err)
	}
	// Like a proxy told to stop: the listener closes, open connections are cut, and whatever
	// the account holds is gone with the process.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = admin.Shutdown(sctx)
	log.Info("proxy stopped")
	return nil
}
