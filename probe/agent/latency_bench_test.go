package agent

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

var (
	latencyReps = flag.Int("overhead.latency-reps", 24, "BenchmarkProbeLatency: repetitions (the probe's pod alternates; medians of the per-repetition deltas are reported)")
	latencyArm  = flag.String("overhead.latency-arm", "probe", "BenchmarkProbeLatency: what the measured pod gets: probe (the mesh-probe binary), probe-frozen (the same, stopped with SIGSTOP once ready: its programs without its process), empty-tc (a program that returns at once on each of the probe's TC hooks: the hooks' own cost) or none (the control: two bare pods, the design's own noise)")
)

// BenchmarkProbeLatency measures what the probe adds to the client's
// latency at a fixed rate, with the two arms side by side in time rather
// than one after the other.
//
// BenchmarkProbeOverhead runs its arms seconds apart, and on these VMs the
// client's p50 at 2000 rps moves between runs seconds apart by far more
// than the 5 us to be measured (with no probe at all, from 184 to 304 us
// within one 16-repetition run): sixteen repetitions of it gave a paired
// p50 delta of -1 us in one run and +8 us in the next, p99 -20 us and
// +86 us. Here two identical pods (the bench pod: proxy fixture, lo, the
// application) take the same fixed-rate load at the same time, each from
// its own fortio, and the probe is attached to one of them, alternately
// the one and the other, so whatever the machine does during a run it does
// to both arms. The deltas are the probed pod's latencies minus the bare
// pod's, per repetition; their medians are reported.
//
// What the design shares between the arms, and so does not count: the
// probe's sched_switch program runs at every context switch of the machine
// (as on a node), so the bare pod's switches pay for it too, and both pods'
// packets compete for the same two CPUs, so the probed pod's TC programs
// can delay the other pod's packets a little. Both bias the deltas toward
// zero by a small amount; at 2000 rps each the CPUs are mostly idle.
// -overhead.latency-arm=none attaches nothing (the deltas of two bare
// pods: the design's resolution), =empty-tc an empty program on each of the
// probe's TC hooks (what hooking costs before any work), =probe-frozen the
// probe stopped (SIGSTOP) once ready: its programs without its process.
//
//	go test ./probe/agent -run '^$' -bench ProbeLatency -benchtime 1x
func BenchmarkProbeLatency(b *testing.B) {
	requireRoot(b)
	bin := buildProbe(b)
	attach, err := latencyAttacher(b, *latencyArm, bin)
	if err != nil {
		b.Fatal(err)
	}
	var pods [2]sideBySidePod
	for i := range pods {
		pods[i].pod, pods[i].proxy, pods[i].url = benchPod(b)
	}
	for b.Loop() {
		var d50, d99, measured50, bare50 []time.Duration
		var rpsRatio []float64
		var pooled pooledLatencies
		for rep := 0; rep < *latencyReps; rep++ {
			with := rep % 2 // the measured pod this repetition
			detach, err := attach(pods[with].pod)
			if err != nil {
				b.Fatal(err)
			}
			res, err := loadSideBySide(pods)
			if derr := detach(); derr != nil && err == nil {
				err = derr
			}
			if err != nil {
				b.Fatal(err)
			}
			on, off := res[with], res[1-with]
			d50 = append(d50, on.P50-off.P50)
			d99 = append(d99, on.P99-off.P99)
			measured50, bare50 = append(measured50, on.P50), append(bare50, off.P50)
			rpsRatio = append(rpsRatio, on.ActualQPS/off.ActualQPS)
			pooled.add(with, on.Latencies, off.Latencies)
			b.Logf("rep %d: pod %d (%s): %.0f rps p50 %v p99 %v; pod %d (bare): %.0f rps p50 %v p99 %v",
				rep, with, *latencyArm, on.ActualQPS, on.P50, on.P99, 1-with, off.ActualQPS, off.P50, off.P99)
		}
		reportLatency(b, d50, d99, measured50, bare50, rpsRatio, &pooled)
	}
}

