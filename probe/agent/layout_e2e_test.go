package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/cgroups"
	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
)

// The cgroup layouts a probe container meets, reproduced for a probe
// process of this test binary in a cgroup of its own below a "pod" cgroup:
const (
	// layoutHost: the cgroup v2 hierarchy as the host mounts it, the
	// pod's directory visible (no cgroup namespace).
	layoutHost = "host-view"
	// layoutCgroupNS: a private cgroup namespace with cgroup2 mounted
	// again inside it (the default for containers on cgroup v2 hosts):
	// the probe's own cgroup is the root of what it sees.
	layoutCgroupNS = "cgroupns"
	// layoutNoCgroup2: no cgroup2 mount at all, /proc/self/cgroup still
	// naming the full v2 path (containers on hybrid v1/v2 hosts: runc
	// mounts only the v1 controllers).
	layoutNoCgroup2 = "no-cgroup2"
)

// Children of the test binary, started by this file's test.
const (
	layoutProbeEnv = "KMESH_TEST_LAYOUT_PROBE" // JSON layoutProbe
	layoutProxyEnv = "KMESH_TEST_LAYOUT_PROXY" // JSON layoutProxy
)

type layoutProbe struct {
	Layout string
	NetNS  string
}

type layoutProxy struct {
	NetNS, Listen, Upstream string
	CPUPerRequest           time.Duration
}

// runLayoutChildIfRequested runs a probe or proxy child and exits when this
// process is one; it returns at once otherwise. Each child writes its
// readiness (the probe: its HTTP address) as a line to stdout and stops when
// its stdin closes, so that it never outlives the test.
func runLayoutChildIfRequested() {
	if spec := os.Getenv(layoutProbeEnv); spec != "" {
		var o layoutProbe
		if err := json.Unmarshal([]byte(spec), &o); err != nil {
			childFail("bad probe spec", err)
		}
		if err := runLayoutProbe(o); err != nil {
			childFail("probe child", err)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(layoutProxyEnv); spec != "" {
		var o layoutProxy
		if err := json.Unmarshal([]byte(spec), &o); err != nil {
			childFail("bad proxy spec", err)
		}
		p, err := fixture.StartProxyWith(fixture.ProxyOptions{Netns: &fixture.Netns{Path: o.NetNS},
			Listen: o.Listen, Upstream: o.Upstream, CPUPerRequest: o.CPUPerRequest,
			Record: func(fixture.Residence) {}, OnError: func(error) {}})
		if err != nil {
			childFail("proxy child", err)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = p.Close()
		os.Exit(0)
	}
}

func childFail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

// runLayoutProbe shapes the child's mount namespace (private, unshared by
// the parent) as the layout says, then runs the agent and its HTTP server
// until stdin closes.
func runLayoutProbe(o layoutProbe) error {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return err
	}
	switch o.Layout {
	case layoutHost:
	case layoutNoCgroup2:
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", mounts[i], err)
			}
		}
	case layoutCgroupNS:
		// The parent unshared the cgroup namespace after placing this
		// process: a fresh mount shows its cgroup as the root.
		if err := unix.Unmount(mounts[0], unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", mounts[0], err)
		}
		if err := unix.Mount("cgroup2", mounts[0], "cgroup2", 0, ""); err != nil {
			return fmt.Errorf("mount cgroup2 at %s: %w", mounts[0], err)
		}
	default:
		return fmt.Errorf("unknown layout %q", o.Layout)
	}
	a, err := Start(Options{Config: testConfig, NetNS: o.NetNS, CPUInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- server.Serve(ctx, "127.0.0.1:0", server.Handler(a, a.Metrics().Registry), func(ad net.Addr) {
			fmt.Println(ad.String())
		})
	}()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return <-errc
}

// cgroup2Mounts lists this mount namespace's cgroup2 mount points.
func cgroup2Mounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				out = append(out, fields[4])
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cgroup2 mount")
	}
	return out, sc.Err()
}

// child is a running child of the test binary.
type child struct {
	cmd   *exec.Cmd
	stdin io.Closer
	line  string // its first line of output
}

// startChild starts this test binary as a child with env set, born in the
// cgroup dir (clone3 CLONE_INTO_CGROUP) and with the given namespaces
// unshared after that, and waits for its first line.
func startChild(t *testing.T, env, dir string, unshare uintptr) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Unshareflags: unshare,
		Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = c.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child %s: %v", env[:strings.IndexByte(env, '=')], err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // by PID: only the child this test started
			<-done
			t.Errorf("child %d did not stop", cmd.Process.Pid)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("child %s exited before it was ready", env[:strings.IndexByte(env, '=')])
		}
		c.line = l
	case <-time.After(30 * time.Second):
		t.Fatalf("child %s not ready within 30s", env[:strings.IndexByte(env, '=')])
	}
	return c
}

// The proxy's CPU is known whatever the probe's container shows of the
// cgroup hierarchy: the whole pod, its own cgroup only (cgroup namespace),
// or no cgroup2 at all (hybrid v1/v2 hosts). A probe process and a proxy
// process, each in a cgroup of its own below a pod cgroup, the proxy
// burning a known CPU per request: the probe names the proxy's cgroup by
// the socket answering on the service port, its own by its pid, and
// accounts the proxy's CPU within 5% of the proxy cgroup's cpu.stat.
func TestEndToEndProxyCPUByCgroupLayout(t *testing.T) {
	requireRoot(t)
	self, err := cgroups.FindSelf()
	if err != nil {
		t.Skip(err)
	}
	if !self.Visible() {
		t.Skipf("no cgroup2 mount shows this process's cgroup %s: cannot make test cgroups", self.Path)
	}
	for _, layout := range []string{layoutHost, layoutCgroupNS, layoutNoCgroup2} {
		t.Run(layout, func(t *testing.T) { testProxyCPULayout(t, self, layout) })
	}
}

