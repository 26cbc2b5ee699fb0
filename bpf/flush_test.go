package bpf

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// The idle scan emits a finished exchange once; neither a second scan nor
// the next request emits it again, and late response bytes are counted.
func TestRunFlushIdle(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40100", "192.0.2.20:8080")
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))

	// Only a request so far: nothing to flush, whatever the idle time.
	if r, err := h.p.FlushIdle(0); err != nil || r.Flushed != 0 || r.Scanned != 1 {
		t.Fatalf("flush with a request in flight: %+v %v", r, err)
	}
	h.edgeOut(c.response(resp1))
	tResp := monotonicNow(t)

	// Not quiet for long enough.
	if r, err := h.p.FlushIdle(time.Hour); err != nil || r.Flushed != 0 {
		t.Fatalf("flush with a long idle time: %+v %v", r, err)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Fatalf("emitted before the idle time: %+v", evs)
	}
	r, err := h.p.FlushIdle(0)
	if err != nil || r.Flushed != 1 || r.Now < tResp {
		t.Fatalf("flush: %+v %v", r, err)
	}
	evs := h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagIdle || !e.Complete() || string(e.Head) != req1 ||
		e.ResponseBytes != uint64(len(resp1)) {
		t.Errorf("flushed event %+v", e)
	}
	// Already emitted: a second scan leaves it alone.
	if r, err := h.p.FlushIdle(0); err != nil || r.Flushed != 0 {
		t.Fatalf("second flush: %+v %v", r, err)
	}
	// Late response bytes (a streaming response that paused) are counted.
	h.edgeOut(c.response("more"))
	// The next request ends the flushed exchange without emitting it again.
	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	h.edgeIn(c.fromClient(tcpFIN|tcpACK, nil))
	evs = h.events()
	wantEvents(t, evs, 1)
	if e := evs[0]; e.Flags != exchange.FlagFIN || !strings.HasPrefix(string(e.Head), "GET /two") {
		t.Errorf("second exchange %+v", e)
	}
	s := h.stats()
	if s.IdleFlushed != 1 || s.IdleLate != 1 || s.IdleRace != 0 || s.Events != 2 {
		t.Errorf("stats %+v", s)
	}
}

// Several connections: the scan emits only the quiet, finished ones.
func TestRunFlushIdleSelects(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	done := newConn("192.0.2.10:40101", "192.0.2.20:8080")
	h.edgeIn(done.syn())
	h.edgeOut(done.synAck())
	h.edgeIn(done.request(req1))
	h.edgeOut(done.response(resp1))
	time.Sleep(20 * time.Millisecond)
	fresh := newConn("192.0.2.10:40102", "192.0.2.20:8080")
	h.edgeIn(fresh.syn())
	h.edgeOut(fresh.synAck())
	h.edgeIn(fresh.request(req1))
	h.edgeOut(fresh.response(resp1))
	waiting := newConn("192.0.2.10:40103", "192.0.2.20:8080")
	h.edgeIn(waiting.syn())
	h.edgeOut(waiting.synAck())
	h.edgeIn(waiting.request(req1))

	r, err := h.p.FlushIdle(10 * time.Millisecond)
	if err != nil || r.Scanned != 3 || r.Flushed != 1 {
		t.Fatalf("flush: %+v %v", r, err)
	}
	evs := h.events()
	wantEvents(t, evs, 1)
	if evs[0].Client != done.client {
		t.Errorf("flushed %v, want the quiet connection %v", evs[0].Client, done.client)
	}
}

