// Package agent runs the probe inside a pod: it loads and attaches the eBPF
// programs of package bpf, turns what they record into finished exchanges,
// pairs them (probe/pairing), keeps rolling windows (probe/recorder) and
// Prometheus metrics (probe/metrics), accounts CPU per container, and
// detaches everything on Close.
//
// Where the pod's connections are followed is the source (source.go,
// config.Follow): by default the TC programs record each segment worth
// following into per-CPU rings and this process follows the connections
// (probe/flowtrack); with FollowKernel the programs follow them in the
// kernel and send finished exchanges through a BPF ring buffer.
//
// One goroutine owns the source and the pairing engine. It wakes on a
// timer every ScanInterval, or sooner under heavy traffic (records do not
// wake it), or later while the pod is quiet (quietInterval), drains the
// source without blocking, runs the idle scan so that quiet keep-alive
// connections release their last exchange, and every ResolveInterval
// decides the exchanges whose partners can no longer arrive.
//
// Memory is bounded: the connections followed are bounded (least recently
// seen forgotten), the rings have a fixed size, at most MaxPending
// exchanges wait for pairing (beyond, they are decided early and counted
// as overload), the windows hold a fixed number of fixed-size histograms,
// and the per-cgroup maps are bounded by the pod's cgroups (at most 1024 in
// the kernel map).
//
// A restarting proxy needs nothing special: its old connections end (or
// are forgotten) and its new ones are followed from their SYN; its new
// container's cgroup shows up in the CPU map and, when it answers on the
// service port, in the edge server map.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/caps"
	"github.com/kubectl-mesh/kubectl-mesh/probe/cgroups"
	"github.com/kubectl-mesh/kubectl-mesh/probe/config"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/metrics"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/recorder"
	"github.com/kubectl-mesh/kubectl-mesh/probe/sampler"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

