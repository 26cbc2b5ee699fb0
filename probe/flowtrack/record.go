package flowtrack

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of struct segment_record (bpf/c/common.h), in the host's byte
// order: what the segment programs (bpf/c/segments.bpf.c) write to their
// ring. TestRecordLayoutMatchesBPF checks it against bpf2go's declaration.
const (
	// RecordSize is one record, one slot of the ring.
	RecordSize = 64
	// RecordVersion is the layout version decoded here.
	RecordVersion = 1

	offTime       = 0
	offSeq        = 8
	offPayloadLen = 12
	offSport      = 16
	offDport      = 18
	offTCPFlags   = 20
	offFamily     = 21
	offHook       = 22
	offSrcRoles   = 23
	offDstRoles   = 24
	offGate       = 25
	offHeadLen    = 26
	offVersion    = 27
	offEpoch      = 28
	offSaddr      = 32
	offDaddr      = 48
)

// ErrRecord is wrapped by every DecodeRecord error.
var ErrRecord = errors.New("segment record")

// RecordHeadLen is how many payload bytes follow a record in the next
// slot, as the record says, or -1 if b is not a record of this version.
// A ring reader uses it to find the records' boundaries.
func RecordHeadLen(b []byte) int {
	if len(b) < RecordSize || b[offVersion] != RecordVersion || int(b[offHeadLen]) > RecordSize {
		return -1
	}
	return int(b[offHeadLen])
}

// DecodeRecord decodes a record followed by its head's bytes (exactly as
// many as the record says) into s; s.Payload points into b and s.Ifindex
// is left for the caller, who knows the hooks' interfaces. Every
// enumerated field is checked, so that bytes that are not a record are an
// error, never a plausible segment.
func DecodeRecord(s *Segment, b []byte) error {
	headLen := RecordHeadLen(b)
	if headLen < 0 {
		return fmt.Errorf("%w: %d bytes, not a version %d record", ErrRecord, len(b), RecordVersion)
	}
	if len(b) != RecordSize+headLen {
		return fmt.Errorf("%w: %d bytes for a record with a head of %d", ErrRecord, len(b), headLen)
	}
	ne := binary.NativeEndian
	hook, family, gate := Hook(b[offHook]), b[offFamily], Gate(b[offGate])
	payloadLen := ne.Uint32(b[offPayloadLen:])
	switch {
	case hook < EdgeIngress || hook > App:
		return fmt.Errorf("%w: hook %d", ErrRecord, hook)
	case family != 4 && family != 6:
		return fmt.Errorf("%w: family %d", ErrRecord, family)
	case gate > GateClosed:
		return fmt.Errorf("%w: gate %d", ErrRecord, gate)
	case uint32(headLen) > payloadLen:
		return fmt.Errorf("%w: a head of %d bytes for %d of payload", ErrRecord, headLen, payloadLen)
	}
	*s = Segment{
		Time: ne.Uint64(b[offTime:]), Hook: hook, Family: family,
		Src: [16]byte(b[offSaddr : offSaddr+16]), Dst: [16]byte(b[offDaddr : offDaddr+16]),
		SrcPort: ne.Uint16(b[offSport:]), DstPort: ne.Uint16(b[offDport:]),
		SrcRoles: Role(b[offSrcRoles]), DstRoles: Role(b[offDstRoles]),
		Seq: ne.Uint32(b[offSeq:]), PayloadLen: payloadLen, TCPFlags: b[offTCPFlags],
		Gate: gate, Epoch: ne.Uint32(b[offEpoch:]),
	}
	if headLen > 0 {
		s.Payload = b[RecordSize:]
	}
	return nil
}
