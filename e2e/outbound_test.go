//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/lab/demo"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// TestOutboundThroughSidecar is the probe's outbound measurement in a real pod: a caller
// application behind the lab sidecar, which captures the pod's outgoing TCP to port 80 with
// nftables (as Istio's OUTPUT rules do, the proxy's user exempt) and holds each call 1 ms before
// forwarding it to the original destination, another Service of the lab. The webhook configures
// the probe with the sidecar's outbound port from the pod's annotation. The calls are made by an
// ephemeral container (kubectl debug's mechanism) running the load generator inside the caller
// pod, so they start after the probe is attached. Then the probe's outbound figures are compared
// with the sidecar's own account of its outbound listener: every call counted, proxy-added p50
// within 100 us of the sidecar's residence p50.
func TestOutboundThroughSidecar(t *testing.T) {
	l := newLab(t)
	cs := clientFor(t, l)
	ctx := context.Background()
	const ns = "e2e-outbound"

	mustPlugin(t, l, "probe", "install", "--timeout", "3m")
	t.Cleanup(func() { plugin(context.Background(), t, l, "probe", "uninstall") })
	makeNamespace(t, cs, ns, nil)
	mustPlugin(t, l, "probe", "enable", "-n", ns)
	const upstreamPort = 80 // the upstream Service's http port (demo.ServiceHTTP)
	for _, o := range []demo.Options{
		{Namespace: ns, Name: "upstream", ServiceTime: 500 * time.Microsecond},
		{Namespace: ns, Name: "caller", ServiceTime: time.Millisecond,
			Sidecar: &sidecar.Options{Delay: time.Millisecond, OutboundDestPorts: []int32{upstreamPort}}},
	} {
		if err := demo.Deploy(ctx, cs, o, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	caller := onlyPod(t, cs, ns, "app=caller")
	if c, ok := probeContainer(caller); !ok {
		t.Fatal("the caller has no probe")
	} else if !hasEnv(c, inject.EnvProxyOutboundPort, strconv.Itoa(sidecar.OutboundPort)) {
		t.Fatalf("the probe is not told the sidecar's outbound port: %+v", c.Env)
	}
	if _, err := sidecarAdmin(ctx, cs, ns, caller.Name, "POST", "outbound/reset"); err != nil {
		t.Fatalf("reset the sidecar's outbound account: %v", err)
	}

	const qps, seconds = 100, 10
	url := fmt.Sprintf("http://upstream.%s.svc.cluster.local:%d/", ns, upstreamPort)
	caller.Spec.EphemeralContainers = append(caller.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "calls", Image: lab.ImageRef("mesh-loadgen"), ImagePullPolicy: corev1.PullIfNotPresent,
			Args: []string{"--url=" + url, "--qps=" + strconv.Itoa(qps), "--connections=2", "--duration=" + strconv.Itoa(seconds) + "s"},
		},
	})
	if _, err := cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, caller.Name, caller, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("add the ephemeral container: %v", err)
	}
	var finished time.Time
	waitFor(t, 2*time.Minute, "the calls to finish", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, caller.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, st := range p.Status.EphemeralContainerStatuses {
			if st.Name == "calls" && st.State.Terminated != nil {
				if st.State.Terminated.ExitCode != 0 {
					t.Fatalf("the load generator failed: %+v", st.State.Terminated)
				}
				finished = st.State.Terminated.FinishedAt.Time
				return nil
			}
		}
		return errorf("still calling")
	})

	raw, err := sidecarAdmin(ctx, cs, ns, caller.Name, "GET", "outbound/stats")
	if err != nil {
		t.Fatal(err)
	}
	var truth sidecarStats
	if err := json.Unmarshal(raw, &truth); err != nil {
		t.Fatalf("sidecar outbound stats: %v", err)
	}
	if truth.Requests < qps*seconds*9/10 {
		t.Fatalf("the sidecar forwarded %d calls, want about %d: %s", truth.Requests, qps*seconds, raw)
	}
	// The probe records a call once it is decided, up to a horizon after it ended: wait until
	// its window has decided past the last call.
	var snap api.Snapshot
	waitFor(t, time.Minute, "the probe to decide the last call", func() error {
		raw, err := cs.CoreV1().Pods(ns).ProxyGet("http", caller.Name, strconv.Itoa(inject.ProbePort), "/v1/snapshot",
			map[string]string{"window": "1m"}).DoRaw(ctx)
		if err != nil {
			return err
		}
		snap = api.Snapshot{}
		if err := json.Unmarshal(raw, &snap); err != nil {
			return err
		}
		if snap.DecidedThrough == nil || snap.DecidedThrough.Before(finished) {
			return errorf("decided through %v, the calls ended at %v", snap.DecidedThrough, finished)
		}
		return nil
	})
	out := snap.Outbound
	if out == nil {
		t.Fatalf("the snapshot has no outbound section: mesh %s, notes %q", snap.Mesh, snap.Notes)
	}
	t.Logf("outbound: the sidecar forwarded %d calls, residence p50 %.3f ms p99 %.3f ms; the probe: %d calls, %d measured, status %q, proxy-added p50 %.3f ms p99 %.3f ms (call p50 %.3f ms, upstream p50 %.3f ms), unmatched %d/%d, ambiguous %d",
		truth.Requests, truth.Residence.P50, truth.Residence.P99, out.Requests, out.Measured, out.Status,
		out.ProxyAdded.P50, out.ProxyAdded.P99, out.App.P50, out.Edge.P50, out.Pairing.UnmatchedApp, out.Pairing.UnmatchedEdge, out.Pairing.AmbiguousApp)
	if !out.ProxyDetected || out.Status != api.StatusOK {
		t.Errorf("outbound status %q, proxy detected %v", out.Status, out.ProxyDetected)
	}
	// Within 2% either way: a call the sidecar failed to forward is still a call on lo.
	if diff := int64(truth.Requests) - int64(out.Requests); diff > int64(truth.Requests)/50 || -diff > int64(truth.Requests)/50 {
		t.Errorf("the probe counted %d outbound calls, the sidecar forwarded %d", out.Requests, truth.Requests)
	}
	if out.Measured < out.Requests*9/10 {
		t.Errorf("only %d of %d calls measured one by one", out.Measured, out.Requests)
	}
	if diff := math.Abs(out.ProxyAdded.P50 - truth.Residence.P50); diff > 0.1 {
		t.Errorf("the probe's outbound p50 %.3f ms is %.0f us from the sidecar's own %.3f ms (limit 100 us)", out.ProxyAdded.P50, diff*1000, truth.Residence.P50)
	}
	if snap.Requests != 0 {
		t.Logf("inbound requests in the window: %d (the readiness checks go past the proxy)", snap.Requests)
	}
}

func hasEnv(c *corev1.Container, name, value string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.Value == value {
			return true
		}
	}
	return false
}
