package agent

import (
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/sampler"
)

// Above its threshold the probe follows requests during part of each
// period (probe/sampler). Sampled like that, at 500 rps with a threshold
// of 100 (a fifth of each 2s period open, from the first check of the rate
// a quarter second in), it still measures what the proxy fixture says it
// added to the requests the gate let in, within the 50 us of the unsampled
// tests (the median over every request may differ: watchGate); it follows only part of
// the requests and says so; and the gate leaves nothing unmatched or cut,
// since every request is far shorter than the gate's settle time.
func TestEndToEndSampledProxyAddedLatency(t *testing.T) {
	requireRoot(t)
	p := newPodUnderTest(t, true)
	p.proxy.SetDelays(500*time.Microsecond, 500*time.Microsecond)
	r := startAgent(t, p.pod, Options{Sampling: sampler.Config{AboveRPS: 100}})
	load, truth, admitted, s := r.sampledRun(t, p.proxy, p.pod.Client, "http://"+net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort))+"/")
	letIn := logSampledRun(t, "", "requests", load, truth, admitted, s.Inbound(), s)

	if s.Sampling == nil || s.Sampling.Fraction <= 0 || s.Sampling.Fraction >= 0.9 || s.Sampling.AboveRPS != 100 {
		t.Errorf("sampling %+v: want a fraction of the window, threshold 100", s.Sampling)
	}
	if s.Requests == 0 || s.Requests > uint64(len(truth))*3/4 {
		t.Errorf("followed %d of %d requests: want a part of them", s.Requests, len(truth))
	}
	checkEstimatedRPS(t, s.RPS, len(truth), s.DurationSeconds)
	if got := s.Measured + s.Pairing.AmbiguousEdge + s.Pairing.UnmatchedEdge; got != s.Requests {
		t.Errorf("%d requests followed, %d accounted for", s.Requests, got)
	}
	if u := s.Pairing.UnmatchedEdge + s.Pairing.UnmatchedApp; u > s.Measured/100+2 || s.Losses.SamplingCut != 0 {
		t.Errorf("the gate left %d unmatched and cut %d of %d measured", u, s.Losses.SamplingCut, s.Measured)
	}
	if s.Pairing.OutsideSample == 0 {
		t.Error("no application exchange counted outside the sample: the gate never admitted inner exchanges alone")
	}
	if v := r.metric(t, "mesh_probe_sampling_not_followed_seconds_total "); v <= 0 {
		t.Errorf("mesh_probe_sampling_not_followed_seconds_total %v, want the time the gate was not open", v)
	}
	if !within(s.ProxyAdded.P50, letIn, 50*time.Microsecond) {
		t.Errorf("sampled proxy added p50 %.3fms, fixture %.3fms over the requests let in: more than 50us apart",
			s.ProxyAdded.P50, ms(letIn))
	}
}

// Outbound calls sampled alike: the application's exchange with the proxy
// on lo is then the outer one, which the gate keeps from starting while
// the upstream's (on eth0) may still. The mirror of the test above, behind
// an Istio-style OUTPUT REDIRECT.
func TestEndToEndSampledOutbound(t *testing.T) {
	requireRoot(t)
	o := newOutboundPod(t, true)
	o.proxy.SetDelays(500*time.Microsecond, 500*time.Microsecond)
	r := startAgent(t, o.pod, Options{Sampling: sampler.Config{AboveRPS: 100}})
	load, truth, admitted, s := r.sampledRun(t, o.proxy, o.pod.Pod, o.url)
	out := s.Outbound
	if out == nil {
		t.Fatalf("no outbound calls in the snapshot: %+v", s)
	}
	letIn := logSampledRun(t, "outbound ", "calls", load, truth, admitted, *out, s)
	if s.Sampling == nil || s.Sampling.Fraction >= 0.9 {
		t.Errorf("sampling %+v: want a fraction of the window", s.Sampling)
	}
	if out.Requests == 0 || out.Requests > uint64(len(truth))*3/4 {
		t.Errorf("followed %d of %d calls: want a part of them", out.Requests, len(truth))
	}
	checkEstimatedRPS(t, out.RPS, len(truth), s.DurationSeconds)
	if u := out.Pairing.UnmatchedEdge + out.Pairing.UnmatchedApp; u > out.Measured/100+2 || s.Losses.SamplingCut != 0 {
		t.Errorf("the gate left %d unmatched and cut %d of %d measured", u, s.Losses.SamplingCut, out.Measured)
	}
	if out.Pairing.OutsideSample == 0 {
		t.Error("no upstream exchange counted outside the sample")
	}
	if !within(out.ProxyAdded.P50, letIn, 50*time.Microsecond) {
		t.Errorf("sampled outbound proxy added p50 %.3fms, fixture %.3fms over the calls let in: more than 50us apart",
			out.ProxyAdded.P50, ms(letIn))
	}
}

