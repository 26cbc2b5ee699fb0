package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// SegmentOptions configure LoadSegmentProbe.
type SegmentOptions struct {
	// SlotsPerCPU is each CPU's share of the segment ring, in 64-byte
	// slots: a power of two; if zero, DefaultSlotsPerCPU of the node's
	// possible CPUs. A request takes about six at 2000 rps (four
	// segments, two of them with a head slot), so 8192 hold about 1360
	// requests per CPU between reads.
	SlotsPerCPU uint32
	// Outbound records every TCP segment of eth0 and lo with payload or a
	// SYN, FIN or RST, for the process to tell the pod's outbound calls
	// (flowtrack.Config.Outbound).
	Outbound bool
	// KernelTypes: see ExchangeOptions.
	KernelTypes *btf.Cache
}

// The segment ring's default size. Every possible CPU gets a share (a
// pod's TC programs run wherever its packets are handled), and the whole
// ring is kernel memory charged to the probe's memory cgroup: on large
// nodes the shares shrink so that the ring stays within ringBudgetSlots
// (4 MiB), down to minDefaultSlots. The shares can shrink there because
// the agent's loop reads as soon as the busiest CPU has filled an eighth
// of its share (probe/agent drainPace), and a pod's traffic spreads over
// more CPUs on a larger node. On small nodes the share is what carries a
// probe through the spells when a saturated workload leaves it no CPU (it
// runs at its request's weight): at 4096 slots the benchmark's probe lost
// about one exchange in a thousand at maximum throughput on 2 CPUs, at
// 8192 none (docs/benchmarks.md, session 19).
const (
	maxDefaultSlots = 8192 // 512 KiB a CPU: up to 8 CPUs
	minDefaultSlots = 1024 // 64 KiB a CPU: about 170 requests, 17 ms at 10k rps on one CPU
	ringBudgetSlots = 1 << 16
)

// DefaultSlotsPerCPU is each CPU's share of the segment ring on a node
// with cpus possible CPUs: the largest power of two within the ring's
// budget, between 1024 and 8192 slots.
func DefaultSlotsPerCPU(cpus int) uint32 {
	slots := uint32(maxDefaultSlots)
	for slots > minDefaultSlots && cpus*int(slots) > ringBudgetSlots {
		slots /= 2
	}
	return slots
}

// SegmentProbe owns the loaded segment programs (c/segments.bpf.c), their
// ring and their TC attachments: the kernel's half of the design where the
// process follows the connections (probe/flowtrack).
type SegmentProbe struct {
	objs      segmentsObjects
	portRoles                 // roles_by_port in the .bss (portRoles.mem)
	cgroupsAt int64           // offset of edge_cgroup_by_port in the .bss
	edgePorts map[uint16]bool // ports set with PortEdge
	cpus      int
	slots     uint32
	tcHooks
}

// segmentsObjects adds the programs' .bss map to the generated objects.
type segmentsObjects struct {
	SegmentsObjects
	BSS *ebpf.Map `ebpf:".bss"`
}

func (o *segmentsObjects) close() error {
	return errors.Join(o.SegmentsObjects.Close(), o.BSS.Close())
}

// LoadSegmentProbe loads the segment programs and maps without attaching
// them. Needs CAP_BPF.
func LoadSegmentProbe(opts SegmentOptions) (*SegmentProbe, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("segment ring: count possible CPUs: %w", err)
	}
	slots := opts.SlotsPerCPU
	if slots == 0 {
		slots = DefaultSlotsPerCPU(cpus)
	}
	if slots < 2 || slots&(slots-1) != 0 || slots > 1<<20 {
		return nil, fmt.Errorf("segment ring: %d slots per CPU, want a power of two from 2 to %d", slots, 1<<20)
	}
	spec, err := LoadSegments()
	if err != nil {
		return nil, err
	}
	spec.Maps[SegmentsMapSegmentRing].MaxEntries = uint32(cpus) * slots
	spec.Maps[SegmentsMapRingHeads].MaxEntries = uint32(cpus)
	outbound := uint8(0)
	if opts.Outbound {
		outbound = 1
	}
	for name, v := range map[string]any{
		SegmentsVarSlotsPerCpu:    slots,
		SegmentsVarRingCpus:       uint32(cpus),
		SegmentsVarRecordOutbound: outbound,
	} {
		sv, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("segments object has no %s variable: regenerate it (make generate)", name)
		}
		if err := sv.Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	p := &SegmentProbe{cpus: cpus, slots: slots, edgePorts: map[uint16]bool{}}
	if err := spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{Cache: opts.KernelTypes}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load segment programs: verifier: %+v", verr)
		}
		return nil, fmt.Errorf("load segment programs (needs CAP_BPF): %w", err)
	}
	roles, ok := spec.Variables[SegmentsVarRolesByPort]
	cgroups, ok2 := spec.Variables[SegmentsVarEdgeCgroupByPort]
	if !ok || !ok2 {
		_ = p.objs.close()
		return nil, errors.New("segments object has no roles_by_port or edge_cgroup_by_port variable: regenerate it (make generate)")
	}
	if p.mem, err = p.objs.BSS.Memory(); err != nil {
		_ = p.objs.close()
		return nil, fmt.Errorf("map the segment programs' .bss (a memory-mappable .bss needs Linux 5.5): %w", err)
	}
	p.at, p.cgroupsAt = int64(roles.Offset), int64(cgroups.Offset)
	p.tcHooks = tcHooks{edgeIn: p.objs.EdgeIngressSegment, edgeOut: p.objs.EdgeEgressSegment, app: p.objs.AppSegment,
		gateVar: p.objs.SamplingGate, epochVar: p.objs.SamplingEpoch}
	return p, nil
}

