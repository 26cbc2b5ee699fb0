package flowtrack

import (
	"encoding/binary"
	"errors"
	"testing"
)

func record(hook Hook, family uint8, payloadLen uint32, head string) []byte {
	b := make([]byte, RecordSize, RecordSize+len(head))
	ne := binary.NativeEndian
	ne.PutUint64(b[offTime:], 123456789)
	ne.PutUint32(b[offSeq:], 1001)
	ne.PutUint32(b[offPayloadLen:], payloadLen)
	ne.PutUint16(b[offSport:], 40000)
	ne.PutUint16(b[offDport:], 8080)
	b[offTCPFlags], b[offFamily], b[offHook] = ACK, family, uint8(hook)
	b[offSrcRoles], b[offDstRoles], b[offGate] = 0, uint8(RoleEdge), uint8(GateInnerOnly)
	b[offHeadLen], b[offVersion] = uint8(len(head)), RecordVersion
	ne.PutUint32(b[offEpoch:], 7)
	b[offSaddr+10], b[offSaddr+11], b[offSaddr+15] = 0xff, 0xff, 10
	b[offDaddr+10], b[offDaddr+11], b[offDaddr+15] = 0xff, 0xff, 20
	return append(b, head...)
}

func TestDecodeRecord(t *testing.T) {
	var s Segment
	if err := DecodeRecord(&s, record(EdgeIngress, 4, 100, "GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if s.Time != 123456789 || s.Seq != 1001 || s.PayloadLen != 100 || s.SrcPort != 40000 || s.DstPort != 8080 ||
		s.TCPFlags != ACK || s.Family != 4 || s.Hook != EdgeIngress || s.DstRoles != RoleEdge || s.SrcRoles != 0 ||
		s.Gate != GateInnerOnly || s.Epoch != 7 || s.Src[15] != 10 || s.Dst[15] != 20 || string(s.Payload) != "GET / HTTP/1.1\r\n" {
		t.Errorf("decoded %+v", s)
	}
	if err := DecodeRecord(&s, record(App, 6, 0, "")); err != nil || s.Payload != nil {
		t.Errorf("no head: %v, payload %q", err, s.Payload)
	}
	bad := map[string][]byte{
		"short":               record(App, 4, 0, "")[:RecordSize-1],
		"head missing":        record(App, 4, 10, "0123456789")[:RecordSize+5],
		"hook":                record(4, 4, 0, ""),
		"family":              record(App, 5, 0, ""),
		"head beyond payload": record(App, 4, 3, "0123"),
	}
	v := record(App, 4, 0, "")
	v[offVersion] = 2
	bad["version"] = v
	g := record(App, 4, 0, "")
	g[offGate] = 3
	bad["gate"] = g
	for name, b := range bad {
		if err := DecodeRecord(&s, b); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: %v, want ErrRecord", name, err)
		}
	}
}

// FuzzDecodeRecord: any bytes decode into a segment whose head fits its
// payload, or are refused with ErrRecord; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(record(EdgeIngress, 4, 100, "GET / HTTP/1.1\r\n"))
	f.Add(record(App, 6, 0, ""))
	f.Add(make([]byte, RecordSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Segment
		err := DecodeRecord(&s, b)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error %v does not wrap ErrRecord", err)
			}
			return
		}
		if len(s.Payload) > RecordSize || uint32(len(s.Payload)) > s.PayloadLen || len(b) != RecordSize+len(s.Payload) {
			t.Fatalf("decoded %+v from %d bytes", s, len(b))
		}
	})
}