// Options configure an Agent. Zero values take the defaults.
type Options struct {
	Config config.Config

	// NetNS is a network namespace to attach in (/run/netns/NAME or
	// /proc/PID/ns/net). Empty: the probe's own, which in a pod is the
	// pod's. Tests use it to measure a namespace they built.
	NetNS string
	// Interface is the pod's network interface. Default "eth0".
	Interface string
	// PodCgroup is the pod's cgroup directory under the cgroup v2 mount.
	// Empty: the parent of the probe's own cgroup, found from the kernel
	// by the probe's pid (bpf.CPUProbe.DiscoverAncestry), which works
	// inside a cgroup namespace and without any cgroup2 mount too.
	PodCgroup string

	// ScanInterval: how often the ring buffer is drained and the idle scan
	// runs. Default 100ms. While the pod is quiet (the last scan found no
	// packet, nothing staged and nothing to walk for, and the ring was
	// empty) the loop wakes only every quietInterval: three ScanIntervals,
	// at most half the Horizon.
	ScanInterval time.Duration
	// IdleTime: a finished exchange whose connection stayed quiet this
	// long after its last response byte is emitted without waiting for
	// the next request. Longer than the pauses inside a streaming
	// response. Default 200ms.
	IdleTime time.Duration
	// ResolveInterval: how often pairing decides. Default 100ms: a resolve
	// works only on the exchanges it decides (pairing keeps them sorted),
	// so deciding often costs little more in total and keeps each burst of
	// work short (at 2000 rps, a 250ms batch held a core for ~1.5ms,
	// which requests of the pod's other containers waited behind).
	ResolveInterval time.Duration
	// Horizon: how long after an exchange ends its partner may still
	// arrive: IdleTime plus two ScanIntervals, with margin. Default 1s.
	Horizon time.Duration
	// CPUInterval: how often CPU per cgroup is sampled. Default 1s.
	CPUInterval time.Duration
	// MaxPending bounds the exchanges waiting for pairing. Default 65536.
	MaxPending int
	// MaxFlows bounds the connections followed (0: 16384). RingBufferBytes
	// sizes the kernel source's ring buffer (0: 1 MiB); the process
	// source's ring is 256 KiB per CPU.
	MaxFlows        uint32
	RingBufferBytes uint32
	// Sampling: when the probe follows exchanges part of the time only.
	// AboveRPS 0 takes Config.SampleAboveRPS (whose 0 is never); the
	// other fields default as in sampler.Config.
	Sampling sampler.Config

	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Interface == "" {
		o.Interface = "eth0"
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = 100 * time.Millisecond
	}
	if o.IdleTime <= 0 {
		o.IdleTime = 200 * time.Millisecond
	}
	if o.ResolveInterval <= 0 {
		o.ResolveInterval = 100 * time.Millisecond
	}
	if o.Horizon <= 0 {
		o.Horizon = time.Second
	}
	if o.CPUInterval <= 0 {
		o.CPUInterval = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 65536
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Agent is a running probe.
type Agent struct {
	opts Options
	log  *slog.Logger

	// src turns packets into exchanges (source.go): the kernel's flows or
	// the process's own, Config.Follow.
	src source
	cpu *bpf.CPUProbe // nil when CPU accounting is unavailable
	// kernelTypes is the kernel's decoded BTF, shared by the loads in
	// Start and dropped after them.
	kernelTypes *btf.Cache
	reading     bool // the loop was started
	ethIndex    int  // the pod's interface and lo, in its network namespace
	loIndex     int
	pairer      *pairing.Pairer  // owned by run: inbound requests
	outPar      *pairing.Pairer  // owned by run: outbound calls; nil when not measured
	sampler     *sampler.Sampler // owned by run once started (AboveRPS: by anyone)
	rec         *recorder.Recorder
	met         *metrics.Metrics

	self       cgroups.Self
	podDir     string // "" when the pod's cgroup is not visible
	selfID     uint64
	mechanisms []string

	heartbeat atomic.Int64 // unix ns of the loop's latest pass
	quiet     atomic.Int64 // scans after which the loop slept quietInterval
	statsAt   time.Time    // when run last read the exchange counters
	stopped   atomic.Bool
	stop      chan struct{} // closed by Close: the loop returns
	done      chan struct{} // closed by the loop when it returns
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // guards the fields below, shared with snapshots and scrapes
	counts   pairing.Counts
	outCount pairing.Counts
	losses   api.Losses
	stats    bpf.ExchangeStats
	proxy    bool
	outProxy bool
	cpuTot   map[uint64]time.Duration
	notOpen  time.Duration               // the sampler's, as of the last record
	followed uint64                      // outer exchanges received, as of the last record
	estimate float64                     // what they stand for (sampler.Sampler.Estimated)
	known    map[uint64]api.ContainerCPU // identities of cgroups
	notes    []string
}

// Start checks capabilities and kernel features, loads and attaches the
// programs and starts reading. Close undoes it.
func Start(opts Options) (a *Agent, err error) {
	opts.defaults()
	if len(opts.Config.AppPorts) == 0 {
		return nil, errors.New("agent: no application port configured")
	}
	if err := caps.Check(); err != nil {
		return nil, err
	}
	if err := caps.CheckKernel(); err != nil {
		return nil, err
	}
	a = &Agent{
		opts:   opts,
		log:    opts.Logger,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		pairer: pairing.New(pairing.Config{Horizon: opts.Horizon}),
		rec:    recorder.New(time.Now()),
		cpuTot: map[uint64]time.Duration{},
		known:  map[uint64]api.ContainerCPU{},
	}
	outbound := opts.Config.ProxyOutboundPort != 0
	if outbound {
		a.outPar = pairing.New(pairing.Config{Horizon: opts.Horizon, Direction: exchange.Outbound})
	} else {
		a.notes = append(a.notes, "outbound calls are not measured: no proxy outbound port is configured")
	}
	a.met = metrics.New(a.totals)
	defer func() {
		if err != nil {
			_ = a.release()
		}
	}()

	// Both loads relocate against the kernel's BTF: decode it once.
	a.kernelTypes = btf.NewCache()
	switch opts.Config.Follow {
	case config.FollowKernel:
		a.src, err = newKernelSource(bpf.ExchangeOptions{MaxFlows: opts.MaxFlows, RingBufferBytes: opts.RingBufferBytes,
			Outbound: outbound, KernelTypes: a.kernelTypes}, a.stopped.Load, a.log.Error)
	default:
		a.src, err = newProcessSource(opts.MaxFlows, outbound, a.kernelTypes, a.log.Warn)
	}
	if err != nil {
		return nil, err
	}
	sampling := opts.Sampling
	if sampling.AboveRPS == 0 {
		sampling.AboveRPS = opts.Config.SampleAboveRPS
	}
	if a.sampler, err = sampler.New(sampling, podGate{a}, time.Now()); err != nil {
		return nil, err
	}
	if outbound {
		// iptables delivers the application's outgoing connections to
		// this port of the proxy, on lo.
		if err := a.src.SetPort(opts.Config.ProxyOutboundPort, bpf.PortOutbound); err != nil {
			return nil, err
		}
	}
	for _, p := range opts.Config.AppPorts {
		// Sidecars forward to the port the client asked for, so one
		// number is both the edge port (eth0) and the app port (lo).
		if err := a.src.SetPort(p, bpf.PortEdge|bpf.PortApp); err != nil {
			return nil, err
		}
	}
	for _, src := range opts.Config.ProxySources {
		if err := a.src.AddProxySource(src); err != nil {
			return nil, err
		}
	}
	if err := inNetns(opts.NetNS, a.attach); err != nil {
		return nil, err
	}
	if err := a.src.open(a.ethIndex, a.loIndex); err != nil {
		return nil, err
	}
	if err := a.startCPU(); err != nil {
		// Latency still works without CPU accounting: say why, go on.
		a.log.Warn("CPU accounting unavailable", "err", err)
		a.notes = append(a.notes, "CPU accounting unavailable: "+err.Error())
	}
	// The decoded kernel BTF and the loaders' garbage are most of the
	// heap the probe ever had. Give it back now: otherwise the runtime
	// keeps it mapped for minutes, and collecting it later costs CPU while
	// the pod serves.
	a.kernelTypes = nil
	debug.FreeOSMemory()
	a.heartbeat.Store(time.Now().UnixNano())
	a.reading = true
	go a.run()
	a.log.Info("probe attached", "mesh", opts.Config.Mesh, "ports", opts.Config.AppPorts,
		"interface", opts.Interface, "tc", a.mechanisms, "pod_cgroup", a.podDir, "follow", sourceName(a.src))
	return a, nil
}

// podGate moves the programs' sampling gate. Reopening a closed gate
// attaches the programs that closing it detached (on lo and eth0 ingress:
// bpf.ExchangeProbe.SetGate) again, which has to happen in the pod's
// network namespace.
type podGate struct{ a *Agent }

func (g podGate) SetGate(to bpf.Gate) error {
	if to == bpf.GateClosed || !g.a.src.Parked() {
		return g.a.src.SetGate(to)
	}
	return inNetns(g.a.opts.NetNS, func() error { return g.a.src.SetGate(to) })
}

// attach runs in the pod's network namespace.
func (a *Agent) attach() error {
	eth, err := net.InterfaceByName(a.opts.Interface)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", a.opts.Interface, err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("loopback interface: %w", err)
	}
	a.ethIndex, a.loIndex = eth.Index, lo.Index
	if err := a.src.AttachEdge(eth.Index, bpf.TCAuto); err != nil {
		return err
	}
	if err := a.src.AttachApp(lo.Index, bpf.TCAuto); err != nil {
		return err
	}
	for _, at := range a.src.Attachments() {
		if !slices.Contains(a.mechanisms, at.Mechanism) {
			a.mechanisms = append(a.mechanisms, at.Mechanism)
		}
	}
	if slices.Contains(a.mechanisms, bpf.MechanismClsact) {
		a.log.Info("TCX unavailable (kernel before 6.6): attached through a clsact qdisc")
	}
	return nil
}

// startCPU loads the sched_switch program, restricted to the pod's cgroup.
func (a *Agent) startCPU() error {
	self, err := cgroups.FindSelf()
	if err != nil {
		return err
	}
	if self.OutsideV2() {
		// Every container of the node would share one cgroup v2 id:
		// refuse rather than charge the runtime's CPU to the proxy.
		return fmt.Errorf("the container runtime left this container out of the cgroup v2 hierarchy (cgroup v1 cpu %s, v2 %s): cgroup v2 ids do not tell the pod's containers apart", self.V1CPU, self.Path)
	}
	a.self, a.selfID = self, self.ID
	a.cpu, err = bpf.LoadCPUProbe(a.kernelTypes)
	if err != nil {
		return err
	}
	var filter bpf.CPUFilter
	if a.opts.PodCgroup != "" {
		if !self.Visible() {
			return fmt.Errorf("pod cgroup %s given, but no cgroup2 mount shows this process's cgroup %s", a.opts.PodCgroup, self.Path)
		}
		if filter, err = bpf.CPUFilterForPath(self.Mount, a.opts.PodCgroup); err != nil {
			return err
		}
		a.podDir = a.opts.PodCgroup
		return a.startAccounting(filter) // discovery attaches it otherwise
	}
	// The kernel knows the real ancestry even when a cgroup namespace
	// hides it from the filesystem, or no cgroup2 is mounted at all.
	proc, err := bpf.SelfProcess()
	if err != nil {
		return err
	}
	ids, err := a.cpu.DiscoverAncestry(proc, 5*time.Second)
	if err != nil {
		return err
	}
	level := len(ids) - 1
	if own := ids[level]; own != self.ID {
		if self.ID != 0 {
			a.log.Warn("the kernel names another cgroup than the filesystem: trusting the kernel", "kernel", own, "filesystem", self.ID, "dir", self.Dir)
		}
		a.selfID = own
	}
	switch {
	case level == 0:
		// Not in a pod (a test or a node-level run): there is no
		// pod cgroup to keep to.
		a.log.Warn("the probe runs in the root cgroup: accounting CPU of every cgroup, not one pod's")
		a.notes = append(a.notes, "the probe runs in the root cgroup: CPU is reported for every cgroup of the node")
		filter = bpf.CPUFilter{AncestorID: ids[0], Level: 0}
	case !self.Visible():
		filter = bpf.CPUFilter{AncestorID: ids[level-1], Level: uint32(level - 1)}
		a.notes = append(a.notes, "no cgroup v2 is mounted in the probe's container (hybrid cgroup v1/v2 host): containers are listed by cgroup id")
	case self.Namespaced():
		filter = bpf.CPUFilter{AncestorID: ids[level-1], Level: uint32(level - 1)}
		a.notes = append(a.notes, "the probe's cgroup namespace hides the pod's cgroup paths: containers are listed by cgroup id")
	default:
		filter = bpf.CPUFilter{AncestorID: ids[level-1], Level: uint32(level - 1)}
		parent := filepath.Dir(self.Dir)
		if id, err := cgroups.ID(parent); err == nil && id == filter.AncestorID {
			a.podDir = parent
		}
	}
	return a.startAccounting(filter)
}

// startAccounting leaves discovery (or the unattached state) for
// accounting below filter.
func (a *Agent) startAccounting(filter bpf.CPUFilter) error {
	if err := a.cpu.SetFilter(filter); err != nil {
		return err
	}
	a.log.Info("accounting CPU below the pod's cgroup", "pod_cgroup_id", filter.AncestorID, "level", filter.Level, "probe_cgroup_id", a.selfID)
	if a.opts.PodCgroup != "" {
		return a.cpu.Attach()
	}
	return nil
}

// Close stops reading, detaches every program (in the pod's namespace)
// and releases the maps. Safe to call more than once.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.stopped.Store(true)
		if a.reading {
			close(a.stop)
			<-a.done
		}
		a.closeErr = a.release()
		a.log.Info("probe detached")
	})
	return a.closeErr
}

