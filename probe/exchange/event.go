// Package exchange decodes the exchange events that the TC programs in
// package bpf write to their ring buffer: one finished request/response
// exchange of one TCP connection, seen on the pod's eth0 (edge leg) or lo
// (app leg).
//
// The wire format is struct exchange_event in bpf/c/common.h, in the host's
// byte order. Decode checks its size, version and every enumerated field, so
// a mismatched or corrupt record is an error, never a plausible-looking
// event.
package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Layout of struct exchange_event (bpf/c/common.h). TestLayoutMatchesBPF
// checks these against the bpf2go-generated struct.
const (
	// Size is the size of one event. A ring-buffer record holds one or
	// more (see EventsIn).
	Size = 168
	// Version is the layout version this package decodes.
	Version = 1
	// HeadLen is the capacity of the request-head field.
	HeadLen = 64

	offReqStart    = 0
	offReqEnd      = 8
	offRespStart   = 16
	offRespEnd     = 24
	offReqBytes    = 32
	offRespBytes   = 40
	offClientAddr  = 48
	offServerAddr  = 64
	offClientPort  = 80
	offServerPort  = 82
	offIfindex     = 84
	offFlags       = 88
	offRetransmits = 92
	offRequests    = 94
	offResponses   = 96
	offVersion     = 98
	offLeg         = 99
	offDirection   = 100
	offFamily      = 101
	offHeadLen     = 102
	offPad         = 103
	offHead        = 104
)

// Leg says where an exchange was seen.
type Leg uint8

const (
	// LegEdge: the pod's eth0, client <-> proxy.
	LegEdge Leg = 1
	// LegApp: the pod's lo, proxy <-> application.
	LegApp Leg = 2
)

func (l Leg) String() string {
	switch l {
	case LegEdge:
		return "edge"
	case LegApp:
		return "app"
	}
	return fmt.Sprintf("leg(%d)", uint8(l))
}

// Direction says which end of the connection is in the pod.
type Direction uint8

const (
	// Inbound: the pod serves the connection.
	Inbound Direction = 1
	// Outbound: the pod is the client (not produced yet).
	Outbound Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Flags are enum exchange_flag bits.
type Flags uint32

const (
	// FlagFIN: the exchange ended with a FIN.
	FlagFIN Flags = 1 << 0
	// FlagRST: the exchange ended with a RST.
	FlagRST Flags = 1 << 1
	// FlagRetransmit: some payload did not advance the sequence number.
	FlagRetransmit Flags = 1 << 2
	// FlagPredatesProbe: the connection was first seen mid-stream; the
	// exchange's start may be missing, so its timing is not usable.
	FlagPredatesProbe Flags = 1 << 3
	// FlagPipelined: more than one HTTP/1.1 request or response message
	// was seen in the exchange.
	FlagPipelined Flags = 1 << 4
	// FlagNoRequest: response bytes with no request before them.
	FlagNoRequest Flags = 1 << 5
	// FlagClientFIN: the client half-closed before the response ended.
	FlagClientFIN Flags = 1 << 6
	// FlagIdle: emitted by the idle scan (bpf.ExchangeProbe.FlushIdle)
	// after the connection stayed quiet following the response, not by
	// the next request or the connection's end.
	FlagIdle Flags = 1 << 7
	// FlagGateInner: an inner exchange (app inbound, edge outbound) that
	// started while the sampling gate admitted inner exchanges only: its
	// outer exchange may not have been followed, so without a match it is
	// outside the sample rather than unmatched (probe/sampler).
	FlagGateInner Flags = 1 << 8

	knownFlags = FlagFIN | FlagRST | FlagRetransmit | FlagPredatesProbe | FlagPipelined | FlagNoRequest | FlagClientFIN | FlagIdle | FlagGateInner
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{FlagFIN, "fin"}, {FlagRST, "rst"}, {FlagRetransmit, "retransmit"},
	{FlagPredatesProbe, "predates-probe"}, {FlagPipelined, "pipelined"},
	{FlagNoRequest, "no-request"}, {FlagClientFIN, "client-fin"}, {FlagIdle, "idle"},
	{FlagGateInner, "gate-inner"},
}

func (f Flags) String() string {
	var names []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			names = append(names, n.name)
		}
	}
	if rest := f &^ knownFlags; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(rest)))
	}
	return strings.Join(names, "|")
}

