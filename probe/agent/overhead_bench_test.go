package agent

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/cgroups"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Knobs of BenchmarkProbeOverhead (go test flags).
var (
	overheadReps     = flag.Int("overhead.reps", 5, "repetitions of each measurement (medians are reported)")
	overheadDuration = flag.Duration("overhead.duration", 5*time.Second, "length of each fixed-rate run")
	overheadQPS      = flag.Float64("overhead.qps", 2000, "fixed request rate")
	overheadConns    = flag.Int("overhead.conns", 8, "fortio connections")
	overheadWarmup   = flag.Duration("overhead.warmup", 2*time.Second, "fixed-rate load before each measured run, not measured (both arms): the probe's first seconds (its start-up heap, the first flow-table and CPU scans) are not its steady state")
	overheadMaxRun   = flag.Duration("overhead.max-duration", 10*time.Second, "length of each maximum-throughput run (0: skip); 10 s are five of the sampler's 2 s periods: a 3 s run mostly measured its first period, decided on the fixed-rate run's rate before the step (docs/benchmarks.md, session 19)")
	overheadProfile  = flag.String("overhead.cpu-profile", "", "write the probe's Go CPU profile to this file (each repetition overwrites it: the last one stays)")
	overheadAsPod    = flag.Bool("overhead.pod-limits", true, "give the probe's cgroup the CPU weight and quota the kubelet gives the injected container (its default request and limit); false leaves the kernel's defaults")
	overheadCostOnly = flag.Bool("overhead.costs-only", false, "run only the arm with kernel BPF statistics on: the probe's costs without the client-side comparison (for comparing versions of the probe)")
	overheadFrozen   = flag.Bool("overhead.frozen", false, "stop the probe process (SIGSTOP) during the runs: only its eBPF programs act, which separates their in-path cost from the process's CPU")
	overheadSample   = flag.Float64("overhead.sample-above", -1, "MESH_PROBE_SAMPLE_ABOVE_RPS for the probe (-1: its default; 0: follow every request at any rate)")
	overheadFollow   = flag.String("overhead.follow", "", "MESH_PROBE_FOLLOW for the probe: process or kernel (empty: its default, process)")
	overheadIdle     = flag.Duration("overhead.idle-duration", 30*time.Second, "BenchmarkProbeIdle: how long each repetition measures the probe with no traffic")
)

// BenchmarkProbeOverhead measures what the probe costs the workload it
// watches: fortio at a fixed 2000 rps (uniform, no catch-up, keep-alive)
// through the proxy fixture to the application, with and without the real
// mesh-probe binary attached to the pod, alternating in one run; then the
// maximum throughput both ways. It reports medians over repetitions, the
// probe process's CPU and peak RSS, and the eBPF programs' own run time
// (kernel BPF statistics). Run with -benchtime 1x; one iteration is the
// whole experiment.
//
// Kernel BPF statistics are themselves a cost: while they are on, every
// program run reads the clock twice and updates a counter, ~50 ns on this
// machine (BenchmarkProgramsPerRequest with kernel.bpf_stats_enabled 0 and
// 1), which a pod does not pay: the kernel keeps them off unless asked. So
// each repetition has three arms: no probe and the probe as in a pod
// (statistics off) give the client's numbers, side by side; a third arm,
// the probe with statistics on, gives its costs (and shows what the
// statistics add).
//
//	go test ./probe/agent -run '^$' -bench ProbeOverhead -benchtime 1x
func BenchmarkProbeOverhead(b *testing.B) {
	requireRoot(b)
	if v, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err == nil && strings.TrimSpace(string(v)) != "0" {
		b.Fatalf("kernel.bpf_stats_enabled is %s: every BPF program run would pay for statistics in the arm that must not; run sysctl -w kernel.bpf_stats_enabled=0 first", strings.TrimSpace(string(v)))
	}
	bin := buildProbe(b)
	pod, proxy, url := benchPod(b)

	for b.Loop() {
		var runs [armCount]armRuns
		for rep := 0; rep < *overheadReps; rep++ {
			// Alternate the order so drift of the machine load does not
			// favour one side; no probe and the probe as in a pod stay
			// next to each other.
			order := []overheadArm{armNone, armProbe, armMeasured}
			if rep%2 != 0 {
				slices.Reverse(order)
			}
			if *overheadCostOnly {
				order = []overheadArm{armMeasured}
			}
			for _, arm := range order {
				res, maxQPS, cost, err := runArm(arm, pod, proxy, bin, url)
				if err != nil {
					b.Fatal(err)
				}
				r := &runs[arm]
				r.fixed, r.max = append(r.fixed, res), append(r.max, maxQPS)
				if arm == armMeasured {
					r.costs = append(r.costs, cost)
				}
				b.Logf("rep %d %s: %.0f rps p50 %v p99 %v; max %.0f rps", rep, arm, res.ActualQPS, res.P50, res.P99, maxQPS)
			}
		}
		report(b, runs)
	}
}