// SetPort sets the roles of a port of interest (host order), noting the
// edge ports for EdgeServerCgroups.
func (p *SegmentProbe) SetPort(port uint16, roles PortRole) error {
	if err := p.portRoles.SetPort(port, roles); err != nil {
		return err
	}
	p.edgePorts[port] = roles&PortEdge != 0
	return nil
}

// RemovePort forgets a port of interest.
func (p *SegmentProbe) RemovePort(port uint16) error {
	if err := p.portRoles.RemovePort(port); err != nil {
		return err
	}
	delete(p.edgePorts, port)
	return nil
}

// EdgeServerCgroups returns, per edge port, the cgroup v2 id of the socket
// that answered on it last: the proxy's container when a sidecar
// intercepts the port, the application's when nothing does.
func (p *SegmentProbe) EdgeServerCgroups() (map[uint16]uint64, error) {
	out := map[uint16]uint64{}
	var b [8]byte
	for port, edge := range p.edgePorts {
		if !edge {
			continue
		}
		if _, err := p.mem.ReadAt(b[:], p.cgroupsAt+8*int64(port)); err != nil {
			return nil, fmt.Errorf("read the cgroup answering on port %d: %w", port, err)
		}
		if id := binary.NativeEndian.Uint64(b[:]); id != 0 {
			out[port] = id
		}
	}
	return out, nil
}

// AddProxySource registers an address the sidecar connects to the
// application from (addProxySource).
func (p *SegmentProbe) AddProxySource(addr netip.Addr) error {
	return addProxySource(p.objs.ProxySources, addr)
}

// SegmentStats are the segment programs' counters summed over CPUs.
type SegmentStats struct {
	Packets       uint64 // packets seen by any TC program
	NotTCP        uint64 // not IPv4/IPv6 TCP, or not parseable
	IPv6ExtHeader uint64 // IPv6 with extension headers, not parsed
	IPFragment    uint64 // IPv4 fragments, not parsed
	BareACK       uint64 // no payload, SYN, FIN or RST: nothing to record
	GateClosed    uint64 // segments that met the sampling gate closed
	NoPort        uint64 // TCP without a port of interest
	Recorded      uint64 // segments written to the ring
	NoRing        uint64 // segments on a CPU the ring has no region for
	HeadFailed    uint64 // payload not loaded: recorded without a head
	PortsLearnt   uint64
}

// Stats reads the counters.
func (p *SegmentProbe) Stats() (SegmentStats, error) {
	var s SegmentStats
	for idx, dst := range map[SegmentsSegmentStat]*uint64{
		SegmentsSegmentStatSEG_STAT_PACKETS:      &s.Packets,
		SegmentsSegmentStatSEG_STAT_NOT_TCP:      &s.NotTCP,
		SegmentsSegmentStatSEG_STAT_IPV6EXT_HDR:  &s.IPv6ExtHeader,
		SegmentsSegmentStatSEG_STAT_IP_FRAGMENT:  &s.IPFragment,
		SegmentsSegmentStatSEG_STAT_BARE_ACK:     &s.BareACK,
		SegmentsSegmentStatSEG_STAT_GATE_CLOSED:  &s.GateClosed,
		SegmentsSegmentStatSEG_STAT_NO_PORT:      &s.NoPort,
		SegmentsSegmentStatSEG_STAT_RECORDED:     &s.Recorded,
		SegmentsSegmentStatSEG_STAT_NO_RING:      &s.NoRing,
		SegmentsSegmentStatSEG_STAT_HEAD_FAILED:  &s.HeadFailed,
		SegmentsSegmentStatSEG_STAT_PORTS_LEARNT: &s.PortsLearnt,
	} {
		v, err := sumPerCPU(p.objs.SegmentStats, uint32(idx))
		if err != nil {
			return s, fmt.Errorf("read segment stat %d: %w", idx, err)
		}
		*dst = v
	}
	return s, nil
}

// Close detaches every program and releases the maps.
func (p *SegmentProbe) Close() error { return errors.Join(p.detach(), p.objs.close()) }

// segmentSlot is the size of a ring slot: one struct segment_record.
const segmentSlot = int(unsafe.Sizeof(SegmentsSegmentRecord{}))

// recordHeadLen is how many payload bytes follow the record at the start
// of b in the next slot, or -1 if b does not start with a record (the
// decoding is probe/flowtrack's, DecodeRecord, which this package does not
// import: probe/exchange's tests import this package).
func recordHeadLen(b []byte) int {
	var rec SegmentsSegmentRecord
	if len(b) < segmentSlot || b[unsafe.Offsetof(rec.Version)] != 1 || int(b[unsafe.Offsetof(rec.HeadLen)]) > segmentSlot {
		return -1
	}
	return int(b[unsafe.Offsetof(rec.HeadLen)])
}

