package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/echo"
	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
)

// TestSIGTERMWritesPartialResult builds the real binary, starts an endless run
// against a loopback server, stops it the way Kubernetes stops a pod, and
// checks that the partial result was written and the exit code says so.
func TestSIGTERMWritesPartialResult(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mesh-loadgen")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	es := &echo.Server{ServiceTime: time.Millisecond}
	srv := httptest.NewServer(es)
	defer srv.Close()

	resultPath := filepath.Join(dir, "result.json")
	cmd := exec.Command(bin, "--url", srv.URL+"/", "--qps", "100", "-c", "2", "--duration", "1h",
		"--progress-interval", "50ms", "--output", resultPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := false
	defer func() {
		if !exited { // a failed test must not leave the process behind
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}()

	// Wait until the load phase has answered requests, then send SIGTERM.
	sc := bufio.NewScanner(stderr)
	signalled := false
	for sc.Scan() {
		var p loadgen.Progress
		if json.Unmarshal(sc.Bytes(), &p) != nil || p.Kind != loadgen.KindProgress {
			continue
		}
		if !signalled && p.Phase == loadgen.PhaseLoad && p.Requests >= 10 {
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	if !signalled {
		t.Fatal("the run never reported progress")
	}
	err = cmd.Wait()
	exited = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != loadgen.ExitPartial {
		t.Fatalf("exit: %v, want exit code %d", err, loadgen.ExitPartial)
	}

	b, err := os.ReadFile(resultPath)
	if err != nil {
		t.Fatal(err)
	}
	var r loadgen.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Partial || r.PartialReason == "" || r.Requests < 10 || r.Codes["200"] != r.Requests {
		t.Errorf("result partial %v (%q) requests %d codes %v", r.Partial, r.PartialReason, r.Requests, r.Codes)
	}
	// Every measured request reached the server, plus one warm-up request per
	// connection; none was lost by stopping.
	if es.Requests() != r.Requests+int64(r.Connections) {
		t.Errorf("server answered %d, result has %d (+%d warm-up)", es.Requests(), r.Requests, r.Connections)
	}
	if r.LatencyMs.Min < 1 {
		t.Errorf("min latency %g ms is below the 1 ms service time", r.LatencyMs.Min)
	}
	// A built binary knows the fortio module's version.
	if !regexp.MustCompile(`^fortio \d+\.\d+\.\d+$`).MatchString(r.Generator) {
		t.Errorf("generator %q", r.Generator)
	}
}