// BenchmarkProbeIdle measures what the probe costs a pod with no traffic
// at all: the mesh-probe binary attached to the bench pod as in
// BenchmarkProbeOverhead (its own cgroup, the kubelet's limits), the
// proxy and the application idle, nothing sent. Each repetition starts a
// probe, leaves it 5 s to load and settle, and reads its CPU time over
// -overhead.idle-duration.
//
//	go test ./probe/agent -run '^$' -bench ProbeIdle -benchtime 1x
func BenchmarkProbeIdle(b *testing.B) {
	requireRoot(b)
	bin := buildProbe(b)
	pod, _, _ := benchPod(b)
	for b.Loop() {
		var pct []float64
		for rep := 0; rep < *overheadReps; rep++ {
			p, err := startProbeProcess(pod, bin)
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(5 * time.Second)
			before := p.sample()
			time.Sleep(*overheadIdle)
			used := p.sample().minus(before).cpu
			if err := p.stop(); err != nil {
				b.Fatal(err)
			}
			pct = append(pct, 100*used.Seconds()/overheadIdle.Seconds())
			b.Logf("rep %d: %v of CPU in %v", rep, used, *overheadIdle)
		}
		fmt.Printf("\nProbe with no traffic: process CPU, %% of a core, over %v (median of %d: %.2f)\n", *overheadIdle, len(pct), medianF(pct))
		for i, v := range pct {
			fmt.Printf("  rep %d: %.2f\n", i, v)
		}
		b.ReportMetric(medianF(pct), "idle-cpu-%")
	}
}

// overheadArm is one way BenchmarkProbeOverhead runs the load.
type overheadArm int

const (
	armNone     overheadArm = iota // no probe: the baseline
	armProbe                       // the probe as in a pod (kernel BPF statistics off): the client's numbers
	armMeasured                    // the probe with kernel BPF statistics on: its costs
	armCount
)

func (a overheadArm) String() string {
	return [...]string{"no probe", "probe", "probe+stats"}[a]
}

// armRuns is what one arm gave over the repetitions.
type armRuns struct {
	fixed []fixture.LoadResult
	max   []float64   // maximum throughput, rps
	costs []probeCost // armMeasured only
}

