package flowtrack

import (
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// FuzzTracker feeds arbitrary segments (decoded from the fuzzer's bytes, 12
// to a segment, over a few connections so that they meet each other's
// state) and checks what every emitted exchange must hold: it survives the
// kernel's wire format (exchange.Encode, then Decode's checks), and the
// table stays within its bound.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("\x01\x00\x02\x00\x10\x00\x00\x00\x00\x00\x01\x00" + "\x01\x00\x12\x00\x20\x00\x00\x00\x05\x00\x01\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var evs int
		tr := New(Config{MaxFlows: 3, Outbound: len(data)%2 == 0, Emit: func(e *exchange.Event) {
			evs++
			if e.RequestEnd < e.RequestStart || e.ResponseEnd < e.ResponseStart || len(e.Head) > HeadLen {
				t.Fatalf("event %+v", e)
			}
			if _, err := exchange.Decode(exchange.Encode(e)); err != nil {
				t.Fatalf("event %+v does not survive the wire format: %v", e, err)
			}
		}})
		roles := [4]Role{RoleEdge, RoleApp | RoleLearnt, RoleOutbound, 0}
		ports := [4]uint16{8080, 9080, 15001, 40000}
		now := uint64(1)
		for len(data) >= 12 {
			b := data[:12]
			data = data[12:]
			src, dst := b[0]%4, b[1]%4
			now += uint64(b[2]) * 1000
			s := Segment{
				Time: now, Hook: Hook(b[3] % 4), // 0 is no hook: counted, ignored
				Ifindex: uint32(b[3] % 2), Family: 4,
				SrcPort: ports[src], DstPort: ports[dst], SrcRoles: roles[src], DstRoles: roles[dst],
				Seq: uint32(b[4]) << 8, PayloadLen: uint32(b[5]), TCPFlags: b[6],
				Gate: Gate(b[7] % 3), Epoch: uint32(b[8] % 2),
			}
			s.Src[10], s.Src[11], s.Src[15] = 0xff, 0xff, b[9]%2
			s.Dst[10], s.Dst[11], s.Dst[15] = 0xff, 0xff, 2
			if b[10]%2 == 1 {
				s.Payload = []byte("GET / HTTP/1.1\r\n")
			} else {
				s.Payload = []byte("HTTP/1.1 100 Co")
			}
			s.Payload = s.Payload[:min(len(s.Payload), int(s.PayloadLen))]
			tr.Add(&s)
			if b[11]%7 == 0 {
				tr.FlushIdle(now, uint64(b[11])*1000, s.Gate, s.Epoch)
			}
			if tr.Flows() > 3 {
				t.Fatalf("%d flows, bound 3", tr.Flows())
			}
		}
		if st := tr.Stats(); st.Events != uint64(evs) {
			t.Fatalf("counted %d events, emitted %d", st.Events, evs)
		}
	})
}