// Event is one finished request/response exchange.
type Event struct {
	Leg       Leg
	Direction Direction
	// Client sent the request; Server owns the port of interest.
	Client, Server netip.AddrPort
	Ifindex        uint32

	// Timestamps are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
	// A zero means "not seen".
	RequestStart, RequestEnd   uint64
	ResponseStart, ResponseEnd uint64

	RequestBytes, ResponseBytes uint64
	Flags                       Flags
	Retransmits                 uint16
	Requests, Responses         uint16

	// Head is the start of the request payload (at most HeadLen bytes).
	Head []byte
}

// Complete reports whether the exchange's timing can be used: both a
// request and a response were seen, from the start of the request.
func (e *Event) Complete() bool {
	return e.RequestStart != 0 && e.ResponseEnd != 0 && e.ResponseEnd >= e.RequestStart &&
		e.Flags&(FlagPredatesProbe|FlagNoRequest) == 0
}

// Duration is first request byte to last response byte, 0 unless Complete.
func (e *Event) Duration() time.Duration {
	if !e.Complete() {
		return 0
	}
	return time.Duration(e.ResponseEnd - e.RequestStart)
}

// Errors returned by Decode.
var (
	ErrSize    = errors.New("exchange event: wrong size")
	ErrVersion = errors.New("exchange event: unsupported version")
	ErrInvalid = errors.New("exchange event: invalid field")
)

// EventsIn returns how many events a ring-buffer record holds. The TC
// programs write finished exchanges several to a record (EMIT_BATCH in
// bpf/c/exchange.bpf.c), the idle scan one at a time. A record that is not
// a whole, nonzero number of events is an error wrapping ErrSize.
func EventsIn(record []byte) (int, error) {
	if len(record) == 0 || len(record)%Size != 0 {
		return 0, fmt.Errorf("%w: record of %d bytes, not a multiple of %d", ErrSize, len(record), Size)
	}
	return len(record) / Size, nil
}