// runArm runs one arm: a warm-up, the fixed-rate run and the
// maximum-throughput run, with the probe started (and kernel statistics
// on) as the arm says. The cost is filled for armMeasured.
func runArm(arm overheadArm, pod *fixture.Pod, proxy *fixture.Proxy, bin, url string) (res fixture.LoadResult, maxQPS float64, c probeCost, err error) {
	var p *probeProcess
	if arm == armMeasured {
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return res, 0, c, fmt.Errorf("enable BPF run-time statistics: %w", err)
		}
		defer stats.Close()
	}
	if arm != armNone {
		if p, err = startProbeProcess(pod, bin); err != nil {
			return res, 0, c, err
		}
		defer func() {
			if p != nil {
				_ = p.stop()
			}
		}()
	}
	// Only the arm that measures costs reads them (sample is nil-safe):
	// the others would walk the probe's descriptors and read its
	// programs' statistics for nothing.
	var meter *probeProcess
	if arm == armMeasured {
		meter = p
	}
	fixed := fixture.LoadOptions{URL: url, QPS: *overheadQPS, Duration: *overheadWarmup, Connections: *overheadConns}
	var warm fixture.LoadResult
	if *overheadWarmup > 0 {
		if warm, err = fixture.RunLoad(pod.Client, fixed); err != nil {
			return res, 0, c, err
		}
	}
	before := meter.sample()
	if p != nil && *overheadFrozen {
		_ = p.freeze()
	}
	fixed.Duration = *overheadDuration
	res, err = fixture.RunLoad(pod.Client, fixed)
	if p != nil && *overheadFrozen {
		_ = p.thaw()
	}
	if err != nil {
		return res, 0, c, err
	}
	after := meter.sample()
	var atMax probeCost
	sent := res.Requests + int64(*overheadConns) // fortio warms each connection up
	if *overheadWarmup > 0 {
		sent += warm.Requests + int64(*overheadConns)
	}
	if *overheadMaxRun > 0 {
		before := meter.sample()
		mres, err := fixture.RunLoad(pod.Client, fixture.LoadOptions{URL: url, QPS: -1,
			Duration: *overheadMaxRun, Connections: *overheadConns})
		if err != nil {
			return res, 0, c, err
		}
		atMax = meter.sample().minus(before)
		atMax.rps = mres.ActualQPS
		maxQPS = mres.ActualQPS
		sent += mres.Requests + int64(*overheadConns)
	}
	if _, err := proxy.Take(); err != nil {
		return res, 0, c, err
	}
	if arm == armMeasured {
		c = after.minus(before)
		c.rps = res.ActualQPS
		c.hwm = after.hwm // a peak, not a difference
		if c.seen, c.lost, err = p.requestsSeen(); err != nil {
			return res, 0, c, err
		}
		c.sent = sent
		// The peak over the runs and the /metrics read, from the
		// process's own VmHWM. Not the rusage of the exited child: exec
		// records the RSS peak of the memory it replaces, which after
		// Go's vfork-style clone is this test's (fortio and all), ~40 MiB.
		c.rss = meter.sample().hwm
		c.atMax = &atMax
	}
	if p != nil {
		stopping := p
		p = nil // stopped here, not again by the deferred stop
		if err := stopping.stop(); err != nil {
			return res, 0, c, err
		}
	}
	return res, maxQPS, c, nil
}

// benchPod is the benchmarks' pod: the proxy fixture on the service port
// forwards over lo to the application (no added delay, no service time).
// It returns the URL the client calls.
func benchPod(b *testing.B) (*fixture.Pod, *fixture.Proxy, string) {
	b.Helper()
	pod := fixture.NewTestPod(b)
	app, err := fixture.StartApp(pod.Pod, "127.0.0.1:8080", 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = app.Close() })
	proxy, err := fixture.StartProxy(pod.Pod, net.JoinHostPort(fixture.PodAddr, "8080"), "127.0.0.1:8080", 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = proxy.Close() })
	return pod, proxy, "http://" + net.JoinHostPort(fixture.PodAddr, "8080") + "/"
}

// buildProbe compiles cmd/mesh-probe as `make build` does (static,
// trimmed, stripped), from the source tree this test binary was compiled
// from, wherever it runs: a test binary built from another copy of the
// code, to compare two versions, measures that copy's probe.
func buildProbe(b *testing.B) string {
	b.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(self) {
		b.Fatalf("cannot tell which source tree this test was built from (%q): build it without -trimpath", self)
	}
	out := filepath.Join(b.TempDir(), "mesh-probe")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/mesh-probe")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build mesh-probe: %v\n%s", err, msg)
	}
	return out
}

// probeProcess is mesh-probe attached to the pod namespace, in a cgroup of
// its own below a "pod" cgroup, as in a pod (so its CPU filter keeps only
// that pod). It runs in the host's mount namespace: `ip netns exec` would
// remount /sys and hide the cgroup hierarchy from it.
type probeProcess struct {
	cmd     *exec.Cmd
	pod     *fixture.Pod
	listen  string
	cgroups []string // created, removed after the process exits
	client  *http.Client
}

