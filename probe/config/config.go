// Package config reads the probe's configuration from flags and the
// environment. The sidecar-injecting webhook sets the environment:
//
//	MESH_PROBE_MESH                    none | istio | linkerd | custom
//	MESH_PROBE_PROXY_CONTAINER         the proxy container's name
//	MESH_PROBE_PROXY_INBOUND_PORT      where the proxy receives redirected inbound traffic
//	MESH_PROBE_PROXY_OUTBOUND_PORT     where it receives redirected outbound traffic
//	MESH_PROBE_APP_PORTS               the pod's declared container ports, comma separated
//	MESH_PROBE_EXCLUDED_INBOUND_PORTS  ports whose inbound traffic bypasses the proxy
//	MESH_PROBE_LOG_LEVEL               debug | info | warn | error
//	MESH_PROBE_LISTEN                  address of the probe's HTTP server (default :9464)
//	MESH_PROBE_SAMPLE_ABOVE_RPS        request rate above which exchanges are sampled (default 5000, 0: never)
//	MESH_PROBE_FOLLOW                  where connections are followed: process (default) or kernel
//
// A flag of the same name (--mesh, --proxy-container, ...) overrides its
// variable. Proxy ports and the proxy container default per mesh (Istio:
// 15006 / 15001, istio-proxy, source address 127.0.0.6; Linkerd: 4143 /
// 4140, linkerd-proxy). A custom mesh has no defaults: the proxy container
// and its inbound port must be given, the outbound port only if it has one.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Mesh is the service mesh whose sidecar the pod runs, if any.
type Mesh string

// Meshes.
const (
	MeshNone    Mesh = "none"
	MeshIstio   Mesh = "istio"
	MeshLinkerd Mesh = "linkerd"
	// MeshCustom is a sidecar proxy that is neither Istio's nor Linkerd's,
	// described entirely by the configuration: the lab's mesh-sidecar, Caddy
	// in the sidecar position, or any proxy behind an inbound REDIRECT.
	MeshCustom Mesh = "custom"
)

// DefaultListen is the probe's HTTP address: the port of the OpenTelemetry
// Prometheus exporter convention, unlikely to clash with an application.
const DefaultListen = ":9464"

// DefaultSampleAboveRPS: below this many requests (and outbound calls) per
// second the probe follows every exchange; above, part of each period
// (probe/sampler), which caps its CPU at about what this rate costs.
const DefaultSampleAboveRPS = 5000

// Config is the validated configuration.
type Config struct {
	Mesh              Mesh
	ProxyContainer    string
	ProxyInboundPort  uint16 // 0 with MeshNone
	ProxyOutboundPort uint16 // 0 with MeshNone
	// AppPorts are the ports the probe measures: on eth0 (the service
	// port clients connect to, before any redirect) and on lo (where the
	// sidecar forwards to: the same port for Istio and Linkerd). Declared
	// ports minus excluded ones and the mesh's own ports.
	AppPorts []uint16
	// ExcludedInboundPorts bypass the proxy; they are not measured.
	ExcludedInboundPorts []uint16
	// ProxySources are source addresses the sidecar uses toward the
	// application (Istio: 127.0.0.6); a connection from one of them on lo
	// teaches the probe an application port it was not told about.
	ProxySources []netip.Addr
	LogLevel     slog.Level
	Listen       string
	// SampleAboveRPS: see DefaultSampleAboveRPS; 0 follows every exchange
	// at any rate.
	SampleAboveRPS float64
	// Follow: where the connections are followed (FollowProcess when
	// empty).
	Follow Follow
	// Warnings describe input the probe adjusted rather than rejected.
	Warnings []string
}

// Follow says where the probe follows the pod's connections.
type Follow string

const (
	// FollowProcess: the TC programs record each segment worth
	// following and the probe's process follows the connections
	// (bpf/c/segments.bpf.c, probe/flowtrack). Keeping no state in the
	// kernel costs each request less (docs/benchmarks.md, session 18).
	FollowProcess Follow = "process"
	// FollowKernel: the TC programs follow the connections themselves and
	// send finished exchanges (bpf/c/exchange.bpf.c), as before session
	// 18; kept for comparison.
	FollowKernel Follow = "kernel"
)

// meshDefaults are the constants of each mesh's sidecar.
var meshDefaults = map[Mesh]struct {
	inbound, outbound uint16
	container         string
	sources           []netip.Addr
	// ownPorts are the sidecar's own listeners; declared on the proxy
	// container, they must not be mistaken for application ports.
	ownPorts []uint16
}{
	MeshIstio: {15006, 15001, "istio-proxy", []netip.Addr{netip.MustParseAddr("127.0.0.6")},
		[]uint16{15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090}},
	MeshLinkerd: {4143, 4140, "linkerd-proxy", nil, []uint16{4140, 4143, 4190, 4191}},
}