func (a *Agent) release() error {
	var errs []error
	if a.src != nil {
		// Detaching acts in the pod's network namespace.
		errs = append(errs, inNetns(a.opts.NetNS, a.src.close))
		a.src = nil
	}
	if a.cpu != nil {
		errs = append(errs, a.cpu.Close())
		a.cpu = nil
	}
	return errors.Join(errs...)
}

// run is the reading loop. It sleeps on a Go timer, never in the ring
// buffer's epoll: a goroutine blocked in a system call for more than 10 ms
// makes the Go runtime's sysmon take its P back and then poll every 20 us
// for a while. At every scan interval that cost more CPU than everything
// the probe does with its records (perf, 2000 rps: 40% of the process's
// time went to the context switches of those sleeps). Each wakeup drains
// the ring without blocking.
func (a *Agent) run() {
	defer close(a.done)
	now := time.Now()
	sched := newSchedule(now, a.opts.ScanInterval, a.quietInterval(), a.opts.ResolveInterval)
	nextCPU := now
	lastDrain := now
	var overload uint64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-timer.C:
		}
		drainAt := time.Now()
		read, open := a.drain(&overload)
		if !open {
			return
		}
		now = time.Now()
		a.heartbeat.Store(now.UnixNano())
		if err := a.sampler.Tick(now, a.outerSeen()); err != nil {
			a.log.Error("sampling gate", "err", err)
		}
		sched.tick(now, func() bool {
			quiet, err := a.src.scan(a.opts.IdleTime, read, func(ev *exchange.Event) { a.add(ev, &overload) })
			if err != nil {
				a.log.Error("idle scan", "err", err)
				return false
			}
			if quiet {
				a.quiet.Add(1)
			}
			return quiet
		}, func() {
			// The cutoff on the wall clock: the pairing decided every
			// exchange that ended a horizon ago.
			mono := pairing.Now()
			results := a.pairer.Resolve(mono)
			if a.outPar != nil {
				results = append(results, a.outPar.Resolve(mono)...)
			}
			a.record(results, time.Now().Add(-a.opts.Horizon), overload)
		})
		if !now.Before(nextCPU) {
			a.sample()
			nextCPU = now.Add(a.opts.CPUInterval)
		}
		now = time.Now()
		wait := min(sched.nextScan.Sub(now), sched.nextResolve.Sub(now), nextCPU.Sub(now),
			a.src.pace(read, drainAt.Sub(lastDrain)))
		if next := a.sampler.Next(); !next.IsZero() {
			wait = min(wait, next.Sub(now))
		}
		lastDrain = drainAt
		timer.Reset(max(wait, 0))
	}
}