func startProbeProcess(pod *fixture.Pod, bin string) (p *probeProcess, err error) {
	p = &probeProcess{pod: pod, client: &http.Client{Timeout: 5 * time.Second}}
	defer func() {
		if err != nil {
			p.removeCgroups()
		}
	}()
	// A free port on the host's loopback for the probe's HTTP server.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.listen = l.Addr().String()
	l.Close()
	self, err := cgroups.FindSelf()
	if err != nil {
		return nil, err
	}
	if !self.Visible() {
		return nil, fmt.Errorf("no cgroup2 mount shows this process's cgroup %s: cannot make the probe's cgroups", self.Path)
	}
	podDir := filepath.Join(self.Mount, fmt.Sprintf("kmesh-bench-pod-%d-%d", os.Getpid(), time.Now().UnixNano()))
	probeDir := filepath.Join(podDir, "probe")
	if err := os.MkdirAll(probeDir, 0o755); err != nil {
		return nil, err
	}
	p.cgroups = []string{probeDir, podDir}
	cg, err := os.Open(probeDir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	p.cmd = exec.Command(bin, "--netns", pod.Pod.Path)
	if *overheadProfile != "" {
		p.cmd.Args = append(p.cmd.Args, "--cpu-profile", *overheadProfile)
	}
	p.cmd.Env = append(os.Environ(), "MESH_PROBE_MESH=istio", "MESH_PROBE_APP_PORTS=8080",
		"MESH_PROBE_LISTEN="+p.listen, "MESH_PROBE_LOG_LEVEL=warn")
	if *overheadSample >= 0 {
		p.cmd.Env = append(p.cmd.Env, "MESH_PROBE_SAMPLE_ABOVE_RPS="+strconv.FormatFloat(*overheadSample, 'g', -1, 64))
	}
	if *overheadFollow != "" {
		p.cmd.Env = append(p.cmd.Env, "MESH_PROBE_FOLLOW="+*overheadFollow)
	}
	p.cmd.Stderr = os.Stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if *overheadAsPod {
		dir, err := limitLikeKubelet(p.cmd.Process.Pid, probeDir, inject.DefaultCPURequest.MilliValue(), inject.DefaultCPULimit.MilliValue())
		if dir != "" {
			p.cgroups = append([]string{dir}, p.cgroups...)
		}
		if err != nil {
			_ = p.stop()
			return nil, err
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := p.client.Get("http://" + p.listen + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("mesh-probe not ready: %v", err)
		}
	}
}

// limitLikeKubelet gives the probe process the CPU share and quota that the
// kubelet gives a container with this request and limit (millicores), by
// the kubelet's own formulas: cpu.shares = request*1024/1000 and a CFS quota
// of limit/1000 of each 100 ms period. On a cgroup v2 host with the cpu
// controller it writes cpu.weight (the kubelet's conversion of those shares)
// on the probe's v2 cgroup and on its pod's, and cpu.max on the probe's; on a
// hybrid host, where the cpu controller is on v1, it makes a v1 cpu cgroup
// and moves the process there, returning that directory for removal.
func limitLikeKubelet(pid int, v2dir string, requestMilli, limitMilli int64) (string, error) {
	shares := max(2, requestMilli*1024/1000)
	quota := limitMilli * 100000 / 1000
	parent := filepath.Dir(v2dir)
	if ctl, err := os.ReadFile(filepath.Join(filepath.Dir(parent), "cgroup.subtree_control")); err == nil &&
		slices.Contains(strings.Fields(string(ctl)), "cpu") {
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
			return "", fmt.Errorf("enable the cpu controller under %s: %w", parent, err)
		}
		weight := strconv.FormatInt(1+((shares-2)*9999)/262142, 10)
		// The weight counts only against siblings: the probe is alone in
		// its "pod", so the pod's cgroup gets it too. Left at the default
		// (100, a whole core's request), the pod would compete with the
		// workload's cgroup as an equal; the kubelet gives a pod the sum
		// of its containers' requests.
		for _, w := range []struct{ dir, file, v string }{
			{parent, "cpu.weight", weight},
			{v2dir, "cpu.weight", weight},
			{v2dir, "cpu.max", fmt.Sprintf("%d 100000", quota)},
		} {
			if err := os.WriteFile(filepath.Join(w.dir, w.file), []byte(w.v), 0); err != nil {
				return "", fmt.Errorf("%s: %w", filepath.Join(w.dir, w.file), err)
			}
		}
		return "", nil
	}
	v1 := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(v1, "cpu.shares")); err != nil {
		return "", fmt.Errorf("no cpu controller found (neither in cgroup v2 above %s nor at %s): run with -overhead.pod-limits=false", parent, v1)
	}
	dir := filepath.Join(v1, filepath.Base(parent))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	for file, v := range map[string]string{"cpu.shares": strconv.FormatInt(shares, 10), "cpu.cfs_period_us": "100000",
		"cpu.cfs_quota_us": strconv.FormatInt(quota, 10), "cgroup.procs": strconv.Itoa(pid)} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			return dir, fmt.Errorf("%s: %w", file, err)
		}
	}
	return dir, nil
}

func (p *probeProcess) removeCgroups() {
	for _, d := range p.cgroups {
		_ = os.Remove(d)
	}
}

