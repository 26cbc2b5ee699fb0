package agent

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
)

// The upstream's port in the client namespace, and the port the
// application dials behind the REDIRECT (as a Service port would be).
const (
	upstreamPort = 9080
	dialledPort  = 8080
)

// outboundPod is a pod whose application calls out through an outbound
// proxy on 127.0.0.1:15001: fortio in the pod namespace is the
// application, the upstream a server in the client namespace.
type outboundPod struct {
	pod      *fixture.Pod
	proxy    *fixture.Proxy
	upstream *fixture.App
	// url is what the application calls: the proxy's port itself, or,
	// behind an Istio-style OUTPUT REDIRECT, the upstream's address at
	// dialledPort (which is also a port the pod serves, so that the
	// answers on lo carry a measured port).
	url string
}

func newOutboundPod(t *testing.T, redirect bool) *outboundPod {
	t.Helper()
	var err error
	pod := newTestPod(t)
	o := &outboundPod{pod: pod, url: "http://127.0.0.1:15001/"}
	if redirect {
		if err := pod.RedirectOutbound(fixture.ClientAddr, dialledPort, 15001); err != nil {
			t.Skip(err)
		}
		o.url = "http://" + net.JoinHostPort(fixture.ClientAddr, strconv.Itoa(dialledPort)) + "/"
	}
	if o.upstream, err = fixture.StartApp(pod.Client, net.JoinHostPort(fixture.ClientAddr, strconv.Itoa(upstreamPort)), 200*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.upstream.Close() })
	if o.proxy, err = fixture.StartProxy(pod.Pod, "127.0.0.1:15001", net.JoinHostPort(fixture.ClientAddr, strconv.Itoa(upstreamPort)), 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.proxy.Close() })
	return o
}

// settledOutbound waits until the 10s window accounts for want outbound
// calls (measured, ambiguous or unmatched), as settled does for inbound.
func (r *running) settledOutbound(t *testing.T, want int) api.Snapshot {
	t.Helper()
	var s api.Snapshot
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		s = r.snapshot(t, "10s")
		if o := s.Outbound; o != nil {
			accounted := o.Measured + o.Pairing.AmbiguousApp + o.Pairing.UnmatchedApp
			if o.Requests >= uint64(want) && accounted >= uint64(want) {
				return s
			}
		}
	}
	t.Fatalf("window never accounted for %d outbound calls: %+v", want, s.Outbound)
	return s
}

// Outbound calls, the mirror of TestEndToEndProxyAddedLatency: the
// application (fortio, in the pod namespace) calls an upstream in the
// client namespace through a proxy on lo, either dialling the proxy's port
// or dialling the upstream's address with iptables redirecting it to the
// proxy (Istio's OUTPUT rule). The probe's outbound proxy-added p50 agrees
// with the proxy's own residence records within 50 us, grows with the
// configured delay as the proxy's own does within 50 us, and every call is
// counted; inbound sees no requests.
func TestEndToEndOutboundProxyAddedLatency(t *testing.T) {
	requireRoot(t)
	delays := []time.Duration{0, time.Millisecond}
	for _, mode := range []string{"listener", "redirect"} {
		t.Run(mode, func(t *testing.T) {
			o := newOutboundPod(t, mode == "redirect")
			var zeroProbe, zeroTruth float64
			for _, delay := range delays {
				t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
					o.proxy.SetDelays(delay/2, delay-delay/2)
					r := startAgent(t, o.pod, Options{})
					if _, err := o.proxy.Take(); err != nil {
						t.Fatal(err)
					}
					load, err := fixture.RunLoad(o.pod.Pod, fixture.LoadOptions{URL: o.url, QPS: 100, Duration: 3 * time.Second, Connections: 2})
					if err != nil {
						t.Fatal(err)
					}
					truth, err := o.proxy.Take()
					if err != nil {
						t.Fatalf("proxy fixture: %v", err)
					}
					if load.Errors != 0 || len(truth) < int(load.Requests) {
						t.Fatalf("load %+v, proxy handled %d", load, len(truth))
					}
					s := r.settledOutbound(t, len(truth))
					out := s.Outbound
					total, _, _ := residenceTotals(truth)
					t.Logf("%d calls (%.0f rps; application p50 %v); probe: measured %d ambiguous %d unmatched %d/%d (app/upstream)",
						len(truth), load.ActualQPS, load.P50, out.Measured, out.Pairing.AmbiguousApp, out.Pairing.UnmatchedApp, out.Pairing.UnmatchedEdge)
					t.Logf("outbound proxy added p50: probe %.3fms fixture %.3fms | p99: probe %.3fms fixture %.3fms | call p50 %.3fms upstream p50 %.3fms",
						out.ProxyAdded.P50, ms(fixture.Median(total)), out.ProxyAdded.P99, ms(fixture.Quantile(total, 0.99)), out.App.P50, out.Edge.P50)
					if out.Requests != uint64(len(truth)) {
						t.Errorf("probe counted %d outbound calls, the proxy handled %d", out.Requests, len(truth))
					}
					if out.Measured+out.Pairing.AmbiguousApp+out.Pairing.UnmatchedApp != out.Requests {
						t.Errorf("%d calls, %d accounted for", out.Requests, out.Measured+out.Pairing.AmbiguousApp+out.Pairing.UnmatchedApp)
					}
					if !out.ProxyDetected || out.Status != api.StatusOK {
						t.Errorf("outbound status %q, proxy detected %v", out.Status, out.ProxyDetected)
					}
					if s.Requests != 0 {
						t.Errorf("inbound counted %d requests, want 0: the calls are outbound", s.Requests)
					}
					if !within(out.ProxyAdded.P50, fixture.Median(total), 50*time.Microsecond) {
						t.Errorf("outbound proxy added p50: probe %.3fms, fixture %.3fms: more than 50us (+0.39%%) apart",
							out.ProxyAdded.P50, ms(fixture.Median(total)))
					}
					// The application's wait contains the upstream's service time and the proxy's.
					if out.App.P50 < out.Edge.P50 || out.Edge.P50 < 0.2 {
						t.Errorf("call p50 %.3fms, upstream p50 %.3fms: want call >= upstream >= the upstream's 0.2ms", out.App.P50, out.Edge.P50)
					}
					if delay == 0 {
						zeroProbe, zeroTruth = out.ProxyAdded.P50, ms(fixture.Median(total))
					} else {
						pg, tg := out.ProxyAdded.P50-zeroProbe, ms(fixture.Median(total))-zeroTruth
						t.Logf("growth over delay 0: probe %.3fms, proxy %.3fms (configured %v)", pg, tg, delay)
						if math.Abs(pg-tg) > 0.050 {
							t.Errorf("over the zero-delay run the probe's figure grew %.3fms, the proxy's own %.3fms: more than 50us apart", pg, tg)
						}
					}
				})
			}
		})
	}
}
