package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// PortRole says what a port of interest means to the exchange programs.
type PortRole uint32

const (
	// PortEdge marks a server port of the pod seen on eth0: the container
	// port that clients connect to (before any redirect to the proxy).
	PortEdge = PortRole(ExchangePortRolePORT_ROLE_EDGE)
	// PortApp marks a server port of the application seen on lo: the
	// port the sidecar connects to. For sidecar meshes it is the same
	// number as the edge port.
	PortApp = PortRole(ExchangePortRolePORT_ROLE_APP)
	// PortLearnt is set by the app program on ports it learnt from a SYN
	// sent by one of the proxy source addresses.
	PortLearnt = PortRole(ExchangePortRolePORT_ROLE_LEARNT)
	// PortOutbound marks the proxy's outbound port on lo (Istio 15001,
	// Linkerd 4140): the application's outgoing connections arrive there.
	// Used only by a probe loaded with ExchangeOptions.Outbound.
	PortOutbound = PortRole(ExchangePortRolePORT_ROLE_OUTBOUND)
)

// ExchangeOptions sizes the exchange maps. Zero values keep the defaults
// compiled into the object (16384 flows, 1 MiB ring buffer).
type ExchangeOptions struct {
	// MaxFlows bounds the LRU table of connections in flight.
	MaxFlows uint32
	// RingBufferBytes is the size of the events ring buffer: a power of
	// two and a multiple of the page size.
	RingBufferBytes uint32
	// Outbound also follows the pod's outgoing calls through its proxy:
	// the application's connections to the PortOutbound port on lo, and
	// the connections whose SYN leaves eth0. Without it the programs are
	// loaded with those paths pruned by the verifier.
	Outbound bool
	// KernelTypes shares the kernel's decoded BTF (for CO-RE relocations)
	// with other loads, see LoadCPUProbe: decoding it costs tens of
	// milliseconds of CPU and several MiB of heap. Nil decodes it anew.
	KernelTypes *btf.Cache
}

// ExchangeProbe owns the loaded exchange programs and maps and the TC
// attachments made with them.
type ExchangeProbe struct {
	objs exchangeObjects
	portRoles
	tcHooks
}

// Gate is the state of the programs' sampling gate (enum sample_gate in
// c/common.h). Above a request rate, probe/sampler cycles it so that
// exchanges are followed during part of each period only.
type Gate uint32

const (
	// GateOpen: every exchange is followed (the default).
	GateOpen = Gate(ExchangeSampleGateGATE_OPEN)
	// GateInnerOnly: outer exchanges (the edge's inbound, the app's
	// outbound) do not start; inner ones do, flagged
	// exchange.FlagGateInner. Passed through on the way from open to
	// closed, so that outer exchanges in progress can end, and back, so
	// that the inner connections are followed again before an outer
	// exchange needs them.
	GateInnerOnly = Gate(ExchangeSampleGateGATE_INNER_ONLY)
	// GateClosed: segments leave the programs after parsing, before any
	// lookup; only clients' SYNs, FINs and RSTs are noted. On TCX the
	// programs of lo and eth0 ingress are detached meanwhile (SetGate).
	GateClosed = Gate(ExchangeSampleGateGATE_CLOSED)
)

func (g Gate) String() string {
	switch g {
	case GateOpen:
		return "open"
	case GateInnerOnly:
		return "inner-only"
	case GateClosed:
		return "closed"
	}
	return fmt.Sprintf("gate(%d)", uint32(g))
}

// LoadExchangeProbe loads the exchange programs and maps into the kernel
// without attaching them. Needs CAP_BPF (map and program creation).
func LoadExchangeProbe(opts ExchangeOptions) (*ExchangeProbe, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones
	// use memory cgroups and this is a no-op.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	spec, err := LoadExchange()
	if err != nil {
		return nil, err
	}
	if opts.MaxFlows > 0 {
		spec.Maps[ExchangeMapFlows].MaxEntries = opts.MaxFlows
	}
	if opts.RingBufferBytes > 0 {
		spec.Maps[ExchangeMapEvents].MaxEntries = opts.RingBufferBytes
	}
	if opts.Outbound {
		v, ok := spec.Variables["track_outbound"]
		if !ok {
			return nil, errors.New("exchange object has no track_outbound variable: regenerate it (make generate)")
		}
		if err := v.Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set track_outbound: %w", err)
		}
	}
	p := &ExchangeProbe{}
	if err := spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{Cache: opts.KernelTypes}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load exchange programs: verifier: %+v", verr)
		}
		return nil, fmt.Errorf("load exchange programs (needs CAP_BPF): %w", err)
	}
	roles, ok := spec.Variables[ExchangeVarRolesByPort]
	if !ok {
		_ = p.objs.close()
		return nil, errors.New("exchange object has no roles_by_port variable: regenerate it (make generate)")
	}
	if p.mem, err = p.objs.BSS.Memory(); err != nil {
		_ = p.objs.close()
		return nil, fmt.Errorf("map the programs' port roles (a memory-mappable .bss needs Linux 5.5): %w", err)
	}
	p.at = int64(roles.Offset)
	p.tcHooks = tcHooks{edgeIn: p.objs.EdgeIngress, edgeOut: p.objs.EdgeEgress, app: p.objs.AppIngress,
		gateVar: p.objs.SamplingGate, epochVar: p.objs.SamplingEpoch}
	return p, nil
}

