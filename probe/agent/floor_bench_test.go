package agent

import (
	"fmt"
	"net"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

// BenchmarkTCFloor separates what any TC program at the probe's three
// hooks costs on this machine from what the probe's own work costs. Same
// topology and load as BenchmarkProbeOverhead (fixed rate through the proxy
// fixture), three arms per repetition, in rotating order: nothing attached;
// an empty program (it returns TC_ACT_UNSPEC at once) on eth0 ingress,
// eth0 egress and lo ingress; the real mesh-probe. It reports the median
// paired deltas of the client's p50 and p99 against nothing attached.
//
//	go test ./probe/agent -run '^$' -bench TCFloor -benchtime 1x
func BenchmarkTCFloor(b *testing.B) {
	requireRoot(b)
	bin := buildProbe(b)
	pod, proxy, url := benchPod(b)
	empty, err := emptyTCProgram()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()

	const arms = 3
	names := [arms]string{"nothing", "empty TC programs", "mesh-probe"}
	for b.Loop() {
		var runs [arms][]fixture.LoadResult
		for rep := 0; rep < *overheadReps; rep++ {
			for k := 0; k < arms; k++ {
				arm := (rep + k) % arms
				var detach func() error
				switch arm {
				case 1:
					if detach, err = attachEverywhere(pod, empty); err != nil {
						b.Fatal(err)
					}
				case 2:
					p, err := startProbeProcess(pod, bin)
					if err != nil {
						b.Fatal(err)
					}
					detach = p.stop
				}
				res, err := fixture.RunLoad(pod.Client, fixture.LoadOptions{URL: url, QPS: *overheadQPS,
					Duration: *overheadDuration, Connections: *overheadConns})
				if detach != nil {
					if derr := detach(); derr != nil {
						b.Fatal(derr)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := proxy.Take(); err != nil {
					b.Fatal(err)
				}
				runs[arm] = append(runs[arm], res)
				b.Logf("rep %d %s: %.0f rps p50 %v p99 %v", rep, names[arm], res.ActualQPS, res.P50, res.P99)
			}
		}
		paired := func(arm int, f func(fixture.LoadResult) time.Duration) time.Duration {
			var ds []time.Duration
			for i := range runs[arm] {
				ds = append(ds, f(runs[arm][i])-f(runs[0][i]))
			}
			return medianDur(ds)
		}
		p50 := func(r fixture.LoadResult) time.Duration { return r.P50 }
		p99 := func(r fixture.LoadResult) time.Duration { return r.P99 }
		w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintf(w, "%.0f rps, %d connections, %v per run, %d repetitions: median paired delta against nothing attached\n",
			*overheadQPS, *overheadConns, *overheadDuration, *overheadReps)
		fmt.Fprintln(w, "arm\tclient p50\tclient p99")
		for arm := 1; arm < arms; arm++ {
			fmt.Fprintf(w, "%s\t%+v\t%+v\n", names[arm], paired(arm, p50), paired(arm, p99))
		}
		w.Flush()
		b.ReportMetric(float64(paired(1, p50).Nanoseconds())/1000, "empty-p50-delta-us")
		b.ReportMetric(float64(paired(2, p50).Nanoseconds())/1000, "probe-p50-delta-us")
		b.ReportMetric(float64(paired(1, p99).Nanoseconds())/1000, "empty-p99-delta-us")
		b.ReportMetric(float64(paired(2, p99).Nanoseconds())/1000, "probe-p99-delta-us")
	}
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
