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

var (
	evictBytes = flag.Int("programs.evict", 0, "BenchmarkProgramsPerRequest: bytes of memory to read before each request, on CPU 0, so that the programs start each request on caches as cold as a pod's at a few thousand requests a second (0: hot caches)")
	crossCPU   = flag.Bool("programs.cross-cpu", false, "BenchmarkProgramsPerRequest: run each packet on the CPU it would reach in a pod on two CPUs (client and application on CPU 0, proxy on CPU 1), so that a connection's state moves between CPUs as it does there")
)

// BenchmarkProgramsPerRequest runs the TC programs with BPF_PROG_TEST_RUN
// on the packets of one keep-alive request through a sidecar (client ->
// proxy on eth0, proxy -> application on lo, and back, with the bare ACKs)
// and reports the kernel's own run time of the programs per request
// (the duration BPF_PROG_TEST_RUN reports, so no system call is counted),
// and each step's median in its log.
//
// By default the caches are hot and every run is on one CPU, unlike in a
// pod, where a run costs several times more: use that to compare versions
// of the programs' instructions, not as their cost in production. Two
// flags bring it closer to a pod's: -programs.evict=N reads N bytes of
// other memory before each request (4 MiB is twice this machine's L2), as
// the other work between a pod's requests evicts the programs' code and
// data; -programs.cross-cpu runs each packet on the CPU it would reach in a
// pod on two CPUs, so that a connection's state moves between CPUs as it
// does there. With both, a request costs about three times what it costs
// hot (docs/benchmarks.md, session 15).
//
//	go test -run '^$' -bench ProgramsPerRequest -benchtime 20000x ./bpf [-args -programs.evict=4194304 -programs.cross-cpu]
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
	// A request's packets in the order a pod sees them, and the CPU each
	// runs on with -programs.cross-cpu: in a pod, the client's packets
	// reach eth0 ingress on the client's CPU, the proxy's on the proxy's
	// and the application's on the application's, and on two CPUs those
	// alternate along the path (client 0, proxy 1, application 0).
	steps := []struct {
		name  string
		prog  *ebpf.Program
		frame func() []byte
		cpu   int
	}{
		{"edge request", p.EdgeIngress, func() []byte { return edge.request(req) }, 0},
		{"app request", p.AppIngress, func() []byte { return app.request(req) }, 1},
		{"app ack", p.AppIngress, app.ackS, 0},
		{"app response", p.AppIngress, func() []byte { return app.response(resp) }, 0},
		{"proxy ack", p.AppIngress, app.ackC, 1},
		{"edge response", p.EdgeEgress, func() []byte { return edge.response(resp) }, 1},
		{"client ack", p.EdgeIngress, edge.ackC, 0},
	}
	pin := pinner(b, *evictBytes > 0 || *crossCPU)
	evict := evicter(*evictBytes)
	var perRequest []time.Duration
	perStep := make([][]time.Duration, len(steps))
	for i := 0; b.Loop(); i++ {
		pin(0)
		evict()
		var d time.Duration
		for j, st := range steps {
			if *crossCPU {
				pin(st.cpu)
			}
			dj := run(st.prog, st.frame())
			perStep[j] = append(perStep[j], dj)
			d += dj
		}
		perRequest = append(perRequest, d)
		if i%256 == 255 {
			drain()
		}
	}
	for j, st := range steps {
		slices.Sort(perStep[j])
		b.Logf("%s: p50 %v", st.name, perStep[j][len(perStep[j])/2])
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

// pinner returns what pins the benchmark to a CPU: with pinning on, the
// calling goroutine is locked to its OS thread (until the benchmark ends)
// and pin(cpu) moves that thread to cpu; off, pin does nothing.
func pinner(b *testing.B, on bool) func(cpu int) {
	if !on {
		return func(int) {}
	}
	if runtime.NumCPU() < 2 && *crossCPU {
		b.Skip("-programs.cross-cpu needs two CPUs")
	}
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	current := -1
	return func(cpu int) {
		if cpu == current {
			return
		}
		var set unix.CPUSet
		set.Set(cpu)
		// sched_setaffinity moves the calling thread before it returns.
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			b.Fatalf("pin to CPU %d: %v", cpu, err)
		}
		current = cpu
	}
}

// evicter returns what BenchmarkProgramsPerRequest runs before each
// request: nothing, or a read of one byte in every cache line of n bytes
// of its own (on the CPU the benchmark is pinned to).
func evicter(n int) func() {
	if n <= 0 {
		return func() {}
	}
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	var sink byte
	return func() {
		for i := 0; i < len(buf); i += 64 {
			sink += buf[i]
		}
		buf[0] = sink
	}
}