// requestsSeen reads the probe's running count of requests from /metrics,
// once the last exchanges are through the idle scan, and of the exchanges
// it lost to a full ring: a probe that yields its CPU to a saturated
// workload (the kubelet's weight for its request) can fall behind.
func (p *probeProcess) requestsSeen() (seen, lost uint64, err error) {
	time.Sleep(time.Second)
	res, err := p.client.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	counters := map[string]*uint64{
		"mesh_probe_requests_total":                        &seen,
		`mesh_probe_lost_total{reason="ring-buffer-full"}`: &lost,
	}
	found := false
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		dst := counters[name]
		if !ok || dst == nil {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s %q: %w", name, v, err)
		}
		*dst = uint64(f)
		found = found || dst == &seen
	}
	if !found {
		return 0, 0, fmt.Errorf("no mesh_probe_requests_total in /metrics")
	}
	return seen, lost, sc.Err()
}

// freeze stops the probe's process (SIGSTOP) and thaw lets it go on: its
// eBPF programs act meanwhile, its process takes no CPU.
func (p *probeProcess) freeze() error { return p.cmd.Process.Signal(syscall.SIGSTOP) }
func (p *probeProcess) thaw() error   { return p.cmd.Process.Signal(syscall.SIGCONT) }

// stop sends SIGTERM to the probe's PID, as the kubelet does, and waits:
// it must detach and exit 0.
func (p *probeProcess) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			return fmt.Errorf("mesh-probe exit: %w", err)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-waited
		return fmt.Errorf("mesh-probe %d ignored SIGTERM", p.cmd.Process.Pid)
	}
	p.removeCgroups()
	return nil
}

// probeCost is the probe's consumption over one fixed-rate run.
type probeCost struct {
	cpu     time.Duration            // the probe process, user + system
	bpf     map[string]time.Duration // eBPF run time per program
	bpfRuns map[string]uint64
	rps     float64
	seen    uint64        // requests in the probe's 1m window after the runs
	lost    uint64        // exchanges lost to a full ring (or cut by an overrun) by then
	sent    int64         // requests fortio made in those runs (with warm-up)
	atMax   *probeCost    // over the maximum-throughput run
	rss     int64         // KiB, peak up to the end (with the maximum-throughput run; VmHWM)
	hwm     int64         // KiB, peak up to the end of the fixed-rate run (VmHWM)
	busy    time.Duration // CPU time the whole machine spent not idle (/proc/stat)
}

// schedProg is the sched_switch program: it runs at every context switch of
// the node, whatever the pod does, so it is reported per second, not per
// request like the TC programs, which run per packet of the traffic.
const schedProg = "on_sched_switch"

// programs splits the eBPF run time into the TC programs' and the
// sched_switch program's; ok tells whether the latter ran at all.
func (c probeCost) programs() (tc, sched time.Duration, ok bool) {
	for name, d := range c.bpf {
		if name == schedProg {
			sched, ok = d, true
		} else {
			tc += d
		}
	}
	return tc, sched, ok
}

func (c probeCost) minus(o probeCost) probeCost {
	out := probeCost{cpu: c.cpu - o.cpu, busy: c.busy - o.busy, bpf: map[string]time.Duration{}, bpfRuns: map[string]uint64{}}
	for k, v := range c.bpf {
		out.bpf[k] = v - o.bpf[k]
		out.bpfRuns[k] = c.bpfRuns[k] - o.bpfRuns[k]
	}
	return out
}

// sample reads the probe's CPU time (/proc/PID/stat) and the run time of
// its eBPF programs (found through its open file descriptors). Nil-safe.
func (p *probeProcess) sample() probeCost {
	c := probeCost{bpf: map[string]time.Duration{}, bpfRuns: map[string]uint64{}}
	if p == nil {
		return c
	}
	c.busy = machineBusy()
	pid := p.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name: utime is the 14th, stime the 15th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		c.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				c.hwm, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	seen := map[uint32]bool{}
	for _, fd := range fds {
		id := progID(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue
		}
		info, ierr := prog.Info()
		st, serr := prog.Stats()
		prog.Close()
		if ierr == nil && serr == nil {
			c.bpf[info.Name] += st.Runtime
			c.bpfRuns[info.Name] += st.RunCount
		}
	}
	return c
}

// machineBusy is the CPU time all CPUs have spent not idle since boot:
// the "cpu" line of /proc/stat without its idle and iowait fields.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		// user nice system idle iowait irq softirq steal (guest and
		// guest_nice are already in user and nice).
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func progID(fdinfo string) uint32 {
	f, err := os.Open(fdinfo)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "prog_id:"); ok {
			id, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(id)
		}
	}
	return 0
}