// exchangeObjects adds the programs' .bss map to the generated objects, for
// its memory map (see ExchangeProbe.roles).
type exchangeObjects struct {
	ExchangeObjects
	BSS *ebpf.Map `ebpf:".bss"`
}

func (o *exchangeObjects) close() error {
	return errors.Join(o.ExchangeObjects.Close(), o.BSS.Close())
}

// AddProxySource registers an address the sidecar connects to the
// application from (addProxySource).
func (p *ExchangeProbe) AddProxySource(addr netip.Addr) error {
	return addProxySource(p.objs.ProxySources, addr)
}

// NewEventReader opens the events ring buffer. Each record holds one or
// more struct exchange_event (several when the TC programs send a CPU's
// staged batch); probe/exchange decodes them. Each CPU stages its own, so
// the ring holds exchanges in the order each CPU emitted them, not in one
// order across CPUs: probe/pairing sorts them by their start.
//
// Records never wake a blocked reader, which saves a context switch per
// exchange on the request path: drain the ring on a timer, with a deadline
// already passed (SetDeadline) so that reading never blocks. probe/agent
// says why its loop never blocks in the reader.
func (p *ExchangeProbe) NewEventReader() (*ringbuf.Reader, error) {
	rd, err := ringbuf.NewReader(p.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open events ring buffer: %w", err)
	}
	return rd, nil
}

// FlushResult is what one idle scan did.
type FlushResult struct {
	Staged  int    // staged exchanges sent to the ring buffer (every CPU's)
	Walked  bool   // the flow table was walked (false: settled, nothing to find)
	Scanned int    // flows visited
	Flushed int    // exchanges emitted (with exchange.FlagIdle)
	Now     uint64 // CLOCK_MONOTONIC ns at the start of the scan
}

// FlushIdle emits every finished exchange (response seen) whose connection
// has been quiet for at least idle since its last response byte. Without it
// a keep-alive connection's last exchange would wait in the flow table
// until the client's next request or the connection's end.
//
// The scan runs in the kernel (the flush_idle syscall program, through
// BPF_PROG_TEST_RUN) rather than from a userspace walk of the flow map: the
// TC programs and the scan claim each exchange with a compare-and-swap on
// the flow, so an exchange is emitted once, by whichever comes first, and
// never again when the next request ends it. Needs CAP_BPF.
//
// idle should exceed the longest pause inside a response (a streaming
// response that pauses longer is emitted truncated; ExchangeStats.IdleLate
// counts the segments that came after).
//
// Before the flows, it sends the exchanges the TC programs staged on every
// CPU (FlushStaged): they write finished exchanges to the ring buffer
// several to a record, so the last few of a quiet CPU wait for the next
// scan.
//
// The walk of the flow table is skipped while the table is settled: an
// earlier walk found no finished exchange waiting for its idle time and no
// packet has reached the programs since (the condition is in flush_idle's
// comment). A quiet pod's probe then does no walk at all.
func (p *ExchangeProbe) FlushIdle(idle time.Duration) (FlushResult, error) {
	if idle < 0 {
		idle = 0
	}
	return p.flush(ExchangeFlushArgs{IdleNs: uint64(idle)})
}

// FlushStaged sends the exchanges staged on every CPU to the ring buffer
// now, and returns how many it sent. It scans no flow. A staged exchange
// that a TC program is adding to at that moment goes with its CPU's next
// batch or the next flush.
func (p *ExchangeProbe) FlushStaged() (int, error) {
	r, err := p.flush(ExchangeFlushArgs{StagedOnly: 1})
	return r.Staged, err
}

func (p *ExchangeProbe) flush(in ExchangeFlushArgs) (FlushResult, error) {
	var out ExchangeFlushArgs
	if _, err := p.objs.FlushIdle.Run(&ebpf.RunOptions{Context: in, ContextOut: &out}); err != nil {
		return FlushResult{}, fmt.Errorf("run flush_idle: %w", err)
	}
	return FlushResult{Staged: int(out.Staged), Walked: out.Walked != 0, Scanned: int(out.Scanned),
		Flushed: int(out.Flushed), Now: out.NowNs}, nil
}

