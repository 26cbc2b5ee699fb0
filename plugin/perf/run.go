// Package perf runs a performance test in the cluster: a load generator Job against a target,
// the probes' view of the target pods over the same window, and the SMPS documents of both.
package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// Spec is one requested run.
type Spec struct {
	Name      string
	Namespace string
	Target    Target
	// Baseline is a second target loaded the same way, without the proxy; nil for none.
	Baseline *Target
	Load     loadgen.Config
	Image    string
	Labels   map[string]string
	// OutputDir receives the documents; "" writes none (they are stored in the cluster anyway).
	OutputDir string
}

// Runner runs Specs.
type Runner struct {
	Client kubernetes.Interface
	// Status receives one line per step or progress update, for the user.
	Status io.Writer
	// ProbeParallel bounds concurrent snapshot reads.
	ProbeParallel int
}

// Outcome is what a run produced.
type Outcome struct {
	Record    *runstore.Record
	Documents Documents
	// Files are the paths written under Spec.OutputDir.
	Files    []string
	Overhead *smps.OverheadReport
}

func (r *Runner) statusf(format string, args ...any) {
	if r.Status != nil {
		fmt.Fprintf(r.Status, format+"\n", args...)
	}
}

// Run runs the spec. The run is recorded in the cluster before the load starts, so that it is
// listed even if this process dies; the record is completed at the end, including on Ctrl-C
// (ctx cancelled), where the partial result is kept and ErrInterrupted returned.
func (r *Runner) Run(ctx context.Context, spec Spec) (*Outcome, error) {
	store := runstore.Store{Client: r.Client}
	resolved, err := Resolve(ctx, r.Client, spec.Target, spec.Namespace, spec.Load.Protocol)
	if err != nil {
		return nil, err
	}
	var baseline *Resolved
	if spec.Baseline != nil {
		if baseline, err = Resolve(ctx, r.Client, *spec.Baseline, spec.Namespace, spec.Load.Protocol); err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
	}
	if resolved.Note != "" {
		r.statusf("note: %s", resolved.Note)
	}
	var unprobed []string
	for i := range resolved.Pods {
		if !probes.Probed(&resolved.Pods[i]) {
			unprobed = append(unprobed, resolved.Pods[i].Name)
		}
	}
	if len(unprobed) > 0 {
		r.statusf("warning: %d of %d target pods carry no probe (%v): only the client's view is reported for them; enable it with kubectl mesh probe enable -n %s --restart",
			len(unprobed), len(resolved.Pods), unprobed, spec.Namespace)
	}
	env, err := Environment(ctx, r.Client)
	if err != nil {
		return nil, err
	}

	load := spec.Load
	load.URL = resolved.URL
	rec := &runstore.Record{
		Name: spec.Name, Namespace: spec.Namespace, Status: runstore.Running,
		Target: spec.Target.Raw, URL: resolved.URL, Service: resolved.Service,
		Labels: spec.Labels, Job: spec.Name, Created: time.Now().UTC(),
		Spec: runstore.Spec{
			QPS: load.QPS, Connections: load.Connections, Duration: load.Duration.String(),
			Protocol: string(load.Protocol), PayloadSize: load.PayloadSize,
		},
	}
	if load.Warmup > 0 {
		rec.Spec.Warmup = load.Warmup.String()
	}
	if spec.Baseline != nil {
		rec.Spec.Baseline = spec.Baseline.Raw
	}
	for _, p := range resolved.Pods {
		rec.Pods = append(rec.Pods, p.Name)
	}
	if err := store.Create(ctx, rec); err != nil {
		return nil, err
	}
	r.statusf("run %s: %s at %s for %s (%d connections), recorded as configmap %s%s",
		rec.Name, load.URL, qpsString(load.QPS), load.Duration, load.Connections, runstore.RecordPrefix, rec.Name)

	// From here on the record must be completed whatever happens; a cancelled ctx must not stop
	// that, so the final writes use their own context.
	fail := func(err error) (*Outcome, error) {
		rec.Status, rec.Message = runstore.Failed, err.Error()
		bg, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if uerr := store.Update(bg, rec, nil); uerr != nil {
			r.statusf("warning: could not record the failure: %v", uerr)
		}
		return nil, err
	}

	job := JobSpec{Namespace: spec.Namespace, Name: spec.Name, Run: spec.Name, Image: spec.Image, Load: load}
	res, jobErr := runJob(ctx, r.Client, job, r.progress("load"), func(s string) { r.statusf("%s", s) })
	if res == nil {
		return fail(jobErr)
	}
	interrupted := errors.Is(jobErr, ErrInterrupted)
	start, end := startEnd(res)
	rec.Start, rec.End = &start, &end

	// The probes are read with a context of their own: after Ctrl-C the partial run's probe
	// view is still worth the few seconds it takes.
	pctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var overhead *smps.OverheadReport
	var snaps []probes.PodSnapshot
	if len(resolved.Pods)-len(unprobed) > 0 {
		overhead, snaps = r.collectProbes(pctx, rec, resolved.Pods, start, end)
	}

	var baseRes *loadgen.Result
	if baseline != nil && !interrupted {
		bl := load
		bl.URL = baseline.URL
		r.statusf("baseline: the same load against %s", baseline.URL)
		bjob := JobSpec{Namespace: spec.Namespace, Name: spec.Name + "-baseline", Run: spec.Name, Image: spec.Image, Load: bl}
		baseRes, err = runJob(ctx, r.Client, bjob, r.progress("baseline"), func(s string) { r.statusf("baseline: %s", s) })
		if err != nil {
			// The main run stands on its own; a failed baseline is reported, not fatal.
			r.statusf("warning: baseline run: %v", err)
			rec.Message = "baseline failed: " + err.Error()
			interrupted = interrupted || errors.Is(err, ErrInterrupted)
			if baseRes != nil && baseRes.Partial {
				baseRes = nil // a partial baseline compares unequal loads
			}
		}
	}
	if overhead == nil && baseRes != nil {
		overhead = smps.NewOverheadReport(rec.Name, start, end)
	}
	if overhead != nil && baseRes != nil {
		b := smps.NewBaseline(
			smps.PercentilesMs{P50: res.LatencyMs.P50, P90: res.LatencyMs.P90, P99: res.LatencyMs.P99},
			smps.PercentilesMs{P50: baseRes.LatencyMs.P50, P90: baseRes.LatencyMs.P90, P99: baseRes.LatencyMs.P99})
		overhead.Baseline = &b
	}

	mesh := DetectMesh(resolved.Pods)
	docs, err := BuildDocuments(Inputs{
		Record: rec, Load: load, Result: res, Baseline: baseRes, Mesh: mesh, Env: env, Overhead: overhead, Probes: snaps,
		TestID: string(uuid.NewUUID()), ResultID: string(uuid.NewUUID()), MeshConfigID: string(uuid.NewUUID()), EnvID: string(uuid.NewUUID()),
	})
	if err != nil {
		return fail(fmt.Errorf("building the SMPS documents: %w", err))
	}
	rec.Summary = Summarize(res, baseRes, overhead, len(resolved.Pods))
	switch {
	case res.Partial || interrupted:
		rec.Status = runstore.Partial
		if rec.Message == "" {
			rec.Message = "stopped early: the figures cover " + res.ActualDuration
		}
	default:
		rec.Status = runstore.Succeeded
	}
	if res.Errors > 0 && rec.Message == "" {
		rec.Message = fmt.Sprintf("%d of %d requests failed", res.Errors, res.Requests)
	}
	out := &Outcome{Record: rec, Documents: docs, Overhead: overhead}
	bg, cancelStore := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStore()
	storeErr := store.Update(bg, rec, storable(docs, r.statusf))
	if spec.OutputDir != "" {
		files, err := WriteFiles(spec.OutputDir, docs)
		out.Files = files
		if err != nil {
			return out, err
		}
	}
	if storeErr != nil {
		return out, fmt.Errorf("the run finished but could not be stored in the cluster: %w", storeErr)
	}
	if interrupted {
		return out, fmt.Errorf("%w: partial result stored", ErrInterrupted)
	}
	return out, nil
}

