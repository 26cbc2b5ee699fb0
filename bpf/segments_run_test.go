package bpf

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/flowtrack"
)

// These tests run the segment programs (c/segments.bpf.c) with
// BPF_PROG_TEST_RUN on crafted frames, as exchange_run_test.go does the
// exchange programs, and read their ring as the process would.

func loadSegmentProbe(t *testing.T, opts SegmentOptions, ports map[uint16]PortRole) (*SegmentProbe, *SegmentReader) {
	t.Helper()
	requireRoot(t)
	// One CPU, so that every program run writes the same CPU's region.
	onOneCPU(t)
	p, err := LoadSegmentProbe(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for port, role := range ports {
		if err := p.SetPort(port, role); err != nil {
			t.Fatal(err)
		}
	}
	rd, err := p.NewSegmentReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rd.Close() })
	return p, rd
}

// segments reads what the programs recorded and decodes it as the process
// would. BPF_PROG_TEST_RUN gives every frame the loopback's ifindex, 1,
// which the exchange programs' flows keep: so does this.
func segments(t *testing.T, rd *SegmentReader) []flowtrack.Segment {
	t.Helper()
	var out []flowtrack.Segment
	for _, rec := range rd.Read(nil) {
		var s flowtrack.Segment
		if err := flowtrack.DecodeRecord(&s, rec); err != nil {
			t.Fatalf("decode %x: %v", rec, err)
		}
		s.Ifindex = 1
		out = append(out, s)
	}
	return out
}

func runFrames(t *testing.T, prog *ebpf.Program, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		ret, err := prog.Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		if int32(ret) != -1 {
			t.Fatalf("program returned %d, want TC_ACT_UNSPEC (-1)", int32(ret))
		}
	}
}

func TestSegmentsRecord(t *testing.T) {
	p, rd := loadSegmentProbe(t, SegmentOptions{}, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40200", "192.0.2.20:8080")
	other := newConn("192.0.2.10:40201", "192.0.2.20:9999")
	t0 := monotonicNow(t)
	runFrames(t, p.objs.EdgeIngressSegment, c.syn(), c.ackC(), c.request(req2), other.request(req1))
	runFrames(t, p.objs.EdgeEgressSegment, c.response(resp1))
	t1 := monotonicNow(t)

	segs := segments(t, rd)
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3: %+v", len(segs), segs)
	}
	syn, req, resp := segs[0], segs[1], segs[2]
	if syn.TCPFlags != tcpSYN || syn.PayloadLen != 0 || syn.Payload != nil || syn.Hook != flowtrack.EdgeIngress {
		t.Errorf("SYN %+v", syn)
	}
	if req.Hook != flowtrack.EdgeIngress || req.PayloadLen != uint32(len(req2)) || string(req.Payload) != req2[:64] ||
		req.DstRoles != flowtrack.RoleEdge || req.SrcRoles != 0 || req.Seq != syn.Seq+1 {
		t.Errorf("request %+v", req)
	}
	if netip.AddrFrom16(req.Src).Unmap() != c.client.Addr() || req.SrcPort != c.client.Port() ||
		netip.AddrFrom16(req.Dst).Unmap() != c.server.Addr() || req.DstPort != 8080 || req.Family != 4 {
		t.Errorf("request's tuple %+v", req)
	}
	if resp.Hook != flowtrack.EdgeEgress || string(resp.Payload) != resp1 || resp.SrcRoles != flowtrack.RoleEdge {
		t.Errorf("response %+v", resp)
	}
	if !(t0 <= syn.Time && syn.Time <= req.Time && req.Time <= resp.Time && resp.Time <= t1) {
		t.Errorf("times out of order: %d %d %d in [%d, %d]", syn.Time, req.Time, resp.Time, t0, t1)
	}
	if again := segments(t, rd); len(again) != 0 {
		t.Errorf("read again: %+v", again)
	}
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Packets != 5 || s.BareACK != 1 || s.NoPort != 1 || s.Recorded != 3 || s.HeadFailed != 0 {
		t.Errorf("stats %+v", s)
	}
	if rd.Lost() != 0 || rd.Corrupt() != 0 {
		t.Errorf("lost %d, corrupt %d", rd.Lost(), rd.Corrupt())
	}
}

