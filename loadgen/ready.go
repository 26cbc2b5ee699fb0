package loadgen

import (
	"context"
	"net"
	"net/url"
	"time"

	"fortio.org/log"
)

// readyRetryEvery is the pause after a failed attempt to reach the target.
const readyRetryEvery = 250 * time.Millisecond

// readyStreak is how many connections in a row the target must accept.
// Behind a Service each connection goes to an endpoint of kube-proxy's
// choosing; while kube-proxy still has a pod that has gone (a rollout),
// some connections go nowhere. With half the endpoints stale, eight in a
// row pass by chance once in 256 waits.
const readyStreak = 8

// waitForTarget returns once the target accepts readyStreak TCP
// connections in a row, or when c.ReadyTimeout has passed, or ctx ends.
// fortio gives up on the first failed request of any connection, and a
// Service can fail some connections for a moment after its pods turn
// Ready: kube-proxy programs a new endpoint, and drops a deleted one, a
// little after the EndpointSlice says so, and a sidecar may start
// listening after its readiness was last checked. Two CI runs failed that
// way with fortio's "error -1": right after a Deployment became available,
// and (no request answered in 3 s) right after `probe enable --restart`
// rolled the pods. Only connections are waited for: once they are
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
	dial := (&net.Dialer{Timeout: time.Second}).DialContext
	failed, ok := waitAccepting(ctx, addr, dial, func(err error) {
		log.Warnf("%s does not accept every connection yet (%v); retrying for up to %s", addr, err, c.ReadyTimeout)
	})
	if ok && failed > 0 {
		log.Warnf("%s accepts connections after %s (%d failed)", addr, time.Since(start).Round(time.Millisecond), failed)
	}
}

// waitAccepting dials addr until readyStreak dials in a row succeed, or ctx
// ends. It returns how many dials failed, and whether the streak was
// reached; firstFailure is called on the first failure.
func waitAccepting(ctx context.Context, addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error), firstFailure func(error)) (failed int, ok bool) {
	streak := 0
	for streak < readyStreak {
		conn, err := dial(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			streak++
			continue
		}
		if failed == 0 {
			firstFailure(err)
		}
		failed++
		streak = 0
		select {
		case <-ctx.Done():
			return failed, false
		case <-time.After(readyRetryEvery):
		}
	}
	return failed, true
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
