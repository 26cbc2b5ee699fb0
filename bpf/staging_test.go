package bpf

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// emitBatch is EMIT_BATCH in c/exchange.bpf.c: exchanges per record.
const emitBatch = len(ExchangeStaging{}.Events)

// keepAlive drives one keep-alive connection on eth0, an exchange per
// call: each request after the first emits the exchange before it.
type keepAlive struct {
	h    *runHarness
	c    *tcpConn
	sent int
}

func newKeepAlive(h *runHarness, client string) *keepAlive {
	k := &keepAlive{h: h, c: newConn(client, "192.0.2.20:8080")}
	h.edgeIn(k.c.syn())
	h.edgeOut(k.c.synAck())
	return k
}

func (k *keepAlive) exchange() {
	k.h.edgeIn(k.c.request(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: pod\r\n\r\n", k.sent)))
	k.h.edgeOut(k.c.response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	k.sent++
}

// wantPaths checks that evs are the exchanges GET /from ... in order.
func wantPaths(t *testing.T, evs []exchange.Event, from int) {
	t.Helper()
	for i, e := range evs {
		rl, ok := exchange.ParseRequestLine(e.Head)
		if want := fmt.Sprintf("/%d", from+i); !ok || rl.Target != want {
			t.Fatalf("event %d: request line %q, want GET %s", i, e.Head, want)
		}
	}
}

// The TC programs write finished exchanges EMIT_BATCH to a record; fewer
// wait in their CPU's area until the flush, which sends them as one record
// and leaves nothing behind. None is lost, repeated or reordered.
func TestRunStagedBatches(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge}) // on one CPU
	k := newKeepAlive(h, "192.0.2.10:40200")

	// emitBatch exchanges finished (each by the next request), one
	// short of a batch: the ring stays empty.
	for range emitBatch {
		k.exchange()
	}
	if recs := h.records(); len(recs) != 0 {
		t.Fatalf("%d records before a batch was full", len(recs))
	}
	k.exchange() // finishes the batch's last exchange
	recs := h.records()
	if len(recs) != 1 || len(recs[0]) != emitBatch*exchange.Size {
		t.Fatalf("got %d records (first %d bytes), want one of %d events", len(recs), len(recs[0]), emitBatch)
	}
	evs := h.decodeAll(recs)
	wantPaths(t, evs, 0)

	// Three more, then the flush.
	for range 3 {
		k.exchange()
	}
	if recs := h.records(); len(recs) != 0 {
		t.Fatalf("%d records before the flush", len(recs))
	}
	sent, err := h.p.FlushStaged()
	if err != nil || sent != 3 {
		t.Fatalf("flush sent %d (%v), want 3", sent, err)
	}
	recs = h.records()
	if len(recs) != 1 {
		t.Fatalf("flush wrote %d records, want one", len(recs))
	}
	evs = h.decodeAll(recs)
	wantEvents(t, evs, 3)
	wantPaths(t, evs, emitBatch)
	if sent, err := h.p.FlushStaged(); err != nil || sent != 0 {
		t.Fatalf("second flush sent %d (%v), want 0", sent, err)
	}
	if s := h.stats(); s.Events != uint64(emitBatch+3) || s.RingBufferFull != 0 {
		t.Errorf("stats %+v, want %d events", s, emitBatch+3)
	}
}

// setOwner sets the owner of every CPU's staging area, keeping what is
// staged, as a TC program or the flush on another CPU would hold it.
func setOwner(t *testing.T, h *runHarness, owner ExchangeStagingOwner) {
	t.Helper()
	var areas []ExchangeStaging
	if err := h.p.objs.Staged.Lookup(uint32(0), &areas); err != nil {
		t.Fatal(err)
	}
	for i := range areas {
		areas[i].Owner = uint32(owner)
	}
	if err := h.p.objs.Staged.Update(uint32(0), areas, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
}

// Neither side waits for the other: a TC program that finds its CPU's area
// held by the flush writes its record straight to the ring, and the flush
// leaves an area that a TC program holds for later.
func TestRunStagedOwner(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge}) // on one CPU
	k := newKeepAlive(h, "192.0.2.10:40300")
	k.exchange()
	k.exchange()
	k.exchange() // two exchanges staged

	// Held by a TC program: the flush sends nothing, and keeps them.
	setOwner(t, h, ExchangeStagingOwnerSTAGING_EMITTER)
	if sent, err := h.p.FlushStaged(); err != nil || sent != 0 {
		t.Fatalf("flush of a held area sent %d (%v)", sent, err)
	}
	if recs := h.records(); len(recs) != 0 {
		t.Fatalf("%d records from a held area", len(recs))
	}

	// Held by the flush: the next exchange goes to the ring at once, alone.
	setOwner(t, h, ExchangeStagingOwnerSTAGING_FLUSHER)
	k.exchange()
	recs := h.records()
	if len(recs) != 1 || len(recs[0]) != exchange.Size {
		t.Fatalf("got %d records, want one of one event", len(recs))
	}
	wantPaths(t, h.decodeAll(recs), 2)

	// Released: the two staged ones come out, in order.
	setOwner(t, h, ExchangeStagingOwnerSTAGING_FREE)
	if sent, err := h.p.FlushStaged(); err != nil || sent != 2 {
		t.Fatalf("flush sent %d (%v), want 2", sent, err)
	}
	wantPaths(t, h.decodeAll(h.records()), 0)
	if s := h.stats(); s.Events != 3 {
		t.Errorf("stats %+v, want 3 events", s)
	}
}
