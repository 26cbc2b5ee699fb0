package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar/account"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar/redirect"
)

// The pod's ports, Istio's numbers.
const (
	appPort   = "8080"
	proxyPort = "15006"
	adminPort = "15000"
)

// TestSidecarInPod runs the sidecar as a pod would: init installs the REDIRECT in the pod's
// network namespace (twice: it must be idempotent), the application listens on every address,
// the proxy runs as its own process, and a client in a second namespace across a veth pair
// sends requests to the application's port. They must all reach the proxy (its own count), each
// held at least the configured delay and CPU cost; loopback traffic inside the pod must not be
// redirected; uninstall must remove the table and with it the capture.
func TestSidecarInPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test creates network namespaces and installs nftables rules in them")
	}
	pod := fixture.NewTestPod(t)

	// Listening on every address, as applications do: only the redirect sends clients' requests
	// to the proxy instead, so the proxy's count proves the capture.
	app, err := fixture.StartApp(pod.Pod, ":"+appPort, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })

	for i := range 2 {
		runChild(t, pod.Pod, "init", "--app-port", appPort, "--proxy-port", proxyPort)
		exists, rules := installed(t, pod.Pod)
		if !exists || rules != 2 {
			t.Fatalf("after init #%d: table exists %t with %d rules, want it with 2 (loopback return, one redirect)", i+1, exists, rules)
		}
	}
	if nft, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", pod.Pod.Name, nft, "list", "table", "inet", redirect.Table).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		for _, want := range []string{"hook prerouting priority dstnat", `iifname "lo" return`, "tcp dport 8080 redirect to :15006"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("nft lists no %q:\n%s", want, out)
			}
		}
	}

	const delay, cpu = time.Millisecond, 200 * time.Microsecond
	stop := startProxy(t, pod.Pod, "--listen", ":"+proxyPort, "--upstream", "127.0.0.1:"+appPort,
		"--delay", delay.String(), "--cpu-per-request", cpu.String(), "--admin", ":"+adminPort)
	defer stop()

	client := httpClient(pod.Client)
	appURL := "http://" + net.JoinHostPort(fixture.PodAddr, appPort) + "/"
	adminURL := "http://" + net.JoinHostPort(fixture.PodAddr, adminPort)
	const n = 20
	get(t, client, appURL, n)

	s := statsOnce(t, client, adminURL+"/stats?list=true", n)
	if s.Requests != n || s.TotalRequests != n || s.Errors != 0 {
		t.Fatalf("proxy saw %d requests (%d in total, %d errors: %s), want %d: not everything went through it",
			s.Requests, s.TotalRequests, s.Errors, s.LastError, n)
	}
	floor := float64(delay+cpu) / float64(time.Millisecond)
	for _, r := range s.Samples {
		// The request path holds the delay, then burns the CPU (at least as long in wall time).
		if r.RequestMs < floor || r.TotalMs < floor {
			t.Errorf("a residence of %.3f ms (request path %.3f ms) is below the configured %.3f ms", r.TotalMs, r.RequestMs, floor)
		}
	}
	if s.Residence.P50 < floor || s.Config.RequestDelayMs != 1 || s.Config.CPUPerRequestMs != 0.2 {
		t.Errorf("p50 %.3f ms, configured delay %.3f ms and CPU %.3f ms", s.Residence.P50, s.Config.RequestDelayMs, s.Config.CPUPerRequestMs)
	}
	if want := float64(n) * cpu.Seconds(); s.CPU.SinceResetSeconds < want {
		t.Errorf("proxy CPU %.4fs since start, want at least %.4fs for %d requests", s.CPU.SinceResetSeconds, want, n)
	}
	t.Logf("%d requests through the sidecar: residence p50 %.3f ms p99 %.3f ms (request path p50 %.3f ms, response path %.3f ms), proxy CPU %.1f ms",
		s.Requests, s.Residence.P50, s.Residence.P99, s.RequestPath.P50, s.ResponsePath.P50, s.CPU.SinceResetSeconds*1e3)

	// A window by time, then a reset.
	mark := time.Now()
	get(t, client, appURL, 5)
	if s := statsOnce(t, client, adminURL+"/stats?since="+mark.UTC().Format(time.RFC3339Nano), n+5); s.Requests != 5 || s.TotalRequests != n+5 {
		t.Errorf("since %s: %d requests (%d in total), want 5 (%d)", mark, s.Requests, s.TotalRequests, n+5)
	}
	resp, err := client.Post(adminURL+"/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := stats(t, client, adminURL+"/stats"); resp.StatusCode != http.StatusNoContent || s.Requests != 0 {
		t.Errorf("after reset: status %d, %d requests", resp.StatusCode, s.Requests)
	}

	// The pod talking to itself, by loopback and by its own address (routed over lo), is not
	// captured: the proxy's own connections to the application are such traffic.
	inPod := httpClient(pod.Pod)
	get(t, inPod, "http://127.0.0.1:"+appPort+"/", 3)
	get(t, inPod, appURL, 3)
	if s := stats(t, client, adminURL+"/stats"); s.TotalRequests != n+5 {
		t.Errorf("in-pod requests went through the proxy: %d in total, want %d", s.TotalRequests, n+5)
	}

	runChild(t, pod.Pod, "init", "--uninstall")
	if exists, _ := installed(t, pod.Pod); exists {
		t.Fatal("table still there after --uninstall")
	}
	runChild(t, pod.Pod, "init", "--uninstall") // absent already: still fine
	client.CloseIdleConnections()               // an established connection keeps its NAT
	get(t, client, appURL, 3)
	if s := stats(t, client, adminURL+"/stats"); s.TotalRequests != n+5 {
		t.Errorf("after uninstall requests still reach the proxy: %d in total, want %d", s.TotalRequests, n+5)
	}
}