// sampledRun sends the sampled tests' load (500 rps for 8 s on two
// connections) from client to url, through proxy, and returns fortio's
// result, the proxy's account of each request, that account of the
// requests that reached the proxy while the sampling gate was open (the
// ones the probe may follow) and the 10s snapshot that has decided every
// exchange of the run.
func (r *running) sampledRun(t *testing.T, proxy *fixture.Proxy, client *fixture.Netns, url string) (load fixture.LoadResult, truth, admitted []fixture.Residence, snap api.Snapshot) {
	t.Helper()
	if _, err := proxy.Take(); err != nil { // what came before the run
		t.Fatal(err)
	}
	openStretches := watchGate(t, r.agent.src)
	load, err := fixture.RunLoad(client, fixture.LoadOptions{URL: url, QPS: 500, Duration: 8 * time.Second, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	open := openStretches()
	if truth, err = proxy.Take(); err != nil {
		t.Fatal(err)
	}
	if load.Errors != 0 || len(truth) < int(load.Requests) {
		t.Fatalf("load %+v, proxy handled %d", load, len(truth))
	}
	for _, res := range truth {
		for _, o := range open {
			if res.Arrived >= o[0] && res.Arrived <= o[1] {
				admitted = append(admitted, res)
				break
			}
		}
	}
	return load, truth, admitted, r.decidedAfter(t, end)
}

// logSampledRun logs what a sampled run sent, what the probe made of one
// direction of it (tr, of the snapshot s) and the proxy's own median over
// the requests let in and over all, and returns the first: the truth the
// sampled tests hold the probe to. dir prefixes "proxy added", what names
// the requests.
func logSampledRun(t *testing.T, dir, what string, load fixture.LoadResult, truth, admitted []fixture.Residence, tr api.Traffic, s api.Snapshot) (letIn time.Duration) {
	t.Helper()
	total, _, _ := residenceTotals(admitted)
	all, _, _ := residenceTotals(truth)
	t.Logf("%d %s (%.0f rps); probe followed %d, measured %d, sampling %+v, rps %.0f (truth over its %.1f s window %.0f); pairing %+v; losses %+v",
		len(truth), what, load.ActualQPS, tr.Requests, tr.Measured, s.Sampling, tr.RPS, s.DurationSeconds, float64(len(truth))/s.DurationSeconds, tr.Pairing, s.Losses)
	letIn = fixture.Median(total)
	t.Logf("%sproxy added p50: probe %.3fms, fixture %.3fms over the %d %s let in (%.3fms over all)",
		dir, tr.ProxyAdded.P50, ms(letIn), len(admitted), what, ms(fixture.Median(all)))
	return letIn
}

// watchGate reads the programs' sampling gate every millisecond until the
// function it returns is called, which returns the stretches it saw the
// gate open (CLOCK_MONOTONIC ns, from its first open reading to its last):
// a request that reached the proxy inside one was let in. The sampled
// requests are those of the open parts of each period, which on these two
// shared cores are not quite the others (the probe works hardest then): the
// probe's percentiles are compared with the proxy's account of the same
// ones.
func watchGate(t *testing.T, exch interface{ Gate() (bpf.Gate, error) }) (stop func() [][2]int64) {
	t.Helper()
	done := make(chan struct{})
	result := make(chan [][2]int64, 1)
	go func() {
		var open [][2]int64
		var from, last int64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			g, err := exch.Gate()
			now := int64(pairing.Now())
			switch {
			case err != nil:
				t.Error(err)
			case g == bpf.GateOpen && from == 0:
				from = now
			case g != bpf.GateOpen && from != 0:
				open, from = append(open, [2]int64{from, last}), 0
			}
			last = now
			select {
			case <-done:
				if from != 0 {
					open = append(open, [2]int64{from, last})
				}
				result <- open
				return
			case <-tick.C:
			}
		}
	}()
	return func() [][2]int64 {
		close(done)
		return <-result
	}
}

// checkEstimatedRPS compares a sampled snapshot's rate with the truth: n
// requests, all in its window of the given length. The estimate's error is
// at the window's edges: the load's last period counts its open part for
// all of it, up to 0.8 of a 2 s period at 500 rps after the load ended, a
// fifth of its 4000 requests (the first period errs the other way). The
// followed requests over the time open erred by as much, and more the
// longer the quiet time around the load (probe/recorder).
func checkEstimatedRPS(t *testing.T, rps float64, n int, seconds float64) {
	t.Helper()
	if want := float64(n) / seconds; math.Abs(rps-want) > want/5 {
		t.Errorf("estimated %.0f rps, %.0f over the window: more than a fifth apart", rps, want)
	}
}

// decidedAfter waits until the 10s window has decided every exchange that
// ended by end (its decidedThrough passed it) and returns that snapshot.
// Sampled, the requests followed are not known in advance, so settled's
// count cannot say when. The deadline only bounds a failure.
func (r *running) decidedAfter(t *testing.T, end time.Time) api.Snapshot {
	t.Helper()
	s := r.snapshot(t, "10s")
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s = r.snapshot(t, "10s"); s.DecidedThrough != nil && s.DecidedThrough.After(end) {
			return s
		}
	}
	t.Fatalf("the window never covered %v: %+v", end, s)
	return s
}