// outerSeen is how many outer exchanges (inbound requests, outbound calls)
// the pairers have received: what the sampler's rate is made of.
func (a *Agent) outerSeen() uint64 {
	n := a.pairer.Counts().Edge
	if a.outPar != nil {
		n += a.outPar.Counts().App
	}
	return n
}

// schedule is when the loop next scans (drains staged exchanges and walks
// the flow table for idle ones) and next resolves (decides the pairing).
// While the pod is quiet the scans space out to quietInterval, and the
// resolves, which must go on deciding what is pending, follow them: the
// loop wakes once per quiet interval. The loop's wakeups (and the Go
// runtime's sysmon, which each wakeup sets polling again for a while) were
// most of an idle probe's CPU.
type schedule struct {
	scanEvery, quietEvery, resolveEvery time.Duration
	nextScan, nextResolve               time.Time
	quiet                               bool // the last scan found the pod quiet
}

func newSchedule(now time.Time, scanEvery, quietEvery, resolveEvery time.Duration) *schedule {
	return &schedule{
		scanEvery: scanEvery, quietEvery: quietEvery, resolveEvery: resolveEvery,
		nextScan: now.Add(scanEvery), nextResolve: now.Add(resolveEvery),
	}
}

// tick runs what is due at now: the scan (which says whether the pod is
// quiet), then the resolve.
func (s *schedule) tick(now time.Time, scan func() (quiet bool), resolve func()) {
	if !now.Before(s.nextScan) {
		s.quiet = scan()
		if s.quiet {
			s.nextScan = now.Add(s.quietEvery)
		} else {
			s.nextScan = now.Add(s.scanEvery)
			// Traffic again: decide at the usual pace from now on.
			if s.nextResolve.After(now.Add(s.resolveEvery)) {
				s.nextResolve = now.Add(s.resolveEvery)
			}
		}
	}
	if !now.Before(s.nextResolve) {
		resolve()
		s.nextResolve = now.Add(s.resolveEvery)
		if s.quiet && s.nextResolve.Before(s.nextScan) {
			s.nextResolve = s.nextScan
		}
	}
}

