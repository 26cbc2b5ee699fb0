package loadgen

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Protocol is what the load generator speaks to the target.
type Protocol string

// Protocols.
const (
	// HTTP is HTTP/1.1 with keep-alive, through fortio's fast client (as
	// `fortio load` uses by default).
	HTTP Protocol = "http"
	// HTTP2 is HTTP/2: h2c (prior knowledge, no upgrade) on http:// URLs, ALPN
	// on https:// ones. fortio serves it through net/http's client.
	HTTP2 Protocol = "http2"
	// GRPC calls the standard grpc.health.v1 Check method, or fortio's Ping
	// service with Config.GRPCPing (needed to send a payload).
	GRPC Protocol = "grpc"
)

// Protocols lists the accepted protocols, for flag help and validation.
var Protocols = []Protocol{HTTP, HTTP2, GRPC}

// Limits that keep a typo from exhausting the node.
const (
	// MaxConnections bounds --connections: each one is a goroutine and a socket.
	MaxConnections = 10000
	// MaxPayloadSize bounds --payload-size: the body is built once, in memory.
	MaxPayloadSize = 16 << 20
)

// Config describes one load run.
type Config struct {
	// URL is the target: http:// or https:// for HTTP and HTTP2; for GRPC
	// grpc://host:port (plaintext), http://host:port (plaintext) or
	// https://host:port (TLS).
	URL      string
	Protocol Protocol
	// QPS is the requested rate over all connections, requests per second.
	// 0 means as fast as the target answers (fortio's max-QPS mode).
	QPS float64
	// Connections is the number of concurrent connections, each sending its
	// next request only after the previous answer (fortio's -c).
	Connections int
	// Duration is how long the measured phase lasts. Ignored when Requests > 0.
	Duration time.Duration
	// Requests, when > 0, plans exactly this many requests for the measured
	// phase instead of running for Duration (fortio's -n). At a fixed QPS, no
	// catch-up skips the requests that come due while their connection is
	// still busy, so fewer may be sent; with QPS 0 all of them are.
	Requests int64
	// Warmup is a phase run before the measured one, at the same rate and
	// connection count, whose requests are counted but not measured: it brings
	// the target, its proxy and their connection pools to a steady state.
	Warmup time.Duration
	// PayloadSize is the request body size in bytes. For HTTP and HTTP2 a
	// non-zero size makes the requests POSTs of application/octet-stream.
	PayloadSize int
	// Timeout is the per-request timeout; 0 means fortio's default, 3s.
	Timeout time.Duration
	// ReadyTimeout is how long to wait, before the first phase, for the
	// target to accept a TCP connection; 0 does not wait.
	ReadyTimeout time.Duration
	// GRPCPing calls fortio's Ping service instead of grpc.health.v1 Check.
	GRPCPing bool
	// GRPCService is the service name sent in health checks ("" is the
	// server's overall health).
	GRPCService string
	// ProgressInterval is how often progress is reported; 0 reports only at
	// the end of each phase.
	ProgressInterval time.Duration
}

// Validate reports every problem with c, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	known := false
	for _, p := range Protocols {
		known = known || c.Protocol == p
	}
	if !known {
		add("--protocol %q is not one of %s", c.Protocol, protocolList())
	}
	if err := c.validateURL(); err != nil {
		errs = append(errs, err)
	}
	if c.QPS < 0 {
		add("--qps %g is negative (0 means as fast as possible)", c.QPS)
	}
	if c.Connections < 1 || c.Connections > MaxConnections {
		add("--connections %d is outside 1..%d", c.Connections, MaxConnections)
	}
	if c.Requests < 0 {
		add("--requests %d is negative", c.Requests)
	}
	if c.Requests == 0 && c.Duration <= 0 {
		add("--duration %s must be positive", c.Duration)
	}
	if c.Warmup < 0 {
		add("--warmup %s is negative", c.Warmup)
	}
	if c.PayloadSize < 0 || c.PayloadSize > MaxPayloadSize {
		add("--payload-size %d is outside 0..%d bytes", c.PayloadSize, MaxPayloadSize)
	}
	if c.Timeout < 0 {
		add("--timeout %s is negative", c.Timeout)
	}
	if c.ReadyTimeout < 0 {
		add("--ready-timeout %s is negative", c.ReadyTimeout)
	}
	if c.ProgressInterval < 0 {
		add("--progress-interval %s is negative", c.ProgressInterval)
	}
	if c.Protocol == GRPC && c.PayloadSize > 0 && !c.GRPCPing {
		add("--payload-size needs --grpc-ping with --protocol grpc: the standard health check has no payload")
	}
	if c.Protocol != GRPC && (c.GRPCPing || c.GRPCService != "") {
		add("--grpc-ping and --grpc-service apply to --protocol grpc only")
	}
	return errors.Join(errs...)
}

func (c *Config) validateURL() error {
	if c.URL == "" {
		return errors.New("--url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("--url %q: %w", c.URL, err)
	}
	schemes := []string{"http", "https"}
	if c.Protocol == GRPC {
		schemes = append(schemes, "grpc")
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("--url %q: the scheme must be one of %s:// for --protocol %s", c.URL, strings.Join(schemes, "://, "), c.Protocol)
	}
	if u.Host == "" {
		return fmt.Errorf("--url %q has no host", c.URL)
	}
	if c.Protocol == GRPC && (u.Path != "" && u.Path != "/" || u.RawQuery != "") {
		return fmt.Errorf("--url %q: a gRPC target is host:port only; the method comes from --grpc-ping", c.URL)
	}
	return nil
}

// grpcDestination is the target in the form fortio's gRPC runner takes:
// host:port for plaintext, the https:// URL for TLS. fortio reads a bare
// http:// prefix as plaintext too, but does not know grpc://.
func (c *Config) grpcDestination() string {
	if rest, ok := strings.CutPrefix(c.URL, "grpc://"); ok {
		return strings.TrimSuffix(rest, "/")
	}
	return c.URL
}

func protocolList() string {
	s := make([]string, len(Protocols))
	for i, p := range Protocols {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