func testProxyCPULayout(t *testing.T, self cgroups.Self, layout string) {
	podDir := filepath.Join(self.Mount, fmt.Sprintf("kmesh-layout-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	probeDir, proxyDir := filepath.Join(podDir, "probe"), filepath.Join(podDir, "proxy")
	for _, d := range []string{probeDir, proxyDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Registered first, so run last: after the children have exited.
	t.Cleanup(func() {
		for _, d := range []string{probeDir, proxyDir, podDir} {
			if err := os.Remove(d); err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		}
	})
	probeID, err := cgroups.ID(probeDir)
	if err != nil {
		t.Fatal(err)
	}
	proxyID, err := cgroups.ID(proxyDir)
	if err != nil {
		t.Fatal(err)
	}
	pod := fixture.NewTestPod(t)
	app, err := fixture.StartApp(pod.Pod, net.JoinHostPort("127.0.0.1", strconv.Itoa(servicePort)), 200*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })

	const cpuPerRequest = 500 * time.Microsecond
	spec, _ := json.Marshal(layoutProxy{NetNS: pod.Pod.Path, CPUPerRequest: cpuPerRequest,
		Listen:   net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)),
		Upstream: net.JoinHostPort("127.0.0.1", strconv.Itoa(servicePort))})
	startChild(t, layoutProxyEnv+"="+string(spec), proxyDir, 0)

	unshare := uintptr(unix.CLONE_NEWNS)
	if layout == layoutCgroupNS {
		unshare |= unix.CLONE_NEWCGROUP
	}
	spec, _ = json.Marshal(layoutProbe{Layout: layout, NetNS: pod.Pod.Path})
	probe := startChild(t, layoutProbeEnv+"="+string(spec), probeDir, unshare)
	r := &running{base: "http://" + probe.line}

	before, err := cpuStatUsage(proxyDir)
	if err != nil {
		t.Fatal(err)
	}
	probeBefore := r.cpuSeconds(t, proxyID)
	load, err := fixture.RunLoad(pod.Client, fixture.LoadOptions{
		URL: "http://" + net.JoinHostPort(fixture.PodAddr, strconv.Itoa(servicePort)) + "/",
		QPS: 200, Duration: 3 * time.Second, Connections: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if load.Errors != 0 {
		t.Fatalf("load %+v", load)
	}
	// The proxy's last slice is charged when it next switches out, and
	// samples come every 100ms: wait for the counter to settle.
	var got, prev float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		got = r.cpuSeconds(t, proxyID) - probeBefore
		if got > 0 && got == prev {
			break
		}
		prev = got
	}
	after, err := cpuStatUsage(proxyDir)
	if err != nil {
		t.Fatal(err)
	}
	want := (after - before).Seconds()
	t.Logf("%s: %d requests; proxy CPU: probe %.3fs, cgroup cpu.stat %.3fs (%.0f%%), configured %.3fs",
		layout, load.Requests, got, want, 100*got/want, (time.Duration(load.Requests) * cpuPerRequest).Seconds())
	if d := got - want; d > 0.05*want || d < -0.05*want {
		t.Errorf("probe accounted %.3fs to the proxy, its cgroup's cpu.stat %.3fs: more than 5%% apart", got, want)
	}

	var s api.Snapshot
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s = r.snapshot(t, "10s"); hasRole(s, "proxy") && hasRole(s, "probe") {
			break
		}
	}
	roles := map[string]api.ContainerCPU{}
	for _, c := range s.CPU {
		if c.Role != "" {
			roles[c.Role] = c
		}
		if c.CgroupID != probeID && c.CgroupID != proxyID {
			t.Errorf("cgroup %d accounted: not one of the pod's (probe %d, proxy %d)", c.CgroupID, probeID, proxyID)
		}
	}
	if c := roles["proxy"]; c.CgroupID != proxyID || c.Name != testConfig.ProxyContainer || c.Millicores <= 0 {
		t.Errorf("proxy %+v, want cgroup %d named %s", c, proxyID, testConfig.ProxyContainer)
	}
	if c := roles["probe"]; c.CgroupID != probeID {
		t.Errorf("probe %+v, want cgroup %d", c, probeID)
	}
	// What each layout lets the probe name.
	rel := strings.TrimPrefix(proxyDir, self.Mount)
	switch layout {
	case layoutHost:
		if c := roles["proxy"]; c.Cgroup != rel {
			t.Errorf("proxy cgroup path %q, want %q", c.Cgroup, rel)
		}
	case layoutNoCgroup2:
		if c := roles["probe"]; c.Cgroup != strings.TrimPrefix(probeDir, self.Mount) {
			t.Errorf("probe cgroup path %q, want its own from /proc/self/cgroup", c.Cgroup)
		}
		if !hasNote(s, "no cgroup v2 is mounted") {
			t.Errorf("notes %q lack the hybrid layout's", s.Notes)
		}
	case layoutCgroupNS:
		if !hasNote(s, "cgroup namespace") {
			t.Errorf("notes %q lack the cgroup namespace's", s.Notes)
		}
	}
}

func hasRole(s api.Snapshot, role string) bool {
	for _, c := range s.CPU {
		if c.Role == role {
			return true
		}
	}
	return false
}

func hasNote(s api.Snapshot, sub string) bool {
	for _, n := range s.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}