// quietInterval is how long the loop sleeps while the pod is quiet. A
// packet that arrives meanwhile waits for the next scan at most this long
// (its exchange in the staging area, or in the flow table until its idle
// time), and the scan after it is back on ScanInterval, so an exchange
// reaches the pairing at most max(quietInterval, IdleTime + ScanInterval)
// after it ended, well within the Horizon (1 s by default, against 300 ms
// and 200 + 100 ms).
func (a *Agent) quietInterval() time.Duration {
	return max(a.opts.ScanInterval, min(3*a.opts.ScanInterval, a.opts.Horizon/2))
}

// minDrainInterval bounds how often a fast producer makes the loop wake.
const minDrainInterval = 5 * time.Millisecond

// drainPace is how long the loop may sleep before records arriving at the
// rate of the last drain (read records over since) fill an eighth of the
// ring, which holds capacity of them. Records are submitted without waking the reader (a wakeup per
// record would be a context switch on the request path), so the loop
// wakes early by itself when traffic is heavy: at 10k requests per second
// a 1 MiB ring is drained every ~35 ms instead of every scan interval.
func drainPace(read int, since time.Duration, capacity int) time.Duration {
	if read == 0 || since <= 0 {
		return time.Duration(math.MaxInt64)
	}
	perSecond := float64(read) / since.Seconds()
	return max(time.Duration(float64(capacity/8)/perSecond*float64(time.Second)), minDrainInterval)
}