// The idle scan skips its walk of the flow table only when the walk could
// find nothing: the last walk left no exchange waiting for its idle time,
// no packet came since, and none came between that walk's scan and the one
// before it. Exchanges are still emitted once traffic resumes.
func TestRunFlushIdleSkipsSettledTable(t *testing.T) {
	h := newRunHarness(t, map[uint16]PortRole{8080: PortEdge})
	c := newConn("192.0.2.10:40104", "192.0.2.20:8080")
	flush := func(idle time.Duration, wantWalked bool, wantFlushed int) {
		t.Helper()
		r, err := h.p.FlushIdle(idle)
		if err != nil {
			t.Fatal(err)
		}
		if r.Walked != wantWalked || r.Flushed != wantFlushed {
			t.Fatalf("scan %+v, want walked %v and %d flushed", r, wantWalked, wantFlushed)
		}
		if r.Walked && r.Scanned != 1 || !r.Walked && r.Scanned != 0 {
			t.Fatalf("scan %+v: scanned what it did not walk", r)
		}
	}
	h.edgeIn(c.syn())
	h.edgeOut(c.synAck())
	h.edgeIn(c.request(req1))
	h.edgeOut(c.response(resp1))
	flush(time.Hour, true, 0) // packets since the last scan
	flush(time.Hour, true, 0) // the last walk came after packets
	flush(time.Hour, true, 0) // quiet, but the exchange waits for its idle time
	flush(0, true, 1)         // emitted: nothing waits now, and no packet came
	flush(0, false, 0)
	flush(0, false, 0)

	h.edgeIn(c.ackC()) // a bare ACK changes no flow, but it is a packet
	flush(0, true, 0)
	flush(0, true, 0)
	flush(0, false, 0)

	h.edgeIn(c.request(req2))
	h.edgeOut(c.response(resp2))
	flush(0, true, 1)
	flush(0, true, 0)
	flush(0, false, 0)
	evs := h.events()
	wantEvents(t, evs, 2)
	if !strings.HasPrefix(string(evs[1].Head), "GET /two") || evs[1].Flags != exchange.FlagIdle {
		t.Errorf("second exchange %+v", evs[1])
	}
}

// selfCgroup returns the cgroup v2 mount, this process's cgroup directory
// and its id.
func selfCgroup(t *testing.T) (root, dir string, id uint64) {
	t.Helper()
	root = cgroup2Mount(t)
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			dir = filepath.Join(root, rel)
		}
	}
	if dir == "" {
		t.Skip("no cgroup v2 line in /proc/self/cgroup")
	}
	id, err = CgroupID(dir)
	if err != nil {
		t.Skipf("own cgroup not visible: %v", err)
	}
	return root, dir, id
}

// Edge egress names the cgroup of the socket that answers on an edge port:
// here the test process's own, which serves the port.
func TestEdgeServerCgroup(t *testing.T) {
	requireRoot(t)
	_, _, self := selfCgroup(t)
	p := newPod(t)
	probe := p.attach(t, map[uint16]PortRole{directPort: PortEdge})
	serveHTTP(t, p.pod.listen(t, net.JoinHostPort(podAddr, "8081")), func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "direct\n")
	})
	p.drive(t, "8081", 1, 3)
	got, err := probe.EdgeServerCgroups()
	if err != nil {
		t.Fatal(err)
	}
	if got[directPort] != self || len(got) != 1 {
		t.Errorf("edge server cgroups %v, want port %d -> %d (this process)", got, directPort, self)
	}
}

// A restarted server answers on new connections from its new cgroup, and
// the port follows it: the cgroup is noted once per connection, at its
// first response, so the first connection to the new server moves the
// port. The new listening socket is made while the test process sits in
// another cgroup (a socket keeps its creator's cgroup, and accepted
// sockets their listener's).
func TestEdgeServerCgroupFollowsRestart(t *testing.T) {
	requireRoot(t)
	root, selfDir, self := selfCgroup(t)
	otherDir := testCgroup(t, root, "kmesh-edge-cgroup-test")
	other, err := CgroupID(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	p := newPod(t)
	probe := p.attach(t, map[uint16]PortRole{directPort: PortEdge})
	served := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "direct\n") }
	addr := net.JoinHostPort(podAddr, "8081")

	first := serveHTTP(t, p.pod.listen(t, addr), served)
	p.drive(t, "8081", 2, 3)
	if got, err := probe.EdgeServerCgroups(); err != nil || got[directPort] != self {
		t.Fatalf("first server: edge server cgroups %v (%v), want port %d -> %d (this process)", got, err, directPort, self)
	}
	_ = first.Close()

	moveSelf := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	}
	// Back before the other cgroup is removed (cleanups run last first).
	t.Cleanup(func() {
		if err := moveSelf(selfDir); err != nil {
			t.Errorf("move the test process back to %s: %v", selfDir, err)
		}
	})
	if err := moveSelf(otherDir); err != nil {
		t.Skipf("cannot move the test process into a test cgroup: %v", err)
	}
	l := p.pod.listen(t, addr)
	if err := moveSelf(selfDir); err != nil {
		t.Fatalf("move the test process back to %s: %v", selfDir, err)
	}
	serveHTTP(t, l, served)
	p.drive(t, "8081", 1, 3)
	if got, err := probe.EdgeServerCgroups(); err != nil || got[directPort] != other {
		t.Fatalf("restarted server: edge server cgroups %v (%v), want port %d -> %d (the other cgroup; this process is %d)", got, err, directPort, other, self)
	}
}

