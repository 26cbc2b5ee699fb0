package loadgen

import (
	"context"
	"net"
	"net/url"
	"time"

	"fortio.org/log"
)

// readyRetryEvery is the pause between two attempts to reach the target.
const readyRetryEvery = 250 * time.Millisecond

// waitForTarget returns once the target accepts a TCP connection, or when
// c.ReadyTimeout has passed, or ctx ends. It is there because a Service can
// refuse connections for a moment after its pods turn Ready: kube-proxy
// programs a new endpoint after the EndpointSlice says so, and a sidecar
// may start listening after its readiness was last checked. fortio gives
// up on the first failed request of any connection (a CI run of the Caddy
// end-to-end test failed that way, "error -1", right after the Deployment
// became available). Only the connection is waited for: once it is
// accepted, fortio's own first requests decide, so a wrong path or a
// failing target is reported at once, with fortio's error.
func waitForTarget(ctx context.Context, c *Config) {
	addr, ok := targetAddr(c)
	if c.ReadyTimeout <= 0 || !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.ReadyTimeout)
	defer cancel()
	start := time.Now()
	warned := false
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			if warned {
				log.Warnf("%s accepts connections after %s", addr, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if !warned {
			log.Warnf("%s does not accept connections yet (%v); retrying for up to %s", addr, err, c.ReadyTimeout)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(readyRetryEvery):
		}
	}
}

// targetAddr is the target's host:port, with the scheme's default port for
// http and https; false when there is none to wait for (grpc:// without a
// port, which fortio then rejects).
func targetAddr(c *Config) (string, bool) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Hostname() == "" {
		return "", false
	}
	if u.Port() != "" {
		return u.Host, true
	}
	switch u.Scheme {
	case "http":
		return net.JoinHostPort(u.Hostname(), "80"), true
	case "https":
		return net.JoinHostPort(u.Hostname(), "443"), true
	}
	return "", false
}