// pooledLatencies keeps every measured request's latency over the
// repetitions, by which pod had the probe: quantiles of the pooled
// requests resolve the p99 better than the median of per-repetition p99
// deltas, each of which rests on the hundred slowest requests of one run
// (on a busy machine those deltas scatter by +-150 us). The two halves,
// pod 0 probed and pod 1 probed, each give an estimate too: their
// difference shows what is left of the noise and of any difference
// between the pods.
type pooledLatencies struct {
	measured, bare [2][]time.Duration // by the probed pod's index
}

func (p *pooledLatencies) add(with int, measured, bare []time.Duration) {
	p.measured[with] = append(p.measured[with], measured...)
	p.bare[with] = append(p.bare[with], bare...)
}

// delta is the probed requests' q quantile minus the bare ones', over the
// repetitions where pod with was probed (-1: all).
func (p *pooledLatencies) delta(q float64, with int) time.Duration {
	var measured, bare []time.Duration
	for i := range p.measured {
		if with < 0 || with == i {
			measured, bare = append(measured, p.measured[i]...), append(bare, p.bare[i]...)
		}
	}
	return fixture.Quantile(measured, q) - fixture.Quantile(bare, q)
}

// latencyAttacher returns what BenchmarkProbeLatency does to the measured
// pod for -overhead.latency-arm: attach returns the function that undoes it.
func latencyAttacher(b *testing.B, arm, bin string) (attach func(*fixture.Pod) (func() error, error), err error) {
	switch arm {
	case "probe", "probe-frozen":
		return func(pod *fixture.Pod) (func() error, error) {
			p, err := startProbeProcess(pod, bin)
			if err != nil {
				return nil, err
			}
			if arm == "probe" {
				return p.stop, nil
			}
			// Frozen once ready: its programs stay attached and act on
			// every packet, and the process takes no CPU (its ring fills
			// within seconds; the programs then count the records they
			// cannot send, a path a little shorter than sending them).
			if err := p.freeze(); err != nil {
				return nil, errors.Join(err, p.stop())
			}
			return func() error { return errors.Join(p.thaw(), p.stop()) }, nil
		}, nil
	case "empty-tc":
		empty, err := emptyTCProgram()
		if err != nil {
			return nil, err
		}
		b.Cleanup(func() { _ = empty.Close() })
		return func(pod *fixture.Pod) (func() error, error) { return attachEverywhere(pod, empty) }, nil
	case "none":
		return func(*fixture.Pod) (func() error, error) { return func() error { return nil }, nil }, nil
	}
	return nil, fmt.Errorf("-overhead.latency-arm=%q: want probe, probe-frozen, empty-tc or none", arm)
}

// sideBySidePod is one of BenchmarkProbeLatency's two pods.
type sideBySidePod struct {
	pod   *fixture.Pod
	proxy *fixture.Proxy
	url   string
}

// loadSideBySide runs the warm-up and then the measured fixed-rate run on
// both pods at the same time (a fortio child process each) and returns the
// measured runs' results. The proxies' residence records are taken (and
// dropped) so that they do not pile up.
func loadSideBySide(pods [2]sideBySidePod) ([2]fixture.LoadResult, error) {
	var res [2]fixture.LoadResult
	for run, d := range []time.Duration{*overheadWarmup, *overheadDuration} {
		if d <= 0 {
			continue
		}
		measured := run == 1
		var errs [2]error
		var wg sync.WaitGroup
		for i := range pods {
			wg.Go(func() {
				res[i], errs[i] = fixture.RunLoad(pods[i].pod.Client, fixture.LoadOptions{URL: pods[i].url,
					QPS: *overheadQPS, Duration: d, Connections: *overheadConns, KeepLatencies: measured})
			})
		}
		wg.Wait()
		for i := range pods {
			if errs[i] != nil {
				return res, fmt.Errorf("pod %d: %w", i, errs[i])
			}
			if _, err := pods[i].proxy.Take(); err != nil {
				return res, fmt.Errorf("pod %d's proxy: %w", i, err)
			}
		}
	}
	return res, nil
}