// drain hands what the source has finished to the pairing, without
// blocking and at most a ring's worth (a producer outpacing the loop must
// not keep it from its other tasks). It returns how many records it read,
// and false once the source is closed.
func (a *Agent) drain(overload *uint64) (int, bool) {
	return a.src.drain(func(ev *exchange.Event) { a.add(ev, overload) })
}

// add gives one finished exchange to its pairing.
func (a *Agent) add(ev *exchange.Event, overload *uint64) {
	p := a.pairer
	if ev.Direction == exchange.Outbound && a.outPar != nil {
		p = a.outPar
	}
	p.Add(*ev)
	if e, ap := p.Pending(); e+ap > a.opts.MaxPending {
		*overload += uint64(e + ap)
		a.record(p.Drain(), time.Now(), *overload)
		a.log.Warn("too many exchanges pending: decided early", "pending", e+ap, "direction", ev.Direction)
	}
}

// record hands decided results and the current totals to the windows and
// the metrics.
func (a *Agent) record(results []pairing.Result, decided time.Time, overload uint64) {
	// The kernel's counters cost a syscall per counter and CPU to read:
	// once per CPUInterval is enough for the losses they carry, which a
	// slot then shows up to that much later (at 2000 rps, reading them at
	// every resolve was a sixth of the probe's own CPU).
	var stats bpf.ExchangeStats
	var err error
	fresh := false
	if now := time.Now(); now.Sub(a.statsAt) >= a.opts.CPUInterval {
		if stats, err = a.src.stats(); err != nil {
			a.log.Error("read exchange stats", "err", err)
		} else {
			fresh, a.statsAt = true, now
		}
	}
	a.mu.Lock()
	a.counts = a.pairer.Counts()
	a.proxy = a.pairer.ProxyDetected()
	if a.outPar != nil {
		a.outCount = a.outPar.Counts()
		a.outProxy = a.outPar.ProxyDetected()
	}
	if fresh {
		a.stats = stats
	}
	a.losses = api.Losses{
		RingBufferFull: a.stats.RingBufferFull, DecodeErrors: a.src.decodeErrors(),
		Overload: overload, IdleLate: a.stats.IdleLate, SamplingCut: a.stats.GateCut,
	}
	a.notOpen = a.sampler.NotOpen(time.Now())
	a.followed = a.outerSeen()
	a.estimate = a.sampler.Estimated(a.followed)
	t := recorder.Totals{Counts: a.counts, OutboundCounts: a.outCount, Losses: a.losses, DecidedThrough: decided,
		NotOpen: a.notOpen, Followed: a.followed, Estimated: a.estimate}
	a.mu.Unlock()
	a.met.Observe(results)
	a.rec.Record(time.Now(), results, t)
}

