package bpf

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

// burnEnv makes the test binary, re-executed as a child, burn the given
// milliseconds of CPU and exit: a workload with a known CPU time.
const burnEnv = "KMESH_TEST_BURN_CPU_MS"

// pulseEnv makes the test binary, re-executed as a child, alternate 2 ms
// of CPU and 1 ms of sleep for the given milliseconds of wall time: a task
// that switches out often, as a proxy's threads do.
const pulseEnv = "KMESH_TEST_PULSE_MS"

func TestMain(m *testing.M) {
	if v := os.Getenv(pulseEnv); v != "" {
		var msec int
		if _, err := fmt.Sscan(v, &msec); err != nil {
			os.Exit(2)
		}
		for end := time.Now().Add(time.Duration(msec) * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
			for burst := time.Now().Add(2 * time.Millisecond); time.Now().Before(burst); {
			}
		}
		os.Exit(0)
	}
	if v := os.Getenv(pingPongEnv); v != "" {
		pingPong(v == "first")
		os.Exit(0)
	}
	if v := os.Getenv(burnEnv); v != "" {
		var msec int
		if _, err := fmt.Sscan(v, &msec); err != nil {
			os.Exit(2)
		}
		if err := fixture.BurnProcessCPU(time.Duration(msec) * time.Millisecond); err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pingPongEnv makes the test binary, re-executed as a child, bounce a byte
// with a partner over the pipes it inherits (read end fd 3, write end fd 4)
// pingPongRounds times: a task that runs in many short slices, as a proxy
// does. "first" sends first.
const pingPongEnv = "KMESH_TEST_PING_PONG"

const pingPongRounds = 20000

func pingPong(first bool) {
	buf := make([]byte, 1)
	for i := 0; i < pingPongRounds; i++ {
		if !first || i > 0 {
			if _, err := unix.Read(3, buf); err != nil {
				os.Exit(2)
			}
		}
		// The partner reads one byte less than it is sent: the last
		// write may find it gone.
		if _, err := unix.Write(4, buf); err != nil && i < pingPongRounds-1 {
			os.Exit(3)
		}
	}
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	t.Skip("no cgroup v2 hierarchy mounted")
	return ""
}

// The sched_switch program charges a child that burns a known amount of
// CPU, in a cgroup of its own, with that amount.
func TestCPUAccountingMatchesRusage(t *testing.T) {
	requireRoot(t)
	root := cgroup2Mount(t)
	dir := testCgroup(t, root, "kmesh-cpu-test")
	filter, err := CPUFilterForPath(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	if filter.Level != 1 {
		t.Fatalf("level %d for a child of the root", filter.Level)
	}
	p := attachedCPUProbe(t, filter)

	const burn = 300 * time.Millisecond
	cmd := startInCgroup(t, dir, nil, fmt.Sprintf("%s=%d", burnEnv, burn.Milliseconds()))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	want := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if want < burn {
		t.Fatalf("child used %v, less than it was asked to burn", want)
	}

	// The child's last slice is charged when it switches out for good.
	var got time.Duration
	var usage map[uint64]time.Duration
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if usage, err = p.Usage(); err != nil {
			t.Fatal(err)
		}
		if got = usage[filter.AncestorID]; got >= want*9/10 {
			break
		}
	}
	if len(usage) != 1 {
		t.Errorf("usage for %d cgroups, want only the test cgroup: %v", len(usage), usage)
	}
	diff := got - want
	if diff < 0 {
		diff = -diff
	}
	if diff > want/10+5*time.Millisecond {
		t.Errorf("accounted %v, child rusage %v", got, want)
	}
	t.Logf("accounted %v, child rusage %v", got, want)

	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Accounted == 0 || s.Filtered == 0 || s.PrevMismatch != 0 || s.MapFull != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestCPUFilterForPath(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := CPUFilterForPath(dir, sub)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(sub, &st); err != nil {
		t.Fatal(err)
	}
	if f.Level != 2 || f.AncestorID != st.Ino {
		t.Errorf("filter %+v, want level 2 id %d", f, st.Ino)
	}
	if f, err := CPUFilterForPath(dir, dir); err != nil || f.Level != 0 {
		t.Errorf("root: %+v %v", f, err)
	}
	if _, err := CPUFilterForPath(sub, dir); err == nil {
		t.Error("a directory outside the root was accepted")
	}
}

// A task that runs in many short slices (a ping-pong over pipes with a
// partner outside the filtered cgroup) is charged what the cgroup's own
// cpu.stat says: the program charges the scheduler's runtime, not the time
// between switches, which fell short by about a microsecond per slice.
func TestCPUAccountingShortSlices(t *testing.T) {
	requireRoot(t)
	root := cgroup2Mount(t)
	name := fmt.Sprintf("kmesh-cpu-slices-%d-%d", os.Getpid(), time.Now().UnixNano())
	pod, other := filepath.Join(root, name), filepath.Join(root, name+"-other")
	dir := filepath.Join(pod, "container")
	for _, d := range []string{dir, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, pod, other} {
			_ = os.Remove(d)
		}
	})
	filter, err := CPUFilterForPath(root, pod)
	if err != nil {
		t.Fatal(err)
	}
	id, err := CgroupID(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := attachedCPUProbe(t, filter)

	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	before := cgroupUsage(t, dir)
	a := startInCgroup(t, dir, []*os.File{r1, w2}, pingPongEnv+"=first")
	b := startInCgroup(t, other, []*os.File{r2, w1}, pingPongEnv+"=second")
	for _, f := range []*os.File{r1, w1, r2, w2} {
		f.Close()
	}
	for _, c := range []*exec.Cmd{a, b} {
		if err := c.Wait(); err != nil {
			t.Fatalf("ping-pong child: %v", err)
		}
	}
	after := cgroupUsage(t, dir)
	want := after - before
	usage, err := p.Usage()
	if err != nil {
		t.Fatal(err)
	}
	got := usage[id]
	t.Logf("%d rounds: accounted %v, cgroup cpu.stat %v", pingPongRounds, got, want)
	// cpu.stat is in microseconds.
	if d := got - want; d > want/100+time.Millisecond || d < -want/100-time.Millisecond {
		t.Errorf("accounted %v, cgroup cpu.stat %v: more than 1%% apart", got, want)
	}
	if len(usage) != 1 {
		t.Errorf("usage for %d cgroups, want only the filtered one: %v", len(usage), usage)
	}
}

// A task that was running before the accounting started is charged what it
// runs after: its runtime until its first switch-out seen is not known to be
// the pod's (it may have joined the cgroup since), so it is skipped. The
// comparison is with the cgroup's cpu.stat over the same span; the skipped
// part before the start is a third of the child's CPU, so charging it
// would fail the test.
func TestCPUAccountingTaskOlderThanProbe(t *testing.T) {
	requireRoot(t)
	root := cgroup2Mount(t)
	dir := testCgroup(t, root, "kmesh-cpu-older")
	filter, err := CPUFilterForPath(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := startInCgroup(t, dir, nil, pulseEnv+"=900")
	time.Sleep(300 * time.Millisecond)
	p := attachedCPUProbe(t, filter)
	atStart := cgroupUsage(t, dir)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	after := cgroupUsage(t, dir)
	want := after - atStart
	usage, err := p.Usage()
	if err != nil {
		t.Fatal(err)
	}
	got := usage[filter.AncestorID]
	t.Logf("accounted %v; cgroup cpu.stat %v since the probe started, %v in all", got, want, after)
	// One slice per thread (2 ms bursts) may fall before the first
	// switch-out seen.
	if d := got - want; d > want/10+5*time.Millisecond || d < -want/10-5*time.Millisecond {
		t.Errorf("accounted %v, cgroup cpu.stat since the probe started %v", got, want)
	}
}

// testCgroup makes an empty cgroup v2 below root for one test, removed
// after it.
func testCgroup(t *testing.T, root, prefix string) string {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}

// startInCgroup starts the test binary as a child with env added and files
// as its descriptors 3 and up, born inside the cgroup dir (clone3
// CLONE_INTO_CGROUP): none of its CPU is spent elsewhere.
func startInCgroup(t *testing.T, dir string, files []*os.File, env ...string) *exec.Cmd {
	t.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child in cgroup %s: %v", dir, err)
	}
	return cmd
}

// cgroupUsage reads usage_usec from a cgroup v2 directory's cpu.stat.
func cgroupUsage(t *testing.T, dir string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			var us int64
			if _, err := fmt.Sscan(v, &us); err != nil {
				t.Fatalf("%s/cpu.stat: %v", dir, err)
			}
			return time.Duration(us) * time.Microsecond
		}
	}
	t.Fatalf("no usage_usec in %s/cpu.stat", dir)
	return 0
}

// attachedCPUProbe loads the CPU probe, gives it filter and attaches it; the test closes it.
func attachedCPUProbe(t *testing.T, filter CPUFilter) *CPUProbe {
	t.Helper()
	p, err := LoadCPUProbe(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.SetFilter(filter); err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	return p
}
