// Package flowtrack follows a pod's TCP connections one segment at a time
// and cuts each one's HTTP/1.x keep-alive alternation into request/response
// exchanges (probe/exchange.Event): request bytes from the client, then
// response bytes from the server, then the next request.
//
// Today the TC programs in bpf/c/exchange.bpf.c do this in the kernel
// (track), with the connections' state in a BPF hash map. That state is most
// of what the probe adds to a request's latency: looked up cold by every
// packet at 2000 rps, written back, and sent as exchange records. Programs
// that only record each segment (its clock, sequence number, ports, flags
// and the payload's first bytes) into a per-CPU memory-mapped ring cost a
// request 2.9-4.0 us at p50 where the programs of today cost 6.7-7.1, side by
// side (docs/benchmarks.md, session 18). This package is the half of that
// design that runs in the probe's process: the same state machine, fed with
// the recorded segments in time order. It is a port of track and the idle
// scan with the same semantics, so that the BPF run tests' packets and
// expectations carry over; what differs is written where it does.
//
// The programs that record the segments are bpf/c/segments.bpf.c (loaded by
// bpf.SegmentProbe, read by bpf.SegmentReader, decoded by DecodeRecord);
// bpf's TestSegmentsMatchExchanges runs the same frames through them and
// this package and through the kernel's state machine and finds the same
// exchanges. The agent does not use them yet (issue 6): it still runs
// exchange.bpf.c.
//
// A Tracker is not safe for concurrent use: one goroutine feeds it, in time
// order, and runs its idle scan.
package flowtrack

import (
	"net/netip"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// Hook is where a segment was seen.
type Hook uint8

const (
	// EdgeIngress: TC ingress of the pod's eth0 (from clients, and answers
	// to the pod's outbound calls), before netfilter's REDIRECT.
	EdgeIngress Hook = 1
	// EdgeEgress: TC egress of the pod's eth0, after netfilter.
	EdgeEgress Hook = 2
	// App: TC ingress of the pod's lo, both directions of the proxy's
	// connections with the application.
	App Hook = 3
)

// Role is what a port means to the probe (enum port_role in
// bpf/c/common.h; bpf.PortRole). A segment carries the roles of its ports
// as the kernel saw them when it recorded the segment, ports it learnt
// included.
type Role uint8

const (
	RoleEdge     Role = 1 << 0 // a server port of the pod on eth0
	RoleApp      Role = 1 << 1 // the application's server port on lo
	RoleLearnt   Role = 1 << 2 // RoleApp learnt from the proxy's SYN
	RoleOutbound Role = 1 << 3 // the proxy's outbound port on lo
)

// Gate is the sampling gate (enum sample_gate; bpf.Gate).
type Gate uint8

const (
	GateOpen      Gate = 0 // every exchange is followed
	GateInnerOnly Gate = 1 // outer exchanges do not start; inner ones do
	GateClosed    Gate = 2 // only SYNs, FINs and RSTs are recorded
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	ACK = 0x10
)

// HeadLen is how many bytes of a request's start an exchange keeps
// (exchange.HeadLen, REQ_HEAD_LEN).
const HeadLen = exchange.HeadLen

// Segment is one TCP segment as a TC program recorded it.
type Segment struct {
	Time    uint64 // CLOCK_MONOTONIC ns (bpf_ktime_get_ns) when the program saw it
	Hook    Hook
	Ifindex uint32
	Family  uint8 // 4 or 6
	// Addresses are IPv6 or IPv4-mapped IPv6, as in exchange events.
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	// Roles of SrcPort and DstPort when the segment was recorded.
	SrcRoles, DstRoles Role
	Seq                uint32
	PayloadLen         uint32
	TCPFlags           uint8
	// Payload is the payload's first bytes as recorded (at most
	// PayloadLen of them; the programs record a request's head and a
	// response's status line, not the whole payload).
	Payload []byte
	// Gate and Epoch are the sampling gate and its reopening count as
	// the program read them (sampling_gate, sampling_epoch).
	Gate  Gate
	Epoch uint32
}

// Key names a connection, oriented client -> server (struct flow_key).
type Key struct {
	ClientAddr, ServerAddr [16]byte
	ClientPort, ServerPort uint16
	Ifindex                uint32
}

// Stats count what the tracker gave up on or noticed: nothing is dropped
// silently. The names follow bpf.ExchangeStats, whose counters of the same
// names they replace.
type Stats struct {
	Segments        uint64 // segments given to Add
	BareACK         uint64 // no payload, SYN, FIN or RST: nothing to follow
	NoPort          uint64 // no port of interest
	FlowsCreated    uint64
	FlowsEvicted    uint64 // connections forgotten to stay within MaxFlows (the kernel's LRU evicted them unseen)
	PredatesProbe   uint64 // connections first seen mid-stream
	Retransmits     uint64 // payload segments that did not advance seq
	Events          uint64 // exchanges emitted
	PortsLearnt     uint64 // see Role: counted by the kernel, which learns them
	IdleFlushed     uint64 // exchanges emitted by FlushIdle
	IdleLate        uint64 // response segments after FlushIdle emitted their exchange
	OutboundUnknown uint64 // outbound-looking segments of connections not seen from their SYN
	GateClosed      uint64 // segments recorded with the gate closed that start nothing
	GateSkipped     uint64 // outer exchanges not followed: the gate admitted inner ones only
	GateCut         uint64 // exchanges dropped, their end unsure: the gate closed on them
	LostCut         uint64 // exchanges dropped, their segments unsure: some were lost (Lost)
}

// Config sets a Tracker up.
type Config struct {
	// MaxFlows bounds the connections followed at once; past it the least
	// recently seen is forgotten (counted). 0 means 16384, the kernel
	// table's default.
	MaxFlows int
	// Outbound: follow the pod's outbound calls too (bpf's
	// ExchangeOptions.Outbound, track_outbound).
	Outbound bool
	// Emit receives every finished exchange. The event's Head is the
	// tracker's: copy it to keep it past the call.
	Emit func(*exchange.Event)
}

// Tracker follows connections. See the package comment.
type Tracker struct {
	cfg   Config
	flows map[Key]*flow
	// lru is a ring of the flows, most recently seen first: its sentinel's
	// prev is the one to forget when the table is full.
	lru   flow
	stats Stats
	ev    exchange.Event
}

// New returns a Tracker.
func New(cfg Config) *Tracker {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = 16384
	}
	t := &Tracker{cfg: cfg, flows: make(map[Key]*flow)}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	return t
}

// Stats returns the counters so far.
func (t *Tracker) Stats() Stats { return t.stats }

// Flows is how many connections are followed.
func (t *Tracker) Flows() int { return len(t.flows) }

// addrPort is an exchange event's address: IPv4 ones unmapped.
func addrPort(a [16]byte, port uint16, family uint8) netip.AddrPort {
	addr := netip.AddrFrom16(a)
	if family == 4 {
		addr = addr.Unmap()
	}
	return netip.AddrPortFrom(addr, port)
}
