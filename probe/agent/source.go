package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/flowtrack"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
)

// source turns the pod's packets into finished exchanges: the kernel's TC
// programs following the connections themselves (kernelSource,
// exchange.bpf.c), or recording segments that the process follows
// (processSource, segments.bpf.c and probe/flowtrack). The loop owns it.
type source interface {
	SetPort(port uint16, roles bpf.PortRole) error
	AddProxySource(addr netip.Addr) error
	AttachEdge(ifindex int, mode bpf.TCMode) error
	AttachApp(ifindex int, mode bpf.TCMode) error
	Attachments() []*bpf.TCAttachment
	SetGate(g bpf.Gate) error
	Gate() (bpf.Gate, error)
	Parked() bool
	EdgeServerCgroups() (map[uint16]uint64, error)

	// drain hands every exchange finished since the last call to add and
	// returns how many records it read (at most a ring's worth), and
	// false once the source is closed.
	drain(add func(*exchange.Event)) (read int, open bool)
	// scan lets quiet connections release their last exchange (to add)
	// and says whether the pod is quiet: nothing read, nothing waiting.
	scan(idle time.Duration, read int, add func(*exchange.Event)) (quiet bool, err error)
	// pace is how long the loop may sleep, given it read records over since.
	pace(read int, since time.Duration) time.Duration
	// stats are the counters of what was seen, given up on and lost.
	stats() (bpf.ExchangeStats, error)
	// decodeErrors counts records that did not decode.
	decodeErrors() uint64
	// open starts reading, once the programs are attached to the pod's
	// interface (edge) and lo (app), numbered in its network namespace.
	open(edge, app int) error
	close() error
}

// kernelSource: exchange.bpf.c follows the connections in the kernel and
// sends finished exchanges through a BPF ring buffer.
type kernelSource struct {
	*bpf.ExchangeProbe
	rd      *ringbuf.Reader
	r       *exchange.Reader
	ring    int
	stopped func() bool
	log     func(msg string, args ...any)
	badRecs uint64
}

// newKernelSource loads the programs; stopped says whether the agent is
// closing (a read error then is no error), log reports read errors.
func newKernelSource(opts bpf.ExchangeOptions, stopped func() bool, log func(msg string, args ...any)) (*kernelSource, error) {
	p, err := bpf.LoadExchangeProbe(opts)
	if err != nil {
		return nil, err
	}
	return &kernelSource{ExchangeProbe: p, stopped: stopped, log: log}, nil
}

func (k *kernelSource) open(_, _ int) error {
	rd, err := k.NewEventReader()
	if err != nil {
		return err
	}
	k.rd, k.r, k.ring = rd, exchange.NewReader(rd), rd.BufferSize()
	return nil
}

// recordBytes is the most one exchange takes in the ring: the event and
// the ring's 8-byte record header, which a batch of exchanges shares.
const recordBytes = exchange.Size + 8

func (k *kernelSource) drain(add func(*exchange.Event)) (int, bool) {
	k.r.SetDeadline(time.Now()) // already passed: the wait returns at once
	n := 0
	for n < k.ring/recordBytes {
		ev, err := k.r.Read()
		switch {
		case err == nil:
			add(&ev)
			n++
		case errors.Is(err, os.ErrDeadlineExceeded):
			return n, true // the ring is empty
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return n, false
		case errors.Is(err, exchange.ErrSize), errors.Is(err, exchange.ErrVersion), errors.Is(err, exchange.ErrInvalid):
			k.badRecs++
			n++
		default:
			if k.stopped() {
				return n, false
			}
			k.log("reading the ring buffer", "err", err)
			return n, true
		}
	}
	return n, true
}

func (k *kernelSource) scan(idle time.Duration, read int, _ func(*exchange.Event)) (bool, error) {
	r, err := k.FlushIdle(idle)
	if err != nil {
		return false, err
	}
	// Quiet: no packet since the scans before, nothing staged or read.
	return !r.Walked && r.Staged == 0 && read == 0, nil
}

func (k *kernelSource) pace(read int, since time.Duration) time.Duration {
	return drainPace(read, since, k.ring/recordBytes)
}

func (k *kernelSource) stats() (bpf.ExchangeStats, error) { return k.Stats() }
func (k *kernelSource) decodeErrors() uint64              { return k.badRecs }

func (k *kernelSource) close() error {
	var errs []error
	if k.rd != nil {
		errs = append(errs, k.rd.Close())
	}
	return errors.Join(append(errs, k.Close())...)
}

