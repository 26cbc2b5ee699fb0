package flowtrack

import (
	"net/netip"
	"testing"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// BenchmarkRequest is the process's cost per proxied request when it
// follows the connections itself: the four payload segments a request
// produces at 2000 rps (the client's request on eth0, the proxy's request
// and the application's response on lo, the proxy's response on eth0),
// over 8 client connections and their 8 proxy connections, and the two
// exchanges each request emits. Run with -benchmem: ns/op is per request.
func BenchmarkRequest(b *testing.B) {
	var emitted int
	tr := New(Config{Emit: func(*exchange.Event) { emitted++ }})
	roles := map[uint16]Role{8080: RoleEdge, 9080: RoleApp}
	type pair struct{ edge, app *conn }
	var conns []pair
	r := &rig{tr: tr, roles: roles, now: 1}
	for i := range 8 {
		edge := &conn{client: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(40000+i)),
			server: netip.MustParseAddrPort("192.0.2.20:8080"), cseq: 1000, sseq: 50000}
		app := &conn{client: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.6"), uint16(41000+i)),
			server: netip.MustParseAddrPort("127.0.0.1:9080"), cseq: 1000, sseq: 50000}
		edge.open(r)
		app.fromClient(r, App, SYN, "")
		app.fromServer(r, App, SYN|ACK, "")
		conns = append(conns, pair{edge, app})
	}
	// The segments of one request on each connection, built once: what
	// changes per request is the clock and the sequence numbers.
	mk := func(hook Hook, c *conn, fromClient bool, payload string) Segment {
		src, dst := c.client, c.server
		if !fromClient {
			src, dst = dst, src
		}
		return Segment{Hook: hook, Ifindex: 2, Family: 4, Src: src.Addr().As16(), Dst: dst.Addr().As16(),
			SrcPort: src.Port(), DstPort: dst.Port(), SrcRoles: roles[src.Port()], DstRoles: roles[dst.Port()],
			PayloadLen: uint32(len(payload)), TCPFlags: ACK, Payload: []byte(payload[:min(len(payload), HeadLen)])}
	}
	type step struct {
		seg        Segment
		seq        *uint32
		fromClient bool
	}
	var steps [][4]step
	for _, p := range conns {
		steps = append(steps, [4]step{
			{mk(EdgeIngress, p.edge, true, req1), &p.edge.cseq, true},
			{mk(App, p.app, true, req1), &p.app.cseq, true},
			{mk(App, p.app, false, resp1), &p.app.sseq, false},
			{mk(EdgeEgress, p.edge, false, resp1), &p.edge.sseq, false},
		})
	}
	now := r.now
	b.ResetTimer()
	for i := range b.N {
		for j := range steps[i%len(steps)] {
			st := &steps[i%len(steps)][j]
			now += 1000
			st.seg.Time = now
			st.seg.Seq = *st.seq
			*st.seq += st.seg.PayloadLen
			tr.Add(&st.seg)
		}
	}
	b.StopTimer()
	if want := 2 * (b.N - len(steps)); emitted < want {
		b.Fatalf("emitted %d exchanges for %d requests, want at least %d", emitted, b.N, want)
	}
}
