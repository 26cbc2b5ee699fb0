package flowtrack_test

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
	"github.com/kubectl-mesh/kubectl-mesh/probe/flowtrack"
)

// An external test package: package bpf decodes its segment records into
// flowtrack's Segment, so only a test outside flowtrack may import it.

// TestConstantsMatchBPF ties the roles and gate states a segment carries to
// the kernel's (bpf/c/common.h, through bpf2go's declarations).
func TestConstantsMatchBPF(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"edge", uint32(flowtrack.RoleEdge), uint32(bpf.PortEdge)},
		{"app", uint32(flowtrack.RoleApp), uint32(bpf.PortApp)},
		{"learnt", uint32(flowtrack.RoleLearnt), uint32(bpf.PortLearnt)},
		{"outbound", uint32(flowtrack.RoleOutbound), uint32(bpf.PortOutbound)},
		{"gate open", uint32(flowtrack.GateOpen), uint32(bpf.GateOpen)},
		{"gate inner-only", uint32(flowtrack.GateInnerOnly), uint32(bpf.GateInnerOnly)},
		{"gate closed", uint32(flowtrack.GateClosed), uint32(bpf.GateClosed)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d here, %d in the kernel's", c.name, c.got, c.want)
		}
	}
}

// TestRecordLayoutMatchesBPF ties DecodeRecord's offsets to the struct
// bpf2go generated from bpf/c/common.h, by decoding a record encoded from
// that struct.
func TestRecordLayoutMatchesBPF(t *testing.T) {
	rec := bpf.SegmentsSegmentRecord{
		TimeNs: 1, Seq: 2, PayloadLen: 30, Sport: 4, Dport: 5, TcpFlags: 6, Family: 6,
		Hook: uint8(flowtrack.App), SrcRoles: 7, DstRoles: 8, Gate: uint8(flowtrack.GateClosed),
		HeadLen: 3, Version: flowtrack.RecordVersion, Epoch: 9,
	}
	rec.Saddr[0], rec.Daddr[15] = 10, 11
	b, err := binary.Append(nil, binary.NativeEndian, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != flowtrack.RecordSize {
		t.Fatalf("struct segment_record is %d bytes, the decoder reads %d", len(b), flowtrack.RecordSize)
	}
	var s flowtrack.Segment
	if err := flowtrack.DecodeRecord(&s, append(b, "abc"...)); err != nil {
		t.Fatal(err)
	}
	want := flowtrack.Segment{
		Time: 1, Seq: 2, PayloadLen: 30, SrcPort: 4, DstPort: 5, TCPFlags: 6, Family: 6, Hook: flowtrack.App,
		SrcRoles: 7, DstRoles: 8, Gate: flowtrack.GateClosed, Epoch: 9, Payload: []byte("abc"),
	}
	want.Src[0], want.Dst[15] = 10, 11
	if !reflect.DeepEqual(s, want) {
		t.Errorf("decoded %+v\nwant    %+v", s, want)
	}
}