// reorderDelay is how far behind the clock the process follows segments.
// Each CPU writes its records in time order, but a request's segments are
// written by both CPUs: a segment is applied only once every CPU has had
// time to publish what came before it (a program run publishes its record
// microseconds after reading the clock, unless the hypervisor stops its
// vCPU meanwhile; a record that comes later still is applied late,
// counted and logged: processSource.late).
const reorderDelay = 2 * time.Millisecond

// processSource: segments.bpf.c records each segment worth following into
// per-CPU rings, and the process follows the connections (flowtrack).
type processSource struct {
	*bpf.SegmentProbe
	rd      *bpf.SegmentReader
	tr      *flowtrack.Tracker
	ifindex [4]uint32 // by flowtrack.Hook
	recs    [][]byte
	// pending are decoded segments not applied yet: newer than the
	// clock minus reorderDelay at the last drain. Their payloads are
	// copied (the reader's buffer is reused).
	pending []flowtrack.Segment
	all     []flowtrack.Segment // pending and the new ones, in time order
	// arenas hold the payloads of pending segments, alternately: a drain
	// copies what it holds back into one, while the segments it applies
	// may still point into the other (held back by the drain before).
	arenas  [2][]byte
	drains  int
	scratch []flowtrack.Segment // mergeRuns's
	applied uint64              // time of the latest segment applied
	add     func(*exchange.Event)
	badRecs uint64
	// late counts segments applied after a later one had been (a record
	// published more than reorderDelay after its clock read): the
	// exchange they belong to may be cut wrong. Logged as it grows.
	late, lateLogged uint64
	// lost is the reader's count of slots lost to overruns as last seen,
	// lostLogged as last logged.
	lost, lostLogged uint64
	warn             func(msg string, args ...any)
	closed           bool
}

// newProcessSource loads the programs; warn reports losses and late
// segments as they grow.
func newProcessSource(maxFlows uint32, outbound bool, kernelTypes *btf.Cache, warn func(msg string, args ...any)) (*processSource, error) {
	p, err := bpf.LoadSegmentProbe(bpf.SegmentOptions{Outbound: outbound, KernelTypes: kernelTypes})
	if err != nil {
		return nil, err
	}
	s := &processSource{SegmentProbe: p, warn: warn}
	s.tr = flowtrack.New(flowtrack.Config{MaxFlows: int(maxFlows), Outbound: outbound, Emit: func(e *exchange.Event) {
		s.add(e)
	}})
	return s, nil
}

func (s *processSource) open(edge, app int) error {
	rd, err := s.NewSegmentReader()
	if err != nil {
		return err
	}
	s.rd = rd
	s.ifindex[flowtrack.EdgeIngress], s.ifindex[flowtrack.EdgeEgress] = uint32(edge), uint32(edge)
	s.ifindex[flowtrack.App] = uint32(app)
	return nil
}

func (s *processSource) drain(add func(*exchange.Event)) (int, bool) {
	if s.closed {
		return 0, false
	}
	s.add = add
	cutoff := pairing.Now() - uint64(reorderDelay)
	s.recs = s.rd.Read(s.recs[:0])
	if lost := s.rd.Lost(); lost > s.lost {
		// Segments between those applied and these are gone: no
		// exchange in progress can be trusted.
		s.tr.Lost()
		s.lost = lost
	}
	all := append(s.all[:0], s.pending...)
	for _, rec := range s.recs {
		var seg flowtrack.Segment
		if err := flowtrack.DecodeRecord(&seg, rec); err != nil {
			s.badRecs++
			continue
		}
		seg.Ifindex = s.ifindex[seg.Hook]
		all = append(all, seg)
	}
	// Merge the CPUs' records (and those held back last time) into time
	// order.
	all, s.scratch = mergeRuns(all, s.scratch)
	s.all = all
	n := 0
	for n < len(all) && all[n].Time <= cutoff {
		seg := &all[n]
		if seg.Time < s.applied {
			s.late++
		} else {
			s.applied = seg.Time
		}
		s.tr.Add(seg)
		n++
	}
	// Hold the rest back, their payloads copied out of the reader's
	// buffer, which the next Read reuses, into this drain's arena (an
	// allocation per held segment was 8% of the process's CPU at
	// maximum throughput).
	s.drains++
	arena := s.arenas[s.drains%2][:0]
	size := 0
	for _, seg := range all[n:] {
		size += len(seg.Payload)
	}
	if cap(arena) < size {
		arena = make([]byte, 0, size)
	}
	s.pending = s.pending[:0]
	for _, seg := range all[n:] {
		if len(seg.Payload) > 0 {
			at := len(arena)
			arena = append(arena, seg.Payload...)
			seg.Payload = arena[at:len(arena):len(arena)]
		}
		s.pending = append(s.pending, seg)
	}
	s.arenas[s.drains%2] = arena
	return len(s.recs), true
}

