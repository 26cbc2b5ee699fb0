package perf

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

func TestJobIsRestrictedAndUnprobed(t *testing.T) {
	j := JobSpec{Namespace: "demo", Name: "r1", Run: "r1", Image: "img", Load: loadgen.Config{
		URL: "http://echo.demo.svc:8080/", Protocol: loadgen.HTTP, QPS: 50, Connections: 2, Duration: 10 * time.Second, Warmup: time.Second,
	}}.job()
	pod := j.Spec.Template
	if pod.Labels[inject.LabelProbe] != inject.ValueDisabled || pod.Annotations[inject.AnnotationProbe] != inject.ValueDisabled {
		t.Errorf("the load generator must opt out of the probe: labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	if *j.Spec.BackoffLimit != 0 {
		t.Error("a retried run would measure a different run: backoffLimit must be 0")
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if !*pod.Spec.SecurityContext.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("not restricted: %+v %+v", pod.Spec.SecurityContext, sc)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--url=http://echo.demo.svc:8080/", "--qps=50", "--connections=2", "--duration=10s", "--warmup=1s", "--protocol=http"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if *j.Spec.ActiveDeadlineSeconds < 11 {
		t.Errorf("deadline %d shorter than the run", *j.Spec.ActiveDeadlineSeconds)
	}
}

func TestParseLog(t *testing.T) {
	log := `{"kind":"LoadProgress","phase":"warmup","elapsedSeconds":1,"requests":10,"qps":10}
{"level":"warn","msg":"something fortio says"}
{"kind":"LoadProgress","phase":"load","elapsedSeconds":2,"requests":20,"qps":10,"final":true}
{"kind":"LoadResult","requests":20,"actualQps":10,"latencyMs":{"p50":1.5}}
`
	var progress []loadgen.Progress
	res, lastErr, err := parseLog(strings.NewReader(log), func(p loadgen.Progress) { progress = append(progress, p) })
	if err != nil || res == nil || res.Requests != 20 || res.LatencyMs.P50 != 1.5 || lastErr != "" {
		t.Fatalf("parseLog = %+v, %q, %v", res, lastErr, err)
	}
	if len(progress) != 2 || !progress[1].Final || progress[0].Phase != loadgen.PhaseWarmup {
		t.Errorf("progress = %+v", progress)
	}

	failed := `{"level":"err","msg":"cannot connect"}
mesh-loadgen: dial tcp 10.96.0.5:8080: connect: connection refused
`
	res, lastErr, err = parseLog(strings.NewReader(failed), nil)
	if res != nil || err != nil || !strings.Contains(lastErr, "connection refused") {
		t.Errorf("parseLog(failed) = %v, %q, %v; want the generator's own last line", res, lastErr, err)
	}

	if _, _, err := parseLog(strings.NewReader(`{"kind":"LoadResult","requests":"many"}`+"\n"), nil); err == nil {
		t.Error("an unreadable result line must be an error, not a missing result")
	}
}

func TestProbeWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d      time.Duration
		window string
		covers bool
	}{
		{5 * time.Second, "10s", true},
		{9 * time.Second, "10s", true},
		{10 * time.Second, "1m", true},
		{50 * time.Second, "1m", true},
		{51 * time.Second, "10m", true},
		{9 * time.Minute, "10m", true},
		{20 * time.Minute, "10m", false},
	} {
		s, covers := probeWindow(t0, t0.Add(tc.d))
		if s.Name != tc.window || covers != tc.covers {
			t.Errorf("probeWindow(%s) = %s %v, want %s %v", tc.d, s.Name, covers, tc.window, tc.covers)
		}
	}
}

// A window covers the run once it has closed after the run's end and the probe had decided the
// run's last requests by then.
func TestCoversRun(t *testing.T) {
	end := time.Date(2026, 1, 1, 0, 0, 9, 500_000_000, time.UTC)
	at := func(s float64) *time.Time {
		v := end.Add(time.Duration(s * float64(time.Second)))
		return &v
	}
	for _, tc := range []struct {
		name    string
		snap    api.Snapshot
		covered bool
	}{
		{"closed before the end", api.Snapshot{End: *at(-0.5), DecidedThrough: at(-2)}, false},
		{"closed after the end, last requests undecided", api.Snapshot{End: *at(0.5), DecidedThrough: at(-0.75)}, false},
		{"closed after the end, all decided", api.Snapshot{End: *at(10.5), DecidedThrough: at(9.25)}, true},
		{"decided exactly through the end", api.Snapshot{End: *at(1), DecidedThrough: at(0)}, true},
		{"a probe that does not say", api.Snapshot{End: *at(0.5)}, true},
	} {
		if got := coversRun(&tc.snap, end); got != tc.covered {
			t.Errorf("%s: coversRun = %v, want %v", tc.name, got, tc.covered)
		}
	}
}

// FuzzParseLog: the generator's log comes from a pod; whatever it holds, parsing never panics
// and a result is only returned from a whole result line.
func FuzzParseLog(f *testing.F) {
	f.Add(`{"kind":"LoadProgress","phase":"load","requests":1}` + "\n" + `{"kind":"LoadResult","requests":2}` + "\n")
	f.Add("mesh-loadgen: boom\n")
	f.Add(`{"level":"err","msg":"x"}`)
	f.Fuzz(func(t *testing.T, log string) {
		res, _, _ := parseLog(strings.NewReader(log), func(loadgen.Progress) {})
		if res != nil && !strings.Contains(log, loadgen.KindResult) {
			t.Fatalf("a result from a log without a result line: %q", log)
		}
	})
}