// The kernel's view of a process's cgroup ancestry matches the directories
// of the cgroup v2 hierarchy: a child born three levels down, named by its
// pid in this process's pid namespace, is found there.
func TestDiscoverAncestry(t *testing.T) {
	requireRoot(t)
	root := cgroup2Mount(t)
	top := filepath.Join(root, fmt.Sprintf("kmesh-ancestry-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	leaf := filepath.Join(top, "pod", "container")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{leaf, filepath.Dir(leaf), top} {
			_ = os.Remove(d)
		}
	})
	cg, err := os.Open(leaf)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()

	p, err := LoadCPUProbe(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A child of this test binary that burns CPU inside the leaf cgroup:
	// it gets scheduled, so discovery sees it. Waited for by PID.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), burnEnv+"=300")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	proc, err := SelfProcess()
	if err != nil {
		t.Fatal(err)
	}
	proc.Tgid = uint32(cmd.Process.Pid)
	ids, derr := p.DiscoverAncestry(proc, 5*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	checkAncestry(t, ids, []string{root, top, filepath.Dir(leaf), leaf})
	if usage, err := p.Usage(); err != nil || len(usage) != 0 {
		t.Errorf("discovery accounted CPU: %v %v", usage, err)
	}
}

// checkAncestry compares discovered ids with the inodes of the directories
// from the root down.
func checkAncestry(t *testing.T, ids []uint64, want []string) {
	t.Helper()
	if len(ids) != len(want) {
		t.Fatalf("ancestry %v, want %d levels (%v)", ids, len(want), want)
	}
	for level, path := range want {
		id, err := CgroupID(path)
		if err != nil {
			t.Fatal(err)
		}
		if ids[level] != id {
			t.Errorf("level %d: kernel says %d, %s has id %d", level, ids[level], path, id)
		}
	}
}

// A process discovers its own cgroup, wherever it is (on this host: the
// cgroup /proc/self/cgroup names), without knowing its id beforehand: the
// probe's case inside a container that shows it no cgroup2 mount.
func TestDiscoverAncestrySelf(t *testing.T) {
	requireRoot(t)
	root := cgroup2Mount(t)
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var path string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path = p
		}
	}
	if path == "" {
		t.Skip("no cgroup v2 line in /proc/self/cgroup")
	}
	want := []string{root}
	if rel := strings.Trim(path, "/"); rel != "" {
		dir := root
		for _, el := range strings.Split(rel, "/") {
			dir = filepath.Join(dir, el)
			want = append(want, dir)
		}
	}
	if _, err := os.Stat(want[len(want)-1]); err != nil {
		t.Skipf("own cgroup not visible under %s (cgroup namespace?): %v", root, err)
	}
	p, err := LoadCPUProbe(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	proc, err := SelfProcess()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := p.DiscoverAncestry(proc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkAncestry(t, ids, want)

	// A pid that is not in this pid namespace is never found.
	bogus := proc
	bogus.PidNSIno++
	if _, err := p.DiscoverAncestry(bogus, 200*time.Millisecond); err == nil {
		t.Error("discovered a process in a pid namespace that does not exist")
	}
}