// A reader that falls a whole ring behind loses the oldest records and
// says how many; a ring that wraps without loss keeps its order.
func TestSegmentRingWrapsAndOverruns(t *testing.T) {
	p, rd := loadSegmentProbe(t, SegmentOptions{SlotsPerCPU: 8}, map[uint16]PortRole{8080: PortEdge})
	syns := func(n, from int) {
		for i := range n {
			c := newConn("192.0.2.10:1", "192.0.2.20:8080")
			c.cseq = uint32(from + i)
			runFrames(t, p.objs.EdgeIngressSegment, c.syn())
		}
	}
	seqs := func() []uint32 {
		var out []uint32
		for _, s := range segments(t, rd) {
			out = append(out, s.Seq)
		}
		return out
	}
	syns(5, 100)
	if got, want := seqs(), []uint32{100, 101, 102, 103, 104}; !reflect.DeepEqual(got, want) {
		t.Fatalf("first read %v, want %v", got, want)
	}
	syns(6, 200) // wraps
	if got, want := seqs(), []uint32{200, 201, 202, 203, 204, 205}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the wrap %v, want %v", got, want)
	}
	if rd.Lost() != 0 {
		t.Fatalf("lost %d without an overrun", rd.Lost())
	}
	// 20 records into 8 slots: the 12 oldest are gone, and so are the two
	// the programs would write next (they may be mid-write while copied).
	syns(20, 300)
	if got, want := seqs(), []uint32{314, 315, 316, 317, 318, 319}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the overrun %v, want %v", got, want)
	}
	if rd.Lost() != 14 || rd.Corrupt() != 0 {
		t.Errorf("lost %d corrupt %d, want 14 and 0", rd.Lost(), rd.Corrupt())
	}
	syns(3, 400)
	if got, want := seqs(), []uint32{400, 401, 402}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after recovering %v, want %v", got, want)
	}
}

// step is one frame for one hook of both probes.
type step struct {
	hook  flowtrack.Hook
	frame []byte
}

// comparable is what the two designs must agree on in an exchange: all but
// the timestamps, which each program reads from the clock as it runs.
func comparable(e exchange.Event) exchange.Event {
	complete := e.Complete()
	e.RequestStart, e.RequestEnd, e.ResponseStart, e.ResponseEnd = 0, 0, 0, 0
	if complete {
		e.RequestStart = 1 // the same shape: whether the timing is usable
	}
	if len(e.Head) == 0 {
		e.Head = nil
	}
	return e
}