// sample reads CPU per cgroup and refreshes which cgroup is which.
func (a *Agent) sample() {
	if a.cpu == nil {
		return
	}
	usage, err := a.cpu.Usage()
	if err != nil {
		a.log.Error("read CPU usage", "err", err)
		return
	}
	edge, err := a.src.EdgeServerCgroups()
	if err != nil {
		a.log.Error("read edge server cgroups", "err", err)
	}
	a.mu.Lock()
	unknown := false
	for id := range usage {
		if _, ok := a.known[id]; !ok {
			unknown = true
		}
	}
	proxy := a.proxy
	a.mu.Unlock()

	var listed map[uint64]cgroups.Cgroup
	if unknown && a.podDir != "" {
		if listed, err = cgroups.List(a.self.Mount, a.podDir); err != nil {
			a.log.Debug("list pod cgroups", "err", err)
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.cpuTot = usage
	for id := range usage {
		c := a.known[id]
		if l, ok := listed[id]; ok {
			c.Cgroup, c.ContainerID = l.Path, l.ContainerID
		} else if id == a.selfID && a.self.Path != "/" && c.Cgroup == "" {
			// Its own path is in /proc/self/cgroup even when no
			// cgroup2 mount shows the pod's directory (hybrid hosts).
			c.Cgroup, c.ContainerID = a.self.Path, cgroups.ContainerID(path.Base(a.self.Path))
		}
		c.CgroupID = id
		a.known[id] = c
	}
	// Roles are re-derived each time: a proxy restart moves its socket
	// to a new cgroup, and the proxy may be detected only later.
	serving := map[uint64]bool{}
	for _, id := range edge {
		serving[id] = true
	}
	for id, c := range a.known {
		c.Role, c.Name = "", ""
		switch {
		case serving[id] && proxy:
			c.Role, c.Name = "proxy", a.opts.Config.ProxyContainer
		case serving[id]:
			c.Role = "app"
		case id == a.selfID:
			c.Role = "probe"
		}
		if _, live := usage[id]; !live && !serving[id] {
			delete(a.known, id) // bounded by the kernel map anyway
			continue
		}
		a.known[id] = c
	}
	now := time.Now()
	a.notOpen = a.sampler.NotOpen(now)
	a.rec.Record(now, nil, recorder.Totals{Counts: a.counts, OutboundCounts: a.outCount, Losses: a.losses, CPU: usage,
		NotOpen: a.notOpen, Followed: a.followed, Estimated: a.estimate})
}

// Snapshot returns the measurements of one window.
func (a *Agent) Snapshot(spec window.Spec) (api.Snapshot, error) {
	a.mu.Lock()
	ctx := recorder.Context{
		Mesh:                  string(a.opts.Config.Mesh),
		ProxyDetected:         a.proxy,
		Outbound:              a.outPar != nil,
		OutboundProxyDetected: a.outProxy,
		Notes:                 slices.Clone(a.notes),
		Containers:            make(map[uint64]api.ContainerCPU, len(a.known)),
		SampleAboveRPS:        a.sampler.AboveRPS(),
	}
	for id, c := range a.known {
		ctx.Containers[id] = c
	}
	a.mu.Unlock()
	return a.rec.Snapshot(time.Now(), spec, ctx)
}

// Ready reports whether the programs are attached and the ring buffer is
// being read.
func (a *Agent) Ready() error {
	if a.stopped.Load() {
		return errors.New("probe stopped")
	}
	last := time.Unix(0, a.heartbeat.Load())
	if age := time.Since(last); age > 10*a.opts.ScanInterval+time.Second {
		return fmt.Errorf("ring buffer not read for %v", age.Round(time.Millisecond))
	}
	return nil
}

// Metrics returns the Prometheus metrics (own registry).
func (a *Agent) Metrics() *metrics.Metrics { return a.met }

// Mechanisms lists how the TC programs were attached (tcx, clsact).
func (a *Agent) Mechanisms() []string { return slices.Clone(a.mechanisms) }

// totals feeds the metrics collector at scrape time.
func (a *Agent) totals() metrics.Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := metrics.Totals{Counts: a.counts, Outbound: a.outCount, Losses: a.losses, Exchange: a.stats, ProxyDetected: a.proxy,
		NotOpen: a.notOpen, Estimated: a.estimate}
	for id, d := range a.cpuTot {
		c := a.known[id]
		t.CPU = append(t.CPU, metrics.CPU{CgroupID: id, Name: c.Name, Role: c.Role, Seconds: d.Seconds()})
	}
	return t
}
