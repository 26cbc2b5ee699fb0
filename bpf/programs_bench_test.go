package bpf

import (
	"flag"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

var evictBytes = flag.Int("programs.evict", 0, "BenchmarkProgramsPerRequest: bytes of memory to read between requests, on the CPU that runs the programs, so that they start each request on caches as cold as a pod's at a few thousand requests a second (0: hot caches)")

// BenchmarkProgramsPerRequest runs the TC programs with BPF_PROG_TEST_RUN
// on the packets of one keep-alive request through a sidecar (client ->
// proxy on eth0, proxy -> application on lo, and back, with the bare ACKs)
// and reports the kernel's own run time of the programs per request
// (the duration BPF_PROG_TEST_RUN reports, so no system call is counted). The caches are hot,
// unlike in a pod, where a program run costs ~10 times more: use it to
// compare versions of the programs, not as their cost in production.
//
//	go test -run '^$' -bench ProgramsPerRequest -benchtime 20000x ./bpf
func BenchmarkProgramsPerRequest(b *testing.B) {
	h := newRunHarnessWith(b, ExchangeOptions{RingBufferBytes: 1 << 20}, map[uint16]PortRole{8080: PortEdge | PortApp})
	edge := newConn("192.0.2.10:40000", "192.0.2.20:8080")
	app := newConn("127.0.0.6:50000", "127.0.0.1:8080")
	const req = "GET /item/1 HTTP/1.1\r\nHost: svc\r\nx-request-id: 0f1e2d3c\r\n\r\n"
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	run := func(prog *ebpf.Program, frame []byte) time.Duration {
		// One run: the kernel times it (the duration BPF_PROG_TEST_RUN
		// reports), so state advances exactly as with real packets.
		_, d, err := prog.Benchmark(frame, 1, nil)
		if err != nil {
			b.Fatalf("test run: %v", err)
		}
		return d
	}
	p := h.p.objs
	// Both connections open once, as keep-alive connections do.
	run(p.EdgeIngress, edge.syn())
	run(p.EdgeEgress, edge.synAck())
	run(p.EdgeIngress, edge.ackC())
	run(p.AppIngress, app.syn())
	run(p.AppIngress, app.synAck())
	run(p.AppIngress, app.ackC())

	// Each request emits the previous exchange of both connections: keep
	// the ring from filling, outside the timed runs.
	var rec ringbuf.Record
	drain := func() {
		h.rd.SetDeadline(time.Now())
		for h.rd.ReadInto(&rec) == nil {
		}
	}
	evict := evicter(b, *evictBytes)
	var perRequest []time.Duration
	for i := 0; b.Loop(); i++ {
		evict()
		var d time.Duration
		d += run(p.EdgeIngress, edge.request(req))
		d += run(p.AppIngress, app.request(req))
		d += run(p.AppIngress, app.ackS())
		d += run(p.AppIngress, app.response(resp))
		d += run(p.AppIngress, app.ackC())
		d += run(p.EdgeEgress, edge.response(resp))
		d += run(p.EdgeIngress, edge.ackC())
		perRequest = append(perRequest, d)
		if i%256 == 255 {
			drain()
		}
	}
	drain()
	if s := h.stats(); s.RingBufferFull != 0 || s.Events == 0 {
		b.Fatalf("stats %+v: the runs did not emit every exchange", s)
	}
	slices.Sort(perRequest)
	b.ReportMetric(float64(perRequest[len(perRequest)/2]), "bpf-ns/request-p50")
	var sum time.Duration
	for _, d := range perRequest {
		sum += d
	}
	b.ReportMetric(float64(sum)/float64(len(perRequest)), "bpf-ns/request-mean")
}

// evicter returns what BenchmarkProgramsPerRequest runs between requests:
// nothing, or a read of one byte in every cache line of n bytes of its
// own, on the CPU the programs run on (the calling goroutine is locked to
// its OS thread and that thread pinned to CPU 0 until the benchmark ends).
func evicter(b *testing.B, n int) func() {
	if n <= 0 {
		return func() {}
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(0)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		b.Fatalf("pin to CPU 0: %v", err)
	}
	b.Cleanup(runtime.UnlockOSThread)
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	var sink byte
	b.Cleanup(func() { _ = sink })
	return func() {
		for i := 0; i < len(buf); i += 64 {
			sink += buf[i]
		}
	}
}
