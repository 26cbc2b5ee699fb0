package flowtrack

import (
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// state of a connection's exchange (enum flow_state).
type state uint8

const (
	stateIdle     state = iota // no exchange in progress
	stateRequest               // request bytes seen, no response bytes yet
	stateResponse              // response bytes seen
	// stateSkip: not following until the next request that surely starts
	// an exchange: the gate closed since the connection was last seen, or
	// kept an outer exchange from starting, or the connection was first
	// seen mid-stream after the gate had closed once.
	stateSkip
)

// seqKnown bits: whether nextReqSeq / nextRespSeq hold a value.
const (
	seqKnownReq  = 1
	seqKnownResp = 2
)

// create says whether a segment of an unknown connection may start
// following it (enum create_policy).
type create uint8

const (
	createAny   create = iota // any segment (mid-stream: flagged PredatesProbe)
	createOnSYN               // only a client's SYN: the start was seen
	createNever               // the connection must already be followed
)

// flow is a connection's state (struct flow), and its place in the LRU ring.
type flow struct {
	key        Key
	prev, next *flow

	reqStart, reqEnd, respStart, respEnd uint64
	reqBytes, respBytes                  uint64
	nextReqSeq, nextRespSeq              uint32
	flags                                exchange.Flags
	xid                                  uint32 // number of the exchange in progress, from 1
	claimed                              uint32 // xid of the last exchange emitted
	epoch                                uint32 // gate epoch when last seen
	retransmits, requests, responses     uint16
	state                                state
	seqKnown                             uint8
	interim                              bool // the response so far is an HTTP 1xx
	answered                             bool // stateSkip: response bytes seen since skipping began
	leg                                  exchange.Leg
	direction                            exchange.Direction
	family                               uint8
	headLen                              uint8
	head                                 [HeadLen]byte
}

// Add applies one segment, in time order. It mirrors the TC programs'
// entry points: edge_packet for eth0 and app_ingress for lo.
func (t *Tracker) Add(s *Segment) {
	t.stats.Segments++
	if s.PayloadLen == 0 && s.TCPFlags&(SYN|FIN|RST) == 0 {
		t.stats.BareACK++
		return
	}
	if s.Gate == GateClosed && s.TCPFlags&(SYN|ACK) != SYN && s.TCPFlags&(FIN|RST) == 0 {
		t.stats.GateClosed++
		return
	}
	switch s.Hook {
	case EdgeIngress, EdgeEgress:
		t.edge(s, s.Hook == EdgeIngress)
	case App:
		t.app(s)
	default:
		t.stats.NoPort++
	}
}

// edge is edge_packet: ingress carries clients' requests to the pod's
// ports (inbound) and answers to its calls (outbound); egress the reverse.
func (t *Tracker) edge(s *Segment, ingress bool) {
	serverRoles := s.SrcRoles
	if ingress {
		serverRoles = s.DstRoles
	}
	if serverRoles&RoleEdge != 0 {
		key := orient(s, ingress)
		t.track(s, key, t.flows[key], ingress, exchange.LegEdge, exchange.Inbound, createAny)
		return
	}
	if !t.cfg.Outbound {
		t.stats.NoPort++
		return
	}
	// Perhaps outbound: the pod calls an upstream, so egress carries the
	// requests, and only a SYN leaving the pod starts following.
	policy := createOnSYN
	if ingress {
		policy = createNever
	}
	key := orient(s, !ingress)
	t.track(s, key, t.flows[key], !ingress, exchange.LegEdge, exchange.Outbound, policy)
}

// app is app_ingress: lo carries both directions of the proxy's connections
// to the application, and the application's calls to the proxy's outbound
// port.
func (t *Tracker) app(s *Segment) {
	switch {
	case s.DstRoles&RoleApp != 0:
		// Towards the application (its port configured, or learnt by the
		// kernel from this very SYN of the proxy's).
		key := orient(s, true)
		t.track(s, key, t.flows[key], true, exchange.LegApp, exchange.Inbound, createAny)
	case s.SrcRoles&RoleApp != 0:
		key := orient(s, false)
		f := t.flows[key]
		// An answer to an outbound call comes back from the address and
		// port the application dialled, which may be a port the pod
		// serves too: an unknown connection is first looked for among
		// the outbound ones.
		if f == nil && t.cfg.Outbound && t.outboundAnswer(s) {
			return
		}
		t.track(s, key, f, false, exchange.LegApp, exchange.Inbound, createAny)
	case t.cfg.Outbound && s.DstRoles&RoleOutbound != 0:
		key := outboundKey(s.Src, s.SrcPort, s.Family, s.Ifindex)
		t.track(s, key, t.flows[key], true, exchange.LegApp, exchange.Outbound, createAny)
	default:
		if !(t.cfg.Outbound && t.outboundAnswer(s)) {
			t.stats.NoPort++
		}
	}
}

// outboundAnswer applies s to the application's outbound connection it
// answers, if there is one.
func (t *Tracker) outboundAnswer(s *Segment) bool {
	key := outboundKey(s.Dst, s.DstPort, s.Family, s.Ifindex)
	f := t.flows[key]
	if f == nil {
		return false
	}
	t.track(s, key, f, false, exchange.LegApp, exchange.Outbound, createNever)
	return true
}

func orient(s *Segment, fromClient bool) Key {
	if fromClient {
		return Key{ClientAddr: s.Src, ServerAddr: s.Dst, ClientPort: s.SrcPort, ServerPort: s.DstPort, Ifindex: s.Ifindex}
	}
	return Key{ClientAddr: s.Dst, ServerAddr: s.Src, ClientPort: s.DstPort, ServerPort: s.SrcPort, Ifindex: s.Ifindex}
}

// outboundKey names an application's connection to the proxy's outbound
// port by the application's end alone: answers come back from the address
// the application dialled, not from the proxy's port, so the server end
// differs between the directions. The server address is the unspecified
// one of the client's family, port 0 (never an inbound key's).
func outboundKey(addr [16]byte, port uint16, family uint8, ifindex uint32) Key {
	k := Key{ClientAddr: addr, ClientPort: port, Ifindex: ifindex}
	if family == 4 {
		k.ServerAddr[10], k.ServerAddr[11] = 0xff, 0xff
	}
	return k
}

// track applies s to its connection (track in exchange.bpf.c). f is the
// connection's state, nil if not followed yet.
func (t *Tracker) track(s *Segment, key Key, f *flow, fromClient bool, leg exchange.Leg, dir exchange.Direction, policy create) {
	flags := s.TCPFlags
	now := s.Time
	// The outer exchange contains the inner one: inbound, the edge's
	// contains the app's; outbound the reverse.
	outer := (leg == exchange.LegEdge) == (dir == exchange.Inbound)

	// With the gate closed only a client's SYN, or a FIN or RST, gets
	// here: the connection may have moved on unseen, so what it had is
	// cut. A connection that ends is forgotten; one that starts is noted.
	if f != nil && (f.epoch != s.Epoch || s.Gate == GateClosed) {
		t.resync(f, s.Epoch)
	}
	if s.Gate == GateClosed && flags&SYN == 0 {
		if f != nil {
			t.forget(f)
		}
		return
	}
	if flags&SYN != 0 && flags&ACK == 0 && f != nil {
		// A new connection on the 5-tuple of one whose end was not seen.
		t.emit(f, 0)
		t.forget(f)
		f = nil
	}
	if f == nil {
		if flags&SYN == 0 && s.PayloadLen == 0 {
			return // a pure FIN/RST of an unknown connection
		}
		if flags&RST != 0 {
			return
		}
		if policy == createNever || (policy == createOnSYN && (!fromClient || flags&(SYN|ACK) != SYN)) {
			t.stats.OutboundUnknown++
			return
		}
		f = t.create(key)
		f.leg, f.direction, f.family = leg, dir, s.Family
		f.xid = 1
		f.epoch = s.Epoch
		if flags&SYN == 0 && s.Epoch != 0 {
			// First seen mid-stream after the gate has closed once:
			// most likely a connection that started while it was.
			// Followed from its next request that surely starts an
			// exchange.
			f.state = stateSkip
		} else if flags&SYN == 0 {
			f.flags = exchange.FlagPredatesProbe
			t.stats.PredatesProbe++
		}
	} else {
		t.touch(f)
	}

	if flags&SYN != 0 {
		if fromClient {
			f.nextReqSeq = s.Seq + 1
			f.seqKnown |= seqKnownReq
		} else {
			f.nextRespSeq = s.Seq + 1
			f.seqKnown |= seqKnownResp
		}
	}

	if s.PayloadLen > 0 {
		fresh := f.newPayload(s, fromClient)
		switch {
		case fresh == 0:
			if f.retransmits < 0xffff {
				f.retransmits++
			}
			f.flags |= exchange.FlagRetransmit
			t.stats.Retransmits++
		case fromClient:
			t.onRequest(f, s, fresh, now, outer)
		default:
			t.onResponse(f, s, fresh, now)
		}
	}

	if flags&RST != 0 {
		t.emit(f, exchange.FlagRST)
		t.forget(f)
		return
	}
	if flags&FIN != 0 {
		if fromClient && f.state == stateRequest {
			// Half-close after the request: the response is to come.
			f.flags |= exchange.FlagClientFIN
			return
		}
		t.emit(f, exchange.FlagFIN)
		t.forget(f)
	}
}

// newPayload returns how many bytes of s were not seen before and advances
// the expected sequence number; 0 means a retransmission (or an
// out-of-order segment older than one already seen).
func (f *flow) newPayload(s *Segment, fromClient bool) uint32 {
	seq := s.Seq
	if s.TCPFlags&SYN != 0 {
		seq++ // TCP Fast Open: data follows the SYN's sequence number
	}
	end := seq + s.PayloadLen
	next, bit := &f.nextRespSeq, uint8(seqKnownResp)
	if fromClient {
		next, bit = &f.nextReqSeq, seqKnownReq
	}
	fresh := s.PayloadLen
	if f.seqKnown&bit != 0 {
		advance := int32(end - *next)
		if advance <= 0 {
			return 0
		}
		if uint32(advance) < fresh {
			fresh = uint32(advance) // partial overlap: only the tail is new
		}
	}
	*next = end
	f.seqKnown |= bit
	return fresh
}

// fresh returns the recorded bytes of the part of s's payload that is new.
// The programs read them at that offset; a record carries the payload's
// start, so a segment that partly repeats old bytes may leave none.
func fresh(s *Segment, fresh uint32) []byte {
	skip := s.PayloadLen - fresh
	if skip >= uint32(len(s.Payload)) {
		return nil
	}
	return s.Payload[skip:]
}

// word is payload_word: the first four bytes of the new payload, 0 unless
// at least eight were recorded.
func word(b []byte) uint32 {
	if len(b) < 8 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func w(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

// requestWords are the first four bytes of HTTP/1.x request lines.
var requestWords = [...]uint32{
	w("GET "), w("POST"), w("PUT "), w("HEAD"), w("DELE"), w("PATC"), w("OPTI"), w("CONN"), w("TRAC"),
}

// startsRequest: whether a request segment starts an HTTP/1.x request
// line. Used only to notice pipelining inside an exchange; plaintext only.
func startsRequest(w uint32) bool {
	for _, r := range requestWords {
		if w == r {
			return true
		}
	}
	return false
}

// startsResponse: whether a response segment starts an HTTP/1.x status
// line, and whether that is a 1xx (100 Continue) before the real response.
func startsResponse(b []byte) (status, interim bool) {
	if len(b) < 10 || string(b[:5]) != "HTTP/" {
		return false, false
	}
	return true, b[9] == '1'
}

// onRequest is on_request_payload.
func (t *Tracker) onRequest(f *flow, s *Segment, n uint32, now uint64, outer bool) {
	b := fresh(s, n)
	if f.state == stateSkip {
		// Without response bytes since skipping began, these bytes may
		// be the rest of a request whose start was missed.
		if !f.answered && !startsRequest(word(b)) {
			return
		}
		f.state = stateIdle
		f.flags = 0
		f.retransmits = 0
	}
	if f.state == stateResponse {
		if f.interim && !startsRequest(word(b)) {
			// The response so far was "100 Continue": this is the
			// request's body, still the same exchange.
			f.interim = false
			f.state = stateRequest
			f.reqEnd = now
			f.reqBytes += uint64(n)
			return
		}
		// Keep-alive: a new request after response bytes ends the
		// previous exchange.
		t.emit(f, 0)
		f.reset()
	}
	if f.state == stateIdle {
		if s.Gate != GateOpen {
			if outer {
				f.state = stateSkip
				f.answered = false
				t.stats.GateSkipped++
				return
			}
			f.flags |= exchange.FlagGateInner
		}
		f.state = stateRequest
		f.reqStart = now
		f.requests = 1
		f.headLen = uint8(copy(f.head[:], b[:min(len(b), int(n))]))
	} else if startsRequest(word(b)) {
		// A second request line before any response: pipelining.
		f.requests++
		f.flags |= exchange.FlagPipelined
	}
	f.reqEnd = now
	f.reqBytes += uint64(n)
}

// onResponse is on_response_payload.
func (t *Tracker) onResponse(f *flow, s *Segment, n uint32, now uint64) {
	if f.state == stateSkip {
		f.answered = true
		return
	}
	status, interim := startsResponse(fresh(s, n))
	if f.state == stateIdle && f.flags&exchange.FlagPredatesProbe == 0 {
		// Response bytes with no request: the server speaks first.
		f.flags |= exchange.FlagNoRequest
	}
	if f.claimed == f.xid {
		// The idle scan already emitted this exchange: the response
		// paused longer than the idle time. These bytes are not in it.
		t.stats.IdleLate++
	}
	if f.state != stateResponse {
		f.state = stateResponse
		f.respStart = now
		f.responses = 1
		f.interim = interim
	} else if status {
		if f.interim {
			f.interim = interim // the final response after a 1xx
		} else {
			f.responses++
			f.flags |= exchange.FlagPipelined
		}
	}
	f.respEnd = now
	f.respBytes += uint64(n)
}

// reset forgets the exchange in progress, keeping what belongs to the
// connection (sequence numbers, leg, family).
func (f *flow) reset() {
	f.xid++
	f.reqStart, f.reqEnd, f.respStart, f.respEnd = 0, 0, 0, 0
	f.reqBytes, f.respBytes = 0, 0
	f.flags = 0
	f.retransmits, f.requests, f.responses = 0, 0, 0
	f.state = stateIdle
	f.interim = false
	f.headLen = 0
}

// resync: the gate closed since this connection was last seen, so some of
// its segments were not recorded. The exchange in progress, unless already
// emitted, is cut and counted (an inner one started while only inner
// exchanges were followed is outside the sample anyway, not counted); the
// connection is skipped until its next request surely starts an exchange.
func (t *Tracker) resync(f *flow, epoch uint32) {
	if (f.state == stateRequest || f.state == stateResponse) && f.claimed != f.xid &&
		f.flags&exchange.FlagGateInner == 0 {
		t.stats.GateCut++
	}
	f.reset()
	f.state = stateSkip
	f.answered = false
	f.seqKnown = 0
	f.epoch = epoch
}

// Lost tells the tracker that segments went unrecorded (a reader that fell
// a ring behind): any connection may have missed some, so every exchange
// in progress is cut (counted in Stats.LostCut) and every connection is
// followed again from its next request that surely starts an exchange,
// as after the sampling gate closed. Call it before the segments that
// came after the loss.
func (t *Tracker) Lost() {
	for f := t.lru.next; f != &t.lru; f = f.next {
		if (f.state == stateRequest || f.state == stateResponse) && f.claimed != f.xid {
			t.stats.LostCut++
		}
		f.reset()
		f.state = stateSkip
		f.answered = false
		f.seqKnown = 0
	}
}

// emit hands the exchange in progress to Config.Emit unless it was emitted
// already (by the idle scan) or there is none.
func (t *Tracker) emit(f *flow, extra exchange.Flags) {
	if f.state == stateIdle || f.state == stateSkip || f.claimed == f.xid {
		return
	}
	f.claimed = f.xid
	t.stats.Events++
	if t.cfg.Emit == nil {
		return
	}
	e := &t.ev
	e.Leg, e.Direction, e.Ifindex = f.leg, f.direction, f.key.Ifindex
	e.Client = addrPort(f.key.ClientAddr, f.key.ClientPort, f.family)
	e.Server = addrPort(f.key.ServerAddr, f.key.ServerPort, f.family)
	e.RequestStart, e.RequestEnd = f.reqStart, f.reqEnd
	e.ResponseStart, e.ResponseEnd = f.respStart, f.respEnd
	e.RequestBytes, e.ResponseBytes = f.reqBytes, f.respBytes
	e.Flags = f.flags | extra
	e.Retransmits, e.Requests, e.Responses = f.retransmits, f.requests, f.responses
	e.Head = f.head[:f.headLen]
	if f.headLen == 0 {
		e.Head = nil
	}
	t.cfg.Emit(e)
}

// create starts following key, forgetting the least recently seen
// connection if the table is full.
func (t *Tracker) create(key Key) *flow {
	if len(t.flows) >= t.cfg.MaxFlows {
		t.stats.FlowsEvicted++
		t.forget(t.lru.prev)
	}
	f := &flow{key: key}
	t.flows[key] = f
	f.prev, f.next = &t.lru, t.lru.next
	f.next.prev, t.lru.next = f, f
	t.stats.FlowsCreated++
	return f
}

// touch moves f to the front of the LRU ring.
func (t *Tracker) touch(f *flow) {
	if t.lru.next == f {
		return
	}
	f.prev.next, f.next.prev = f.next, f.prev
	f.prev, f.next = &t.lru, t.lru.next
	f.next.prev, t.lru.next = f, f
}

// forget stops following f.
func (t *Tracker) forget(f *flow) {
	f.prev.next, f.next.prev = f.next, f.prev
	f.prev, f.next = nil, nil
	delete(t.flows, f.key)
}

// FlushIdle emits the exchanges whose response has been followed by at
// least idle of silence by now (CLOCK_MONOTONIC ns), flagged FlagIdle: a
// keep-alive connection that goes quiet would otherwise hold its last
// exchange until its next request (flush_idle). gate and epoch are the
// sampling gate's state and reopening count now. With the gate closed it
// does nothing: quiet is then no sign of an exchange's end. A connection on
// which the gate closed since its last segment, quiet as long, has its
// exchange cut instead (counted once): its response may have gone on
// unseen. It returns how many exchanges it emitted and how many finished
// ones wait for their idle time (a later scan's). Emit must not call back
// into the tracker.
func (t *Tracker) FlushIdle(now, idle uint64, gate Gate, epoch uint32) (emitted, waiting int) {
	if gate == GateClosed {
		return 0, 0
	}
	n := 0
	for f := t.lru.next; f != &t.lru; f = f.next {
		if f.state != stateResponse || f.claimed == f.xid {
			continue
		}
		if f.respEnd+idle > now {
			waiting++
			continue
		}
		if f.epoch != epoch {
			if f.flags&exchange.FlagGateInner == 0 {
				t.stats.GateCut++
			}
			f.claimed = f.xid
			continue
		}
		t.emit(f, exchange.FlagIdle)
		t.stats.IdleFlushed++
		n++
	}
	return n, waiting
}