// SegmentReader reads the segment ring. Not safe for concurrent use.
type SegmentReader struct {
	ring, heads []byte // read-only memory maps of segment_ring and ring_heads
	cpus        int
	slots       uint64
	consumed    []uint64
	buf         []byte // the slots copied out of the ring by the last Read
	busiest     int    // the most slots one CPU had written for the last Read
	lost        uint64
	corrupt     uint64
}

// NewSegmentReader maps the ring for reading. Close it before the probe.
func (p *SegmentProbe) NewSegmentReader() (*SegmentReader, error) {
	ringInfo, err := p.objs.SegmentRing.Info()
	if err != nil {
		return nil, fmt.Errorf("segment ring: %w", err)
	}
	ring, err := unix.Mmap(p.objs.SegmentRing.FD(), 0, int(ringInfo.MaxEntries)*segmentSlot, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the segment ring: %w", err)
	}
	heads, err := unix.Mmap(p.objs.RingHeads.FD(), 0, p.cpus*int(unsafe.Sizeof(SegmentsRingHead{})), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(ring)
		return nil, fmt.Errorf("map the segment ring's heads: %w", err)
	}
	return &SegmentReader{ring: ring, heads: heads, cpus: p.cpus, slots: uint64(p.slots), consumed: make([]uint64, p.cpus)}, nil
}

// Lost is how many slots the reader fell a whole ring behind by and never
// read (records and heads alike), and Corrupt how many slots were not a
// record where one was due (after such a loss, the first may be a head).
func (r *SegmentReader) Lost() uint64    { return r.lost }
func (r *SegmentReader) Corrupt() uint64 { return r.corrupt }

// Busiest is how many slots the CPU that wrote the most had written for
// the last Read: what fills a CPU's share of the ring (Slots) first.
func (r *SegmentReader) Busiest() int { return r.busiest }

// Slots is each CPU's share of the ring.
func (r *SegmentReader) Slots() int { return int(r.slots) }

// Read appends to out the records every CPU published since the last Read,
// each as its 64 bytes followed by its head's (flowtrack.DecodeRecord
// decodes them), one CPU after another and each CPU's in the order written,
// which is time order for that CPU. They point into the reader's buffer,
// valid until the next Read.
func (r *SegmentReader) Read(out [][]byte) [][]byte {
	r.buf = r.buf[:0]
	r.busiest = 0
	type span struct{ from, to int }
	var spans []span
	for cpu := range r.cpus {
		head := (*uint64)(unsafe.Pointer(&r.heads[cpu*int(unsafe.Sizeof(SegmentsRingHead{}))]))
		produced := atomic.LoadUint64(head)
		from := r.consumed[cpu]
		if produced-from > r.slots {
			r.lost += produced - from - r.slots
			from = produced - r.slots
		}
		start := len(r.buf)
		region := r.ring[cpu*int(r.slots)*segmentSlot : (cpu+1)*int(r.slots)*segmentSlot]
		// The slots from..produced, in at most two pieces: up to the
		// region's end, then from its start.
		if from < produced {
			first, last := int(from&(r.slots-1)), int((produced-1)&(r.slots-1))
			if first <= last {
				r.buf = append(r.buf, region[first*segmentSlot:(last+1)*segmentSlot]...)
			} else {
				r.buf = append(r.buf, region[first*segmentSlot:]...)
				r.buf = append(r.buf, region[:(last+1)*segmentSlot]...)
			}
		}
		// Slot n is written again for record n+slots. Those the
		// programs may have rewritten while they were copied, up to the
		// two (a record and its head) of a write not yet published,
		// may hold halves of newer records: drop them, counted.
		if again := atomic.LoadUint64(head); again+2 > from+r.slots {
			over := min(again+2-r.slots, produced) - from
			r.lost += over
			start += int(over) * segmentSlot
		}
		r.consumed[cpu] = produced
		r.busiest = max(r.busiest, int(produced-from))
		spans = append(spans, span{start, len(r.buf)})
	}
	for _, sp := range spans {
		b := r.buf[sp.from:sp.to]
		for len(b) >= segmentSlot {
			headLen := recordHeadLen(b)
			switch {
			case headLen < 0:
				r.corrupt++
				b = b[segmentSlot:]
				continue
			case headLen > 0 && len(b) < 2*segmentSlot:
				r.corrupt++
				b = nil
				continue
			}
			// The record and its head's bytes, contiguous: the head
			// slot follows the record's in the copy.
			rec := b[: segmentSlot+headLen : segmentSlot+headLen]
			if headLen > 0 {
				b = b[2*segmentSlot:]
			} else {
				b = b[segmentSlot:]
			}
			out = append(out, rec)
		}
	}
	return out
}

// Close unmaps the ring.
func (r *SegmentReader) Close() error {
	return errors.Join(unix.Munmap(r.ring), unix.Munmap(r.heads))
}