// TestSegmentsMatchExchanges runs the same frames through the exchange
// programs (the connections followed in the kernel, today's design) and
// through the segment programs and probe/flowtrack (followed in the
// process): the exchanges must be the same but for their timestamps.
func TestSegmentsMatchExchanges(t *testing.T) {
	inbound := map[uint16]PortRole{8080: PortEdge, 80: PortEdge, 9090: PortApp}
	scenarios := []struct {
		name     string
		ports    map[uint16]PortRole
		outbound bool
		steps    func() []step
	}{
		{"keep-alive", inbound, false, func() []step {
			c := newConn("192.0.2.10:40300", "192.0.2.20:8080")
			return []step{{flowtrack.EdgeIngress, c.syn()}, {flowtrack.EdgeEgress, c.synAck()},
				{flowtrack.EdgeIngress, c.request(req1)}, {flowtrack.EdgeEgress, c.response(resp1[:20])},
				{flowtrack.EdgeEgress, c.response(resp1[20:])}, {flowtrack.EdgeIngress, c.ackC()},
				{flowtrack.EdgeIngress, c.request(req2)}, {flowtrack.EdgeEgress, c.response(resp2)},
				{flowtrack.EdgeEgress, c.fromServer(tcpFIN|tcpACK, nil)}}
		}},
		{"ipv6", inbound, false, func() []step {
			c := newConn("[2001:db8::10]:50000", "[2001:db8::20]:80")
			return []step{{flowtrack.EdgeIngress, c.syn()}, {flowtrack.EdgeEgress, c.synAck()},
				{flowtrack.EdgeIngress, c.request(req1)}, {flowtrack.EdgeEgress, c.response(resp1)},
				{flowtrack.EdgeIngress, c.fromClient(tcpFIN|tcpACK, nil)}}
		}},
		{"retransmission and RST", inbound, false, func() []step {
			c := newConn("192.0.2.10:40301", "192.0.2.20:8080")
			return []step{{flowtrack.EdgeIngress, c.syn()}, {flowtrack.EdgeEgress, c.synAck()},
				{flowtrack.EdgeIngress, c.request(req1)}, {flowtrack.EdgeEgress, c.response(resp1[:10])},
				{flowtrack.EdgeEgress, c.response(resp1[10:])},
				{flowtrack.EdgeIngress, c.retransmitClient(uint32(len(req1)), req1)},
				{flowtrack.EdgeEgress, c.retransmitServer(uint32(len(resp1)-10), resp1[10:])},
				{flowtrack.EdgeEgress, c.retransmitServer(5, resp1[len(resp1)-5:]+"xyz")},
				{flowtrack.EdgeIngress, c.fromClient(tcpRST, nil)}}
		}},
		{"pipelined, then a body over segments", inbound, false, func() []step {
			c := newConn("192.0.2.10:40302", "192.0.2.20:8080")
			d := newConn("192.0.2.10:40303", "192.0.2.20:8080")
			return []step{{flowtrack.EdgeIngress, c.syn()}, {flowtrack.EdgeEgress, c.synAck()},
				{flowtrack.EdgeIngress, c.request(req1)}, {flowtrack.EdgeIngress, c.request(req2)},
				{flowtrack.EdgeEgress, c.response(resp1)}, {flowtrack.EdgeEgress, c.response(resp2)},
				{flowtrack.EdgeIngress, c.fromClient(tcpFIN|tcpACK, nil)},
				{flowtrack.EdgeIngress, d.syn()}, {flowtrack.EdgeEgress, d.synAck()},
				{flowtrack.EdgeIngress, d.request("POST /upload HTTP/1.1\r\nContent-Length: 20\r\n\r\n")},
				{flowtrack.EdgeIngress, d.request("0123456789")}, {flowtrack.EdgeIngress, d.request("0123456789")},
				{flowtrack.EdgeEgress, d.response(resp1)}, {flowtrack.EdgeIngress, d.fromClient(tcpFIN|tcpACK, nil)}}
		}},
		{"100-continue, client half-close", inbound, false, func() []step {
			c := newConn("192.0.2.10:40304", "192.0.2.20:8080")
			return []step{{flowtrack.EdgeIngress, c.syn()}, {flowtrack.EdgeEgress, c.synAck()},
				{flowtrack.EdgeIngress, c.request("POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")},
				{flowtrack.EdgeEgress, c.response("HTTP/1.1 100 Continue\r\n\r\n")},
				{flowtrack.EdgeIngress, c.request("0123456789")}, {flowtrack.EdgeEgress, c.response(resp1)},
				{flowtrack.EdgeIngress, c.request(req2)}, {flowtrack.EdgeIngress, c.fromClient(tcpFIN|tcpACK, nil)},
				{flowtrack.EdgeEgress, c.fromServer(tcpACK|tcpPSH|tcpFIN, []byte(resp2))}}
		}},
		{"predates the probe, server first, tuple reuse", inbound, false, func() []step {
			c := newConn("192.0.2.10:40305", "192.0.2.20:8080")
			c.request(req1) // before the probe: not run
			b := newConn("192.0.2.10:40306", "192.0.2.20:8080")
			r := newConn("192.0.2.10:40307", "192.0.2.20:8080")
			r2 := newConn("192.0.2.10:40307", "192.0.2.20:8080")
			r2.cseq = 12345
			return []step{{flowtrack.EdgeEgress, c.response(resp1)}, {flowtrack.EdgeIngress, c.request(req2)},
				{flowtrack.EdgeEgress, c.response(resp2)}, {flowtrack.EdgeIngress, c.fromClient(tcpFIN|tcpACK, nil)},
				{flowtrack.EdgeIngress, b.syn()}, {flowtrack.EdgeEgress, b.synAck()},
				{flowtrack.EdgeEgress, b.response("220 ready\r\n")}, {flowtrack.EdgeIngress, b.request("HELO x\r\n")},
				{flowtrack.EdgeIngress, r.syn()}, {flowtrack.EdgeEgress, r.synAck()},
				{flowtrack.EdgeIngress, r.request(req1)}, {flowtrack.EdgeEgress, r.response(resp1)},
				{flowtrack.EdgeIngress, r2.syn()}}
		}},
		{"both legs, a port learnt", map[uint16]PortRole{8080: PortEdge}, false, func() []step {
			e := newConn("192.0.2.10:40308", "192.0.2.20:8080")
			a := newConn("127.0.0.6:41300", "127.0.0.1:9080")
			return []step{{flowtrack.EdgeIngress, e.syn()}, {flowtrack.EdgeEgress, e.synAck()},
				{flowtrack.App, a.syn()}, {flowtrack.App, a.synAck()},
				{flowtrack.EdgeIngress, e.request(req1)}, {flowtrack.App, a.request(req1)},
				{flowtrack.App, a.response(resp1)}, {flowtrack.EdgeEgress, e.response(resp1)},
				{flowtrack.EdgeIngress, e.request(req2)}, {flowtrack.App, a.request(req2)},
				{flowtrack.App, a.response(resp2)}, {flowtrack.EdgeEgress, e.response(resp2)},
				{flowtrack.App, a.fromServer(tcpFIN|tcpACK, nil)}, {flowtrack.EdgeEgress, e.fromServer(tcpFIN|tcpACK, nil)}}
		}},
		{"an outbound call", map[uint16]PortRole{8080: PortEdge | PortApp, 15001: PortOutbound}, true, func() []step {
			dialled := netip.MustParseAddrPort("10.96.0.10:8080")
			app := newConn("192.0.2.20:41000", "127.0.0.1:15001")
			up := newConn("192.0.2.20:50000", "192.0.2.30:8080")
			return []step{{flowtrack.App, app.syn()}, {flowtrack.App, app.natReply(dialled, tcpSYN|tcpACK, "")},
				{flowtrack.App, app.ackC()}, {flowtrack.App, app.request(req1)},
				{flowtrack.EdgeEgress, up.syn()}, {flowtrack.EdgeIngress, up.synAck()},
				{flowtrack.EdgeEgress, up.ackC()}, {flowtrack.EdgeEgress, up.request(req1)},
				{flowtrack.EdgeIngress, up.response(resp1)}, {flowtrack.App, app.natReply(dialled, tcpACK|tcpPSH, resp1)},
				{flowtrack.App, app.fromClient(tcpFIN|tcpACK, nil)}, {flowtrack.EdgeEgress, up.fromClient(tcpFIN|tcpACK, nil)}}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			steps := sc.steps()
			proxy := netip.MustParseAddr("127.0.0.6")

			kernel := newRunHarnessWith(t, ExchangeOptions{Outbound: sc.outbound}, sc.ports)
			if err := kernel.p.AddProxySource(proxy); err != nil {
				t.Fatal(err)
			}
			progs := map[flowtrack.Hook]*ebpf.Program{
				flowtrack.EdgeIngress: kernel.p.objs.EdgeIngress, flowtrack.EdgeEgress: kernel.p.objs.EdgeEgress,
				flowtrack.App: kernel.p.objs.AppIngress,
			}
			for _, s := range steps {
				runFrames(t, progs[s.hook], s.frame)
			}
			var want []exchange.Event
			for _, e := range kernel.events() {
				want = append(want, comparable(e))
			}

			sp, rd := loadSegmentProbe(t, SegmentOptions{Outbound: sc.outbound}, sc.ports)
			if err := sp.AddProxySource(proxy); err != nil {
				t.Fatal(err)
			}
			progs = map[flowtrack.Hook]*ebpf.Program{
				flowtrack.EdgeIngress: sp.objs.EdgeIngressSegment, flowtrack.EdgeEgress: sp.objs.EdgeEgressSegment,
				flowtrack.App: sp.objs.AppSegment,
			}
			var got []exchange.Event
			tr := flowtrack.New(flowtrack.Config{Outbound: sc.outbound, Emit: func(e *exchange.Event) {
				c := *e
				c.Head = append([]byte(nil), e.Head...)
				got = append(got, comparable(c))
			}})
			for _, s := range steps {
				runFrames(t, progs[s.hook], s.frame)
			}
			segs := segments(t, rd)
			for i := range segs {
				tr.Add(&segs[i])
			}
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("%d exchanges from the segments, %d from the kernel's flows (want them equal, and some)\nsegments: %+v\nkernel: %+v", len(got), len(want), got, want)
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("exchange %d:\nsegments %+v\nkernel   %+v", i, got[i], want[i])
				}
			}
		})
	}
}