// EdgeServerCgroups returns, per edge port, the cgroup v2 id of the socket
// that answered the latest connection on it (its first response bytes on
// eth0): the proxy's container when a sidecar intercepts the port, the
// application's when nothing does.
func (p *ExchangeProbe) EdgeServerCgroups() (map[uint16]uint64, error) {
	out := map[uint16]uint64{}
	var port uint16
	var id uint64
	it := p.objs.EdgeCgroups.Iterate()
	for it.Next(&port, &id) {
		out[port] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list edge server cgroups: %w", err)
	}
	return out, nil
}

// ExchangeStats are the exchange programs' counters summed over CPUs.
type ExchangeStats struct {
	Packets           uint64 // packets seen by any TC program
	NotTCP            uint64 // not IPv4/IPv6 TCP, or not parseable
	IPv6ExtHeader     uint64 // IPv6 with extension headers, not parsed
	IPFragment        uint64 // IPv4 fragments, not parsed
	NoPort            uint64 // TCP without a port of interest
	FlowsCreated      uint64
	FlowCreateFailed  uint64
	PredatesProbe     uint64 // connections first seen mid-stream
	Retransmits       uint64 // payload segments that did not advance seq
	Events            uint64 // exchange events submitted
	RingBufferFull    uint64 // exchange events lost to a full ring buffer
	PortsLearnt       uint64
	PayloadLoadFailed uint64
	IdleFlushed       uint64 // exchanges emitted by FlushIdle
	IdleLate          uint64 // response segments after FlushIdle emitted their exchange
	IdleRace          uint64 // FlushIdle events dropped: the flow changed while copied
	BareACK           uint64 // TCP without payload, SYN, FIN or RST: left before any lookup
	// OutboundUnknown: with Outbound, segments of connections that no
	// port names and that are not tracked as outbound (accepted on an
	// unmeasured port, or opened before the probe).
	OutboundUnknown uint64
	GateClosed      uint64 // segments that met the sampling gate closed (left before any lookup)
	GateSkipped     uint64 // outer exchanges not followed: the gate admitted inner ones only
	// GateCut: exchanges in progress dropped because the gate closed
	// before their end was seen (outer ones longer than the gate's
	// inner-only time, mostly).
	GateCut uint64
}

// Stats reads the exchange counters.
func (p *ExchangeProbe) Stats() (ExchangeStats, error) {
	var s ExchangeStats
	fields := map[ExchangeExchangeStat]*uint64{
		ExchangeExchangeStatSTAT_PACKETS:            &s.Packets,
		ExchangeExchangeStatSTAT_NOT_TCP:            &s.NotTCP,
		ExchangeExchangeStatSTAT_IPV6EXT_HDR:        &s.IPv6ExtHeader,
		ExchangeExchangeStatSTAT_IP_FRAGMENT:        &s.IPFragment,
		ExchangeExchangeStatSTAT_NO_PORT:            &s.NoPort,
		ExchangeExchangeStatSTAT_FLOWS_CREATED:      &s.FlowsCreated,
		ExchangeExchangeStatSTAT_FLOW_CREATE_FAILED: &s.FlowCreateFailed,
		ExchangeExchangeStatSTAT_PREDATES_PROBE:     &s.PredatesProbe,
		ExchangeExchangeStatSTAT_RETRANSMITS:        &s.Retransmits,
		ExchangeExchangeStatSTAT_EVENTS:             &s.Events,
		ExchangeExchangeStatSTAT_RINGBUF_FULL:       &s.RingBufferFull,
		ExchangeExchangeStatSTAT_PORTS_LEARNT:       &s.PortsLearnt,
		ExchangeExchangeStatSTAT_LOAD_FAILED:        &s.PayloadLoadFailed,
		ExchangeExchangeStatSTAT_IDLE_FLUSHED:       &s.IdleFlushed,
		ExchangeExchangeStatSTAT_IDLE_LATE:          &s.IdleLate,
		ExchangeExchangeStatSTAT_IDLE_RACE:          &s.IdleRace,
		ExchangeExchangeStatSTAT_BARE_ACK:           &s.BareACK,
		ExchangeExchangeStatSTAT_OUTBOUND_UNKNOWN:   &s.OutboundUnknown,
		ExchangeExchangeStatSTAT_GATE_CLOSED:        &s.GateClosed,
		ExchangeExchangeStatSTAT_GATE_SKIPPED:       &s.GateSkipped,
		ExchangeExchangeStatSTAT_GATE_CUT:           &s.GateCut,
	}
	for idx, dst := range fields {
		v, err := sumPerCPU(p.objs.Stats, uint32(idx))
		if err != nil {
			return s, fmt.Errorf("read exchange stat %d: %w", idx, err)
		}
		*dst = v
	}
	return s, nil
}

// Close detaches every program and releases the maps.
func (p *ExchangeProbe) Close() error {
	return errors.Join(p.detach(), p.objs.close())
}

// sumPerCPU adds up one uint64 entry of a per-CPU map.
func sumPerCPU(m *ebpf.Map, key any) (uint64, error) {
	var perCPU []uint64
	if err := m.Lookup(key, &perCPU); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}