// progress prints the generator's progress lines.
func (r *Runner) progress(what string) func(loadgen.Progress) {
	return func(p loadgen.Progress) {
		final := ""
		if p.Final {
			final = " (done)"
		}
		r.statusf("%s %s: %5.1fs  %8d requests  %8.1f qps  %d errors%s", what, p.Phase, p.ElapsedSeconds, p.Requests, p.QPS, p.Errors, final)
	}
}

// probeWindow picks the shortest probe window that can cover [start, end]: a window ends on a
// slot boundary at or after end, so it covers the run if it is at least one slot longer.
func probeWindow(start, end time.Time) (window.Spec, bool) {
	d := end.Sub(start)
	for _, s := range window.Specs {
		if d+s.Slot <= s.Length {
			return s, true
		}
	}
	return window.Specs[len(window.Specs)-1], false
}

// coversRun: the snapshot's window has closed after the run's end, and the probe had decided
// every request that ended by then. A probe records a request when it pairs it, up to about
// 1.5 s after the request ended, into the slot of that moment: a window that merely ends after
// the run can miss the run's last requests (it did, 108 of 1103 at 100 qps, on a loaded lab).
// Probes older than decidedThrough get the window's end alone.
func coversRun(s *api.Snapshot, end time.Time) bool {
	if s.End.Before(end) {
		return false
	}
	return s.DecidedThrough == nil || !s.DecidedThrough.Before(end)
}

