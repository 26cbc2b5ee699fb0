package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fortio.org/log"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func runCmd(t *testing.T, ctx context.Context, args ...string) (stdout, stderr *bytes.Buffer, err error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := NewCmd(streams)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	// Options.Run points fortio's (global) log at the test's buffer.
	log.SetOutput(os.Stderr)
	return out, errOut, err
}

func TestCommandWritesResultFile(t *testing.T) {
	es, srv := newEcho(t, serviceTime)
	path := filepath.Join(t.TempDir(), "result.json")
	out, errOut, err := runCmd(t, context.Background(), "--url", srv.URL+"/", "--qps", "0", "-c", "2", "-n", "50", "--output", path, "--progress-interval", "0")
	if err != nil || ExitCode(err) != ExitOK {
		t.Fatalf("err %v, stderr %s", err, errOut)
	}
	if out.Len() != 0 {
		t.Errorf("stdout %q, want nothing: the result goes to the file", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, &r)
	if r.Requests != 50 || es.Requests() != 50 || r.Partial {
		t.Errorf("result %+v, server %d", r, es.Requests())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("result file mode %v %v", fi.Mode(), err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".result.json.*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	// Every stderr line is JSON; the last progress line is the load phase's final one.
	var last Progress
	sc := bufio.NewScanner(errOut)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("stderr line %q is not JSON", sc.Text())
		}
		if line["kind"] == KindProgress {
			_ = json.Unmarshal(sc.Bytes(), &last)
		}
	}
	if !last.Final || last.Phase != PhaseLoad || last.Requests != 50 {
		t.Errorf("last progress %+v", last)
	}
}

func TestCommandStdoutIsOneLine(t *testing.T) {
	_, srv := newEcho(t, 0)
	out, errOut, err := runCmd(t, context.Background(), "--url", srv.URL, "--protocol", "HTTP", "--qps", "0", "-n", "10", "-c", "1")
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var r Result
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &r) != nil || r.Kind != KindResult || r.Requests != 10 {
		t.Errorf("stdout %q", out)
	}
}

func TestCommandPartialExitCode(t *testing.T) {
	_, srv := newEcho(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, _, err := runCmd(t, ctx, "--url", srv.URL, "--duration", "1h")
	if ExitCode(err) != ExitPartial {
		t.Fatalf("err %v (exit %d), want exit %d", err, ExitCode(err), ExitPartial)
	}
	var r Result
	if json.Unmarshal(out.Bytes(), &r) != nil || !r.Partial {
		t.Errorf("stdout %q, want a partial result", out)
	}
}

func TestCommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},                                   // no --url
		{"--url", "http://x/", "--qps", "x"}, // not a number
		{"--url", "http://x/", "extra"},      // positional argument
		{"--url", "http://x/", "--log-level", "loud"},
		{"--url", "http://x/", "--output", ""},
		{"--url", "http://x/", "--no-such-flag"},
	} {
		_, _, err := runCmd(t, context.Background(), args...)
		if ExitCode(err) != ExitUsage {
			t.Errorf("%q: err %v (exit %d), want exit %d", args, err, ExitCode(err), ExitUsage)
		}
	}
}

func TestCommandBadOutputFailsFast(t *testing.T) {
	_, srv := newEcho(t, 0)
	es := srv.Config.Handler.(interface{ Requests() int64 })
	_, _, err := runCmd(t, context.Background(), "--url", srv.URL, "-n", "5", "--output", filepath.Join(t.TempDir(), "missing", "r.json"))
	if ExitCode(err) != ExitError || !strings.Contains(err.Error(), "cannot write the result") {
		t.Fatalf("err %v", err)
	}
	if es.Requests() != 0 {
		t.Errorf("%d requests sent before noticing the output cannot be written", es.Requests())
	}
}