// variable names, and the flag that overrides each.
var vars = []struct{ env, flag, usage string }{
	{"MESH_PROBE_MESH", "mesh", "service mesh of the pod: none, istio, linkerd or custom"},
	{"MESH_PROBE_PROXY_CONTAINER", "proxy-container", "name of the proxy container (default per mesh)"},
	{"MESH_PROBE_PROXY_INBOUND_PORT", "proxy-inbound-port", "proxy's inbound port (default per mesh: istio 15006, linkerd 4143)"},
	{"MESH_PROBE_PROXY_OUTBOUND_PORT", "proxy-outbound-port", "proxy's outbound port (default per mesh: istio 15001, linkerd 4140)"},
	{"MESH_PROBE_APP_PORTS", "app-ports", "comma-separated container ports of the pod to measure"},
	{"MESH_PROBE_EXCLUDED_INBOUND_PORTS", "excluded-inbound-ports", "comma-separated ports whose inbound traffic bypasses the proxy"},
	{"MESH_PROBE_LOG_LEVEL", "log-level", "debug, info, warn or error (default info)"},
	{"MESH_PROBE_LISTEN", "listen", "address of /v1/snapshot, /metrics, /healthz and /readyz (default " + DefaultListen + ")"},
	{"MESH_PROBE_FOLLOW", "follow", "where the pod's connections are followed: process (default: the programs record segments) or kernel (the programs follow them)"},
	{"MESH_PROBE_SAMPLE_ABOVE_RPS", "sample-above-rps", "requests per second above which the probe follows exchanges part of each period only (default " + strconv.Itoa(DefaultSampleAboveRPS) + "; 0: every exchange at any rate)"},
}

// FlagSet declares the flags on fs, returning the values they set (only
// flags given on the command line appear in the map).
func FlagSet(fs *flag.FlagSet) func() map[string]string {
	vals := map[string]*string{}
	for _, v := range vars {
		vals[v.env] = fs.String(v.flag, "", v.usage+" (env "+v.env+")")
	}
	return func() map[string]string {
		set := map[string]string{}
		fs.Visit(func(f *flag.Flag) {
			for _, v := range vars {
				if v.flag == f.Name {
					set[v.env] = *vals[v.env]
				}
			}
		})
		return set
	}
}

// Load parses args (without the program name) and the environment. Extra
// flags may be declared on fs by the caller before; fs may be nil.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	if fs == nil {
		fs = flag.NewFlagSet("mesh-probe", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
	}
	setFlags := FlagSet(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	flags := setFlags()
	get := func(env string) string {
		if v, ok := flags[env]; ok {
			return strings.TrimSpace(v)
		}
		return strings.TrimSpace(getenv(env))
	}
	return parse(get)
}

// ParseSampleAboveRPS reads a sampling threshold (MESH_PROBE_SAMPLE_ABOVE_RPS,
// and the webhook's flag that sets it).
func ParseSampleAboveRPS(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, errors.New("want a number of requests per second, 0 or more (0: never sample)")
	}
	return f, nil
}

var containerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func parse(get func(string) string) (Config, error) {
	var c Config
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch m := Mesh(strings.ToLower(get("MESH_PROBE_MESH"))); m {
	case "", MeshNone:
		c.Mesh = MeshNone
	case MeshIstio, MeshLinkerd, MeshCustom:
		c.Mesh = m
	default:
		fail("MESH_PROBE_MESH=%q: want none, istio, linkerd or custom", clip(string(m)))
	}
	def := meshDefaults[c.Mesh]

	c.ProxyContainer = get("MESH_PROBE_PROXY_CONTAINER")
	if c.ProxyContainer == "" {
		c.ProxyContainer = def.container
	} else if len(c.ProxyContainer) > 63 || !containerName.MatchString(c.ProxyContainer) {
		fail("MESH_PROBE_PROXY_CONTAINER=%q: not a container name (lower-case letters, digits and '-', at most 63)", clip(c.ProxyContainer))
	}

	port := func(env string, def uint16) uint16 {
		s := get(env)
		if s == "" {
			return def
		}
		p, err := parsePort(s)
		if err != nil {
			fail("%s: %v", env, err)
		}
		return p
	}
	c.ProxyInboundPort = port("MESH_PROBE_PROXY_INBOUND_PORT", def.inbound)
	c.ProxyOutboundPort = port("MESH_PROBE_PROXY_OUTBOUND_PORT", def.outbound)
	if c.Mesh == MeshCustom {
		// Nothing to default to: a wrong guess would misname the proxy's CPU or count its own
		// port as the application's.
		if c.ProxyContainer == "" {
			fail("MESH_PROBE_PROXY_CONTAINER is required with MESH_PROBE_MESH=custom")
		}
		if get("MESH_PROBE_PROXY_INBOUND_PORT") == "" {
			fail("MESH_PROBE_PROXY_INBOUND_PORT is required with MESH_PROBE_MESH=custom")
		}
	}
	if c.Mesh == MeshNone {
		if c.ProxyInboundPort != 0 || c.ProxyOutboundPort != 0 {
			fail("proxy ports given with MESH_PROBE_MESH=none: set the mesh (istio, linkerd or custom) or drop MESH_PROBE_PROXY_*_PORT")
		}
	} else if c.ProxyInboundPort != 0 && c.ProxyInboundPort == c.ProxyOutboundPort {
		fail("MESH_PROBE_PROXY_INBOUND_PORT and MESH_PROBE_PROXY_OUTBOUND_PORT are both %d", c.ProxyInboundPort)
	}
	c.ProxySources = def.sources

	declared, err := parsePorts(get("MESH_PROBE_APP_PORTS"))
	if err != nil {
		fail("MESH_PROBE_APP_PORTS: %v", err)
	}
	c.ExcludedInboundPorts, err = parsePorts(get("MESH_PROBE_EXCLUDED_INBOUND_PORTS"))
	if err != nil {
		fail("MESH_PROBE_EXCLUDED_INBOUND_PORTS: %v", err)
	}

	switch lvl := strings.ToLower(get("MESH_PROBE_LOG_LEVEL")); lvl {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		fail("MESH_PROBE_LOG_LEVEL=%q: want debug, info, warn or error", clip(lvl))
	}

	c.SampleAboveRPS = DefaultSampleAboveRPS
	if v := get("MESH_PROBE_SAMPLE_ABOVE_RPS"); v != "" {
		if f, err := ParseSampleAboveRPS(v); err != nil {
			fail("MESH_PROBE_SAMPLE_ABOVE_RPS=%q: %v", clip(v), err)
		} else {
			c.SampleAboveRPS = f
		}
	}

	switch f := Follow(strings.ToLower(get("MESH_PROBE_FOLLOW"))); f {
	case "", FollowProcess:
		c.Follow = FollowProcess
	case FollowKernel:
		c.Follow = FollowKernel
	default:
		fail("MESH_PROBE_FOLLOW=%q: want process or kernel", clip(string(f)))
	}

	c.Listen = get("MESH_PROBE_LISTEN")
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	var listenPort uint16
	if host, p, err := net.SplitHostPort(c.Listen); err != nil {
		fail("MESH_PROBE_LISTEN=%q: %v", clip(c.Listen), err)
	} else if listenPort, err = parsePort(p); err != nil {
		fail("MESH_PROBE_LISTEN=%q: %v", clip(c.Listen), err)
	} else if host != "" {
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && host != "localhost" {
			fail("MESH_PROBE_LISTEN=%q: host must be an IP address", clip(c.Listen))
		}
	}

	for _, p := range declared {
		switch {
		case slices.Contains(c.ExcludedInboundPorts, p):
			c.Warnings = append(c.Warnings, fmt.Sprintf("port %d is excluded from the proxy: not measured", p))
		case p == c.ProxyInboundPort || p == c.ProxyOutboundPort || slices.Contains(def.ownPorts, p):
			c.Warnings = append(c.Warnings, fmt.Sprintf("port %d belongs to the %s proxy: not an application port", p, c.Mesh))
		case p == listenPort:
			fail("port %d is both an application port and the probe's listen port: change MESH_PROBE_LISTEN", p)
		default:
			c.AppPorts = append(c.AppPorts, p)
		}
	}
	if len(c.AppPorts) == 0 && len(errs) == 0 {
		if len(declared) == 0 {
			fail("MESH_PROBE_APP_PORTS is empty: the probe measures requests to the pod's declared container ports and has none to watch")
		} else {
			fail("MESH_PROBE_APP_PORTS=%v leaves no port to measure once excluded and proxy ports are removed", declared)
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// parsePort accepts 1..65535 in decimal.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", clip(s))
	}
	return uint16(n), nil
}

// parsePorts parses a comma-separated list, sorted and without duplicates.
func parsePorts(s string) ([]uint16, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 1024 {
		return nil, fmt.Errorf("%d ports: at most 1024", len(parts))
	}
	var out []uint16
	for _, part := range parts {
		p, err := parsePort(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// clip keeps error messages short whatever the input.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Usage describes the environment variables, for --help.
func Usage() string {
	var b strings.Builder
	b.WriteString("Environment (a flag of the same name overrides its variable):\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "  %-36s %s\n", v.env, v.usage)
	}
	return b.String()
}