// DecodeRecord decodes every event of one ring-buffer record. Heads are
// copies.
func DecodeRecord(record []byte) ([]Event, error) {
	n, err := EventsIn(record)
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, n)
	for i := range n {
		e, err := Decode(record[i*Size : (i+1)*Size])
		if err != nil {
			return nil, fmt.Errorf("event %d of %d: %w", i+1, n, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Decode parses one event. The bytes are not retained: Head is a copy.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := DecodeInto(&e, b); err != nil {
		return Event{}, err
	}
	return e, nil
}

// DecodeInto is Decode into e, reusing the array of e.Head for the head:
// a reader that decodes every record into one Event allocates nothing. On
// error e holds no event.
func DecodeInto(e *Event, b []byte) error {
	*e = Event{Head: e.Head[:0]}
	if err := decodeFields(e, b); err != nil {
		*e = Event{Head: e.Head[:0]}
		return err
	}
	return nil
}

// decodeFields fills the zero e (whose Head has length 0) from b.
func decodeFields(e *Event, b []byte) error {
	if len(b) != Size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrSize, len(b), Size)
	}
	if v := b[offVersion]; v != Version {
		return fmt.Errorf("%w: %d, want %d", ErrVersion, v, Version)
	}
	ne := binary.NativeEndian

	e.Leg = Leg(b[offLeg])
	if e.Leg != LegEdge && e.Leg != LegApp {
		return fmt.Errorf("%w: leg %d", ErrInvalid, b[offLeg])
	}
	e.Direction = Direction(b[offDirection])
	if e.Direction != Inbound && e.Direction != Outbound {
		return fmt.Errorf("%w: direction %d", ErrInvalid, b[offDirection])
	}
	headLen := int(b[offHeadLen])
	if headLen > HeadLen {
		return fmt.Errorf("%w: head length %d", ErrInvalid, headLen)
	}
	e.Flags = Flags(ne.Uint32(b[offFlags:]))
	if e.Flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags 0x%x", ErrInvalid, uint32(e.Flags&^knownFlags))
	}

	client := netip.AddrFrom16([16]byte(b[offClientAddr : offClientAddr+16]))
	server := netip.AddrFrom16([16]byte(b[offServerAddr : offServerAddr+16]))
	switch family := b[offFamily]; family {
	case 4:
		if !client.Is4In6() || !server.Is4In6() {
			return fmt.Errorf("%w: IPv4 event with non-IPv4 address", ErrInvalid)
		}
		client, server = client.Unmap(), server.Unmap()
	case 6:
	default:
		return fmt.Errorf("%w: family %d", ErrInvalid, family)
	}
	e.Client = netip.AddrPortFrom(client, ne.Uint16(b[offClientPort:]))
	e.Server = netip.AddrPortFrom(server, ne.Uint16(b[offServerPort:]))
	e.Ifindex = ne.Uint32(b[offIfindex:])

	e.RequestStart = ne.Uint64(b[offReqStart:])
	e.RequestEnd = ne.Uint64(b[offReqEnd:])
	e.ResponseStart = ne.Uint64(b[offRespStart:])
	e.ResponseEnd = ne.Uint64(b[offRespEnd:])
	if e.RequestEnd < e.RequestStart {
		return fmt.Errorf("%w: request ends before it starts", ErrInvalid)
	}
	if e.ResponseEnd < e.ResponseStart {
		return fmt.Errorf("%w: response ends before it starts", ErrInvalid)
	}
	e.RequestBytes = ne.Uint64(b[offReqBytes:])
	e.ResponseBytes = ne.Uint64(b[offRespBytes:])
	e.Retransmits = ne.Uint16(b[offRetransmits:])
	e.Requests = ne.Uint16(b[offRequests:])
	e.Responses = ne.Uint16(b[offResponses:])
	if headLen > 0 {
		// Decode's e.Head is nil: a copy. DecodeInto's keeps its array
		// even for an empty head, for the next record.
		e.Head = append(e.Head, b[offHead:offHead+headLen]...)
	}
	return nil
}

// Encode is the inverse of Decode, for tests and replay tools that need
// records in the kernel's format.
func Encode(e *Event) []byte {
	b := make([]byte, Size)
	ne := binary.NativeEndian
	ne.PutUint64(b[offReqStart:], e.RequestStart)
	ne.PutUint64(b[offReqEnd:], e.RequestEnd)
	ne.PutUint64(b[offRespStart:], e.ResponseStart)
	ne.PutUint64(b[offRespEnd:], e.ResponseEnd)
	ne.PutUint64(b[offReqBytes:], e.RequestBytes)
	ne.PutUint64(b[offRespBytes:], e.ResponseBytes)
	c, s := e.Client.Addr().As16(), e.Server.Addr().As16()
	copy(b[offClientAddr:], c[:])
	copy(b[offServerAddr:], s[:])
	ne.PutUint16(b[offClientPort:], e.Client.Port())
	ne.PutUint16(b[offServerPort:], e.Server.Port())
	ne.PutUint32(b[offIfindex:], e.Ifindex)
	ne.PutUint32(b[offFlags:], uint32(e.Flags))
	ne.PutUint16(b[offRetransmits:], e.Retransmits)
	ne.PutUint16(b[offRequests:], e.Requests)
	ne.PutUint16(b[offResponses:], e.Responses)
	b[offVersion] = Version
	b[offLeg] = byte(e.Leg)
	b[offDirection] = byte(e.Direction)
	b[offFamily] = 6
	if e.Client.Addr().Is4() {
		b[offFamily] = 4
	}
	head := e.Head
	if len(head) > HeadLen {
		head = head[:HeadLen]
	}
	b[offHeadLen] = byte(len(head))
	copy(b[offHead:], head)
	return b
}