// reportLatency prints the medians of the per-repetition deltas with their
// spread (the quartiles), then the deltas of the pooled requests'
// quantiles, and reports the medians and the pooled p99 delta as metrics. rpsRatio is
// per repetition the measured pod's achieved rate over the bare pod's:
// with -overhead.qps=-1 both saturate the machine together, and its
// median is the probe's throughput cost side by side (of which the
// probe process's CPU, taken from both pods alike, shows about half).
func reportLatency(b *testing.B, d50, d99, measured50, bare50 []time.Duration, rpsRatio []float64, pooled *pooledLatencies) {
	quartiles := func(ds []time.Duration) (lo, mid, hi time.Duration) {
		return fixture.Quantile(ds, 0.25), fixture.Median(ds), fixture.Quantile(ds, 0.75)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(w, "\nProbe latency side by side: two pods at %.0f rps each at the same time, %d connections each, %v runs after %v, %d repetitions; one pod alternately gets: %s\n",
		*overheadQPS, *overheadConns, *overheadDuration, *overheadWarmup, len(d50), *latencyArm)
	fmt.Fprintln(w, "client latency, that pod - the bare pod\tmedian\tquartiles")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"p50", d50}, {"p99", d99}} {
		lo, mid, hi := quartiles(row.ds)
		fmt.Fprintf(w, "%s\t%+v\t%+v .. %+v\n", row.name, mid, lo, hi)
	}
	fmt.Fprintln(w, "the same, quantiles of the pooled requests\tall\tpod 0 probed, pod 1 probed")
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		fmt.Fprintf(w, "%s pooled\t%+v\t%+v, %+v\n", q.name, pooled.delta(q.q, -1), pooled.delta(q.q, 0), pooled.delta(q.q, 1))
	}
	fmt.Fprintf(w, "p50 of that pod / the bare pod (medians)\t%v / %v\t\n", fixture.Median(measured50), fixture.Median(bare50))
	pct := make([]float64, len(rpsRatio))
	for i, r := range rpsRatio {
		pct[i] = 100 * (r - 1)
	}
	slices.Sort(pct)
	q := func(f float64) float64 { return pct[int(f*float64(len(pct)-1)+0.5)] }
	fmt.Fprintf(w, "achieved rps, that pod / the bare pod\t%+.1f%%\t%+.1f%% .. %+.1f%%\n", medianF(pct), q(0.25), q(0.75))
	w.Flush()
	b.ReportMetric(medianF(pct), "rps-delta-%")
	b.ReportMetric(float64(fixture.Median(d50).Nanoseconds())/1000, "p50-delta-us")
	b.ReportMetric(float64(fixture.Median(d99).Nanoseconds())/1000, "p99-delta-us")
	b.ReportMetric(float64(pooled.delta(0.99, -1).Nanoseconds())/1000, "p99-pooled-delta-us")
}

// emptyTCProgram loads a TC program that returns TC_ACT_UNSPEC at once:
// what a hook costs before any work.
func emptyTCProgram() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "empty_tc", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TC_ACT_UNSPEC
	})
	if err != nil {
		return nil, fmt.Errorf("load the empty program (needs CAP_BPF): %w", err)
	}
	return prog, nil
}

// attachEverywhere attaches prog where the probe attaches its programs: TC
// ingress and egress of the pod's eth0 and TC ingress of its lo.
func attachEverywhere(pod *fixture.Pod, prog *ebpf.Program) (func() error, error) {
	var links []*bpf.TCAttachment
	detach := func() error {
		var first error
		for _, l := range links {
			if err := l.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	err := inNetns(pod.Pod.Path, func() error {
		eth, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		for _, h := range []struct {
			ifindex int
			dir     bpf.TCDirection
		}{{eth.Index, bpf.Ingress}, {eth.Index, bpf.Egress}, {lo.Index, bpf.Ingress}} {
			l, err := bpf.AttachTC(prog, h.ifindex, h.dir, bpf.TCAuto)
			if err != nil {
				return err
			}
			links = append(links, l)
		}
		return nil
	})
	if err != nil {
		_ = inNetns(pod.Pod.Path, detach)
		return nil, err
	}
	return func() error { return inNetns(pod.Pod.Path, detach) }, nil
}