func (s *processSource) scan(idle time.Duration, read int, add func(*exchange.Event)) (bool, error) {
	s.add = add
	gate, epoch := s.GateState()
	// The tracker has applied what came before the cutoff: that is its
	// now.
	now := pairing.Now() - uint64(reorderDelay)
	_, waiting := s.tr.FlushIdle(now, uint64(idle), flowtrack.Gate(gate), epoch)
	return read == 0 && len(s.pending) == 0 && waiting == 0, nil
}

func (s *processSource) pace(_ int, since time.Duration) time.Duration {
	// Each CPU fills its own share of the ring: the busiest sets the pace.
	return drainPace(s.rd.Busiest(), since, s.rd.Slots())
}

// stats puts the programs', the reader's and the tracker's counters in the
// kernel source's terms, which the metrics and losses report.
func (s *processSource) stats() (bpf.ExchangeStats, error) {
	k, err := s.Stats()
	if err != nil {
		return bpf.ExchangeStats{}, err
	}
	if s.lost > s.lostLogged {
		s.warn("the probe fell a ring behind: segments lost, exchanges in progress cut", "slots_since_start", s.lost)
		s.lostLogged = s.lost
	}
	if s.late > s.lateLogged {
		s.warn("segments recorded out of time order, applied late", "since_start", s.late, "reorder_delay", reorderDelay)
		s.lateLogged = s.late
	}
	t := s.tr.Stats()
	return bpf.ExchangeStats{
		Packets: k.Packets, NotTCP: k.NotTCP, IPv6ExtHeader: k.IPv6ExtHeader, IPFragment: k.IPFragment,
		NoPort: k.NoPort + t.NoPort, FlowsCreated: t.FlowsCreated, PredatesProbe: t.PredatesProbe,
		Retransmits: t.Retransmits, Events: t.Events,
		// Exchanges lost to the ring: cut after an overrun, and (never
		// where every possible CPU has a region) segments no region took.
		RingBufferFull: t.LostCut + k.NoRing,
		PortsLearnt:    k.PortsLearnt, PayloadLoadFailed: k.HeadFailed, IdleFlushed: t.IdleFlushed,
		IdleLate: t.IdleLate, BareACK: k.BareACK + t.BareACK, OutboundUnknown: t.OutboundUnknown,
		GateClosed: k.GateClosed + t.GateClosed, GateSkipped: t.GateSkipped, GateCut: t.GateCut,
	}, nil
}

func (s *processSource) decodeErrors() uint64 { return s.badRecs + s.rd.Corrupt() }

func (s *processSource) close() error {
	s.closed = true
	var errs []error
	if s.rd != nil {
		errs = append(errs, s.rd.Close())
	}
	return errors.Join(append(errs, s.Close())...)
}

// sourceName says where the connections are followed (config.Follow).
func sourceName(s source) string {
	switch s.(type) {
	case *processSource:
		return "process"
	case *kernelSource:
		return "kernel"
	}
	return fmt.Sprintf("%T", s)
}

// mergeRuns puts segs in time order, stably, and returns them with the
// scratch buffer to keep. segs is a few runs already in order: the
// segments held back, then each CPU's records, which each CPU wrote in
// time order. Merging runs pairwise moves each segment once per round,
// about log2(CPUs) rounds, where a general sort moved them many times
// more.
func mergeRuns(segs, scratch []flowtrack.Segment) ([]flowtrack.Segment, []flowtrack.Segment) {
	var bounds []int // where each run starts, and len(segs)
	for i := range segs {
		if i == 0 || segs[i].Time < segs[i-1].Time {
			bounds = append(bounds, i)
		}
	}
	bounds = append(bounds, len(segs))
	for len(bounds) > 2 {
		scratch = append(scratch[:0], segs...)
		next := bounds[:1]
		for r := 0; r+1 < len(bounds); r += 2 {
			lo, mid := bounds[r], bounds[r+1]
			hi := mid
			if r+2 < len(bounds) {
				hi = bounds[r+2]
			}
			i, j, k := lo, mid, lo
			for i < mid && j < hi {
				// Ties go to the earlier run: stable.
				if scratch[j].Time < scratch[i].Time {
					segs[k] = scratch[j]
					j++
				} else {
					segs[k] = scratch[i]
					i++
				}
				k++
			}
			k += copy(segs[k:], scratch[i:mid])
			copy(segs[k:], scratch[j:hi])
			next = append(next, hi)
		}
		bounds = next
	}
	return segs, scratch
}