func medianDur(ds []time.Duration) time.Duration { return fixture.Median(ds) }

// medianF is the median of fs, for an even count the mean of the two
// middle values, as fixture.Median.
func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

func report(b *testing.B, runs [armCount]armRuns) {
	off, on, stats := runs[armNone].fixed, runs[armProbe].fixed, runs[armMeasured].fixed
	maxOff, maxOn, maxStats := runs[armNone].max, runs[armProbe].max, runs[armMeasured].max
	costs := runs[armMeasured].costs
	pick := func(rs []fixture.LoadResult, f func(fixture.LoadResult) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		return medianDur(ds)
	}
	p50 := func(r fixture.LoadResult) time.Duration { return r.P50 }
	p99 := func(r fixture.LoadResult) time.Duration { return r.P99 }
	rps := func(rs []fixture.LoadResult) float64 {
		var f []float64
		for _, r := range rs {
			f = append(f, r.ActualQPS)
		}
		return medianF(f)
	}
	var cpuPct, cpuPer1k, tcPer1k, schedPct, rss, hwm []float64
	bpfByProg := map[string][]float64{}
	for _, c := range costs {
		secs := overheadDuration.Seconds()
		cpuPct = append(cpuPct, 100*c.cpu.Seconds()/secs)
		cpuPer1k = append(cpuPer1k, 100*c.cpu.Seconds()/secs/(c.rps/1000))
		tc, sched, ok := c.programs()
		if ok {
			schedPct = append(schedPct, 100*sched.Seconds()/secs)
		}
		for name, d := range c.bpf {
			if c.bpfRuns[name] > 0 {
				bpfByProg[name] = append(bpfByProg[name], float64(d.Nanoseconds())/float64(c.bpfRuns[name]))
			}
		}
		tcPer1k = append(tcPer1k, 100*tc.Seconds()/secs/(c.rps/1000))
		rss = append(rss, float64(c.rss)/1024)
		hwm = append(hwm, float64(c.hwm)/1024)
	}
	w := &strings.Builder{}
	fmt.Fprintf(w, "\nProbe overhead: fortio %.0f rps target, %d connections, %v runs, median of %d (alternating order)\n",
		*overheadQPS, *overheadConns, *overheadDuration, *overheadReps)
	if *overheadAsPod {
		fmt.Fprintf(w, "probe's cgroup: the kubelet's CPU share and quota for the injected container (request %s, limit %s)\n",
			inject.DefaultCPURequest.String(), inject.DefaultCPULimit.String())
	} else {
		fmt.Fprintln(w, "probe's cgroup: the kernel's default CPU weight, no quota")
	}
	if len(off) > 0 { // not with -overhead.costs-only
		fmt.Fprintf(w, "%-34s %12s %12s %12s\n", "", "no probe", "probe", "delta")
		fmt.Fprintf(w, "%-34s %12.0f %12.0f %12.0f\n", "achieved rps", rps(off), rps(on), rps(on)-rps(off))
		d50, d99 := pick(on, p50)-pick(off, p50), pick(on, p99)-pick(off, p99)
		// Each repetition ran both ways back to back: the median of the
		// per-repetition differences is less exposed to the machine's drift
		// than the difference of the medians.
		pairedOf := func(with []fixture.LoadResult, f func(fixture.LoadResult) time.Duration) time.Duration {
			var ds []time.Duration
			for i := range with {
				ds = append(ds, f(with[i])-f(off[i]))
			}
			return medianDur(ds)
		}
		paired := func(f func(fixture.LoadResult) time.Duration) time.Duration { return pairedOf(on, f) }
		maxChange := func(with []float64) float64 {
			var pct []float64
			for i := range with {
				pct = append(pct, 100*(with[i]-maxOff[i])/maxOff[i])
			}
			return medianF(pct)
		}
		b.ReportMetric(float64(paired(p50).Nanoseconds())/1000, "p50-delta-us")
		b.ReportMetric(float64(paired(p99).Nanoseconds())/1000, "p99-delta-us")
		fmt.Fprintf(w, "%-34s %12s %12s %12s %14s\n", "", "", "", "", "paired delta")
		fmt.Fprintf(w, "%-34s %12v %12v %12v %14v\n", "client p50", pick(off, p50), pick(on, p50), d50, paired(p50))
		fmt.Fprintf(w, "%-34s %12v %12v %12v %14v\n", "client p99", pick(off, p99), pick(on, p99), d99, paired(p99))
		fmt.Fprintln(w, "  (runs seconds apart, which on a noisy machine differ by more than the probe's few us: BenchmarkProbeLatency measures these side by side)")
		if *overheadMaxRun > 0 {
			mo, mn := medianF(maxOff), medianF(maxOn)
			fmt.Fprintf(w, "%-34s %12.0f %12.0f %11.1f%% %13.1f%%\n", "max throughput (rps)", mo, mn, 100*(mn-mo)/mo, maxChange(maxOn))
			b.ReportMetric(maxChange(maxOn), "max-rps-change-%")
		}
		// The arm that measured the costs paid for kernel statistics too.
		fmt.Fprintf(w, "%-34s %12s %12v %12s %14v\n", "  with BPF statistics on: p50", "", pick(stats, p50), "", pairedOf(stats, p50))
		if *overheadMaxRun > 0 {
			fmt.Fprintf(w, "%-34s %12s %12.0f %12s %13.1f%%\n", "  with BPF statistics on: max rps", "", medianF(maxStats), "", maxChange(maxStats))
		}
	}
	fmt.Fprintf(w, "%-34s %12s %12.2f\n", "probe process CPU, % of a core", "", medianF(cpuPct))
	fmt.Fprintf(w, "%-34s %12s %12.2f\n", "  per 1000 rps", "", medianF(cpuPer1k))
	fmt.Fprintf(w, "%-34s %12s %12.2f\n", "TC programs, % of a core/1000 rps", "", medianF(tcPer1k))
	if len(schedPct) > 0 {
		fmt.Fprintf(w, "%-34s %12s %12.2f\n", "sched_switch program, % of a core", "", medianF(schedPct))
	}
	names := make([]string, 0, len(bpfByProg))
	for name := range bpfByProg {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "%-34s %12s %10.0fns\n", "  "+name+" per run", "", medianF(bpfByProg[name]))
	}
	fmt.Fprintf(w, "%-34s %12s %10.1fMiB\n", "probe peak RSS at the fixed rate", "", medianF(hwm))
	fmt.Fprintf(w, "%-34s %12s %10.1fMiB\n", "  and after the max-throughput run", "", medianF(rss))
	if *overheadMaxRun > 0 {
		var procMax, tcMax, schedMax, share []float64
		for _, c := range costs {
			secs := overheadMaxRun.Seconds()
			procMax = append(procMax, 100*c.atMax.cpu.Seconds()/secs)
			tc, sched, _ := c.atMax.programs()
			tcMax = append(tcMax, 100*tc.Seconds()/secs)
			schedMax = append(schedMax, 100*sched.Seconds()/secs)
			if c.atMax.busy > 0 {
				share = append(share, 100*(c.atMax.cpu+tc+sched).Seconds()/c.atMax.busy.Seconds())
			}
		}
		fmt.Fprintf(w, "%-34s %12s %12.2f\n", "at max throughput: process, % core", "", medianF(procMax))
		fmt.Fprintf(w, "%-34s %12s %12.2f\n", "at max throughput: TC, % core", "", medianF(tcMax))
		fmt.Fprintf(w, "%-34s %12s %12.2f\n", "at max throughput: sched, % core", "", medianF(schedMax))
		// When the machine's CPUs are what limits throughput, every
		// CPU-second the probe takes is one the workload loses (here
		// fortio, the proxy, the application and the probe share them;
		// when they leave CPUs idle, the share is an upper bound). Its
		// share of the busy CPU is the throughput cost that follows,
		// with far less noise than the difference of two throughput
		// runs.
		if len(share) > 0 {
			fmt.Fprintf(w, "%-34s %12s %11.2f%%\n", "  probe's share of the busy CPU", "", medianF(share))
			b.ReportMetric(medianF(share), "max-cpu-share-%")
		}
	}
	for i, c := range costs {
		fmt.Fprintf(w, "  rep %d: the probe counted %d requests (%d exchanges lost to a full ring), fortio sent %d\n", i, c.seen, c.lost, c.sent)
	}
	fmt.Fprint(os.Stdout, w.String())
	b.ReportMetric(medianF(cpuPer1k), "probe-cpu-%/1krps")
	b.ReportMetric(medianF(hwm), "probe-rss-MiB")
}