// runChild runs this test binary as mesh-sidecar inside ns and waits for it.
func runChild(t *testing.T, ns *fixture.Netns, args ...string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mesh-sidecar %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// startProxy starts the proxy as its own process in ns, waits until its admin endpoint answers,
// and returns what stops it: SIGTERM, then SIGKILL, by its PID.
func startProxy(t *testing.T, ns *fixture.Netns, args ...string) (stop func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(exe, append([]string{"proxy"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("proxy %d ignored SIGTERM; killed. Its log:\n%s", cmd.Process.Pid, logs.String())
		}
	}
	healthz := "http://" + net.JoinHostPort(fixture.PodAddr, adminPort) + "/healthz"
	c := httpClient(ns)
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("proxy exited: %v; its log:\n%s", err, logs.String())
		default:
		}
		if resp, err := c.Get(healthz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop
			}
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("proxy not ready in 10s; its log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func installed(t *testing.T, ns *fixture.Netns) (exists bool, rules int) {
	t.Helper()
	if err := ns.Do(func() (err error) {
		exists, rules, err = redirect.Installed()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return exists, rules
}

// httpClient connects from inside ns, keeping one connection alive as a mesh's clients do.
func httpClient(ns *fixture.Netns) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return ns.Dial(addr) },
			// One idle connection per host: requests share a keep-alive connection.
			MaxIdleConnsPerHost: 1,
		},
	}
}

func get(t *testing.T, c *http.Client, url string, n int) {
	t.Helper()
	for range n {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello from the app") {
			t.Fatalf("GET %s: %d %q", url, resp.StatusCode, body)
		}
	}
}

// statsOnce reads the proxy's stats once it has recorded total requests, or after 5 s: the
// proxy records a request after the client has its answer, so a read right after the last
// response can miss it.
func statsOnce(t *testing.T, c *http.Client, url string, total int) account.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := stats(t, c, url)
		if s.TotalRequests >= uint64(total) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stats(t *testing.T, c *http.Client, url string) account.Stats {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var s account.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", url, err))
	}
	return s
}