// collectProbes reads the target pods' probes over a window covering the run. A probe's window
// closes on its own slot boundaries, so each pod is read again until its window ends after the
// run's end and covers every request of it (see coversRun): at most two slots later.
func (r *Runner) collectProbes(ctx context.Context, rec *runstore.Record, pods []corev1.Pod, start, end time.Time) (*smps.OverheadReport, []probes.PodSnapshot) {
	spec, covers := probeWindow(start, end)
	if !covers {
		r.statusf("note: the run is longer than the probes' longest window; their figures cover its last %s", spec.Length)
	}
	r.statusf("reading %d probes (window %s, closes within %s of the run's end)", len(pods), spec.Name, 2*spec.Slot)
	parallel := r.ProbeParallel
	if parallel <= 0 {
		parallel = 16
	}
	deadline := time.Now().Add(2*spec.Slot + 15*time.Second)
	final := make([]probes.PodSnapshot, len(pods))
	pending := make([]int, len(pods))
	for i := range pods {
		pending[i] = i
	}
	for len(pending) > 0 {
		batch := make([]corev1.Pod, len(pending))
		for j, i := range pending {
			batch[j] = pods[i]
		}
		snaps := probes.Fetch(ctx, r.Client, batch, spec.Name, parallel)
		last := time.Now().After(deadline) || ctx.Err() != nil
		var next []int
		for j, i := range pending {
			s := snaps[j]
			final[i] = s
			if s.Probed && s.Err == nil && s.Snapshot != nil && !coversRun(s.Snapshot, end) && !last {
				next = append(next, i)
			}
		}
		pending = next
		if len(pending) == 0 || last {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	wstart, wend := start, end
	for _, s := range final {
		if s.Snapshot != nil {
			if s.Snapshot.Start.Before(wstart) {
				wstart = s.Snapshot.Start
			}
			if s.Snapshot.End.After(wend) {
				wend = s.Snapshot.End
			}
		}
	}
	return probes.ReportRun(rec.Name, wstart, wend, start, end, final), final
}

func qpsString(q float64) string {
	if q == 0 {
		return "max qps"
	}
	return fmt.Sprintf("%g qps", q)
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteFiles writes the documents into dir (created if needed), in DocumentOrder.
func WriteFiles(dir string, docs Documents) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the output directory: %w", err)
	}
	var files []string
	for _, name := range DocumentOrder {
		b, ok := docs[name]
		if !ok {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return files, fmt.Errorf("writing %s: %w", p, err)
		}
		files = append(files, p)
	}
	return files, nil
}

// maxStoredBytes keeps a stored run below the API server's 1 MiB object limit, with room for
// the record and the object's metadata.
const maxStoredBytes = 900 << 10

// storable drops the raw probe snapshots from what is stored in the cluster when the run would
// not fit (many pods): the files keep them, and the overhead report has every pod's figures.
func storable(docs Documents, statusf func(string, ...any)) Documents {
	total := 0
	for _, b := range docs {
		total += len(b)
	}
	if total <= maxStoredBytes {
		return docs
	}
	out := Documents{}
	for k, v := range docs {
		if k != DocProbes {
			out[k] = v
		}
	}
	statusf("note: %s (%d KiB) is too large to store in the cluster with the run; it is only in the output files", DocProbes, len(docs[DocProbes])>>10)
	return out
}
