package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// printObject writes v as indented JSON or as YAML.
func printObject(w io.Writer, format outputFormat, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == outputYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}

func ms(f float64) string { return fmt.Sprintf("%.3f", f) }

func msPtr(f *float64) string {
	if f == nil {
		return "-"
	}
	return ms(*f)
}

// printRun shows one run: the record as a summary, then the probes' per-pod view.
func printRun(w io.Writer, format outputFormat, rec *runstore.Record, o *smps.OverheadReport) error {
	if format != outputTable {
		return printObject(w, format, rec)
	}
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "Run:\t%s (namespace %s)\n", rec.Name, rec.Namespace)
	fmt.Fprintf(tw, "Status:\t%s\n", rec.Status)
	if rec.Message != "" {
		fmt.Fprintf(tw, "Message:\t%s\n", rec.Message)
	}
	fmt.Fprintf(tw, "Target:\t%s -> %s\n", rec.Target, rec.URL)
	load := fmt.Sprintf("%s qps requested, %d connections, %s, %s", qps(rec.Spec.QPS), rec.Spec.Connections, rec.Spec.Duration, rec.Spec.Protocol)
	if rec.Spec.Warmup != "" {
		load += ", warmup " + rec.Spec.Warmup
	}
	fmt.Fprintf(tw, "Load:\t%s\n", load)
	if rec.Start != nil && rec.End != nil {
		fmt.Fprintf(tw, "Measured:\t%s to %s\n", rec.Start.Format(time.RFC3339), rec.End.Format(time.RFC3339))
	}
	if s := rec.Summary; s != nil {
		fmt.Fprintf(tw, "Requests:\t%d (%d errors), %.1f qps achieved\n", s.Requests, s.Errors, s.ActualQPS)
		fmt.Fprintf(tw, "Client latency:\tp50 %s  p90 %s  p99 %s ms\n", ms(s.ClientP50), ms(s.ClientP90), ms(s.ClientP99))
		if s.BaselineP50 != nil {
			fmt.Fprintf(tw, "Baseline latency:\tp50 %s  p90 %s  p99 %s ms (%s)\n", msPtr(s.BaselineP50), msPtr(s.BaselineP90), msPtr(s.BaselineP99), rec.Spec.Baseline)
			fmt.Fprintf(tw, "Client difference:\tp50 %+.3f  p90 %+.3f  p99 %+.3f ms (with - without the proxy)\n",
				s.ClientP50-*s.BaselineP50, s.ClientP90-*s.BaselineP90, s.ClientP99-*s.BaselineP99)
		}
		switch {
		case s.ProxyAddedP50 != nil:
			fmt.Fprintf(tw, "Proxy added (probes):\tp50 %s  p90 %s  p99 %s ms\n", msPtr(s.ProxyAddedP50), msPtr(s.ProxyAddedP90), msPtr(s.ProxyAddedP99))
		case s.Probed > 0:
			fmt.Fprintf(tw, "Proxy added (probes):\tnone: no proxy in the target pods\n")
		default:
			fmt.Fprintf(tw, "Proxy added (probes):\tunknown: no probe answered\n")
		}
		if s.ProxyCPUMillicores != nil {
			fmt.Fprintf(tw, "Proxy CPU:\t%.1f millicores over the probes' window\n", *s.ProxyCPUMillicores)
		}
		fmt.Fprintf(tw, "Probes:\t%d of %d target pods\n", s.Probed, s.Pods)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if o == nil || len(o.Pods) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "POD\tPROBE\tREQUESTS\tADDED P50\tP90\tP99 (ms)\tPROXY CPU/1K REQ (ms)\tNOTE")
	for _, p := range o.Pods {
		added := []string{"-", "-", "-"}
		if t := p.ProxyAddedLatencyMs; t != nil {
			added = []string{ms(t.P50), ms(t.P90), ms(t.P99)}
		}
		note := p.Note
		if note == "" {
			note = p.Probe.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Probe.Status, p.Requests, added[0], added[1], added[2], msPtr(p.ProxyCPUMsPer1000Requests), note)
	}
	return tw.Flush()
}

func qps(q float64) string {
	if q == 0 {
		return "max"
	}
	return fmt.Sprintf("%g", q)
}

// printRunList shows runs one per line.
func printRunList(w io.Writer, format outputFormat, runs []runstore.Record, allNamespaces bool) error {
	if format != outputTable {
		if runs == nil {
			runs = []runstore.Record{}
		}
		return printObject(w, format, map[string]any{"apiVersion": runstore.APIVersion, "kind": "PerfRunList", "items": runs})
	}
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "No runs found.")
		return err
	}
	tw := printers.GetNewTabWriter(w)
	head := "NAME\tSTATUS\tTARGET\tQPS\tP50 (ms)\tP99 (ms)\tPROXY ADDED P50\tAGE"
	if allNamespaces {
		head = "NAMESPACE\t" + head
	}
	fmt.Fprintln(tw, head)
	for _, r := range runs {
		achieved, p50, p99, added := "-", "-", "-", "-"
		if s := r.Summary; s != nil {
			achieved = fmt.Sprintf("%.0f/%s", s.ActualQPS, qps(r.Spec.QPS))
			p50, p99 = ms(s.ClientP50), ms(s.ClientP99)
			added = msPtr(s.ProxyAddedP50)
			if s.ProxyAddedP50 == nil && s.Probed > 0 {
				added = "none"
			}
		}
		age := "-"
		if !r.Created.IsZero() {
			age = duration.HumanDuration(time.Since(r.Created))
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Name, r.Status, r.Target, achieved, p50, p99, added, age)
		if allNamespaces {
			line = r.Namespace + "\t" + line
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// comparison is one row of perf compare.
type comparison struct {
	Metric string   `json:"metric"`
	A      *float64 `json:"a"`
	B      *float64 `json:"b"`
	// Difference is B - A; Ratio B / A.
	Difference *float64 `json:"difference"`
	Ratio      *float64 `json:"ratio"`
}

func compareRows(a, b *runstore.Summary) []comparison {
	f := func(v float64) *float64 { return &v }
	rows := []struct {
		name string
		a, b *float64
	}{
		{"requests", f(float64(a.Requests)), f(float64(b.Requests))},
		{"errors", f(float64(a.Errors)), f(float64(b.Errors))},
		{"qps achieved", f(a.ActualQPS), f(b.ActualQPS)},
		{"client p50 (ms)", f(a.ClientP50), f(b.ClientP50)},
		{"client p90 (ms)", f(a.ClientP90), f(b.ClientP90)},
		{"client p99 (ms)", f(a.ClientP99), f(b.ClientP99)},
		{"proxy added p50 (ms)", a.ProxyAddedP50, b.ProxyAddedP50},
		{"proxy added p90 (ms)", a.ProxyAddedP90, b.ProxyAddedP90},
		{"proxy added p99 (ms)", a.ProxyAddedP99, b.ProxyAddedP99},
		{"proxy cpu (millicores)", a.ProxyCPUMillicores, b.ProxyCPUMillicores},
	}
	var out []comparison
	for _, r := range rows {
		c := comparison{Metric: r.name, A: r.a, B: r.b}
		if r.a != nil && r.b != nil {
			c.Difference = f(*r.b - *r.a)
			if *r.a != 0 {
				c.Ratio = f(*r.b / *r.a)
			}
		}
		out = append(out, c)
	}
	return out
}

func printCompare(w io.Writer, format outputFormat, a, b *runstore.Record) error {
	rows := compareRows(a.Summary, b.Summary)
	if format != outputTable {
		return printObject(w, format, map[string]any{"a": a.Namespace + "/" + a.Name, "b": b.Namespace + "/" + b.Name, "rows": rows})
	}
	num := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", *v), "0"), ".")
	}
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "METRIC\tA: %s\tB: %s\tB - A\tB / A\n", a.Name, b.Name)
	for _, r := range rows {
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *r.Ratio)
		}
		diff := "-"
		if r.Difference != nil {
			diff = fmt.Sprintf("%+.3f", *r.Difference)
			diff = strings.TrimSuffix(strings.TrimRight(diff, "0"), ".")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Metric, num(r.A), num(r.B), diff, ratio)
	}
	if a.Spec.QPS != b.Spec.QPS || a.Spec.Connections != b.Spec.Connections || a.Spec.Protocol != b.Spec.Protocol || a.Spec.PayloadSize != b.Spec.PayloadSize {
		fmt.Fprintf(tw, "\nnote: the loads differ (A: %s qps, %d connections, %s; B: %s qps, %d connections, %s)\n",
			qps(a.Spec.QPS), a.Spec.Connections, a.Spec.Protocol, qps(b.Spec.QPS), b.Spec.Connections, b.Spec.Protocol)
	}
	return tw.Flush()
}

// overheadOf decodes a stored overhead document, nil when absent or unreadable.
func overheadOf(docs map[string][]byte) *smps.OverheadReport {
	b, ok := docs[perf.DocOverhead]
	if !ok {
		return nil
	}
	var o smps.OverheadReport
	if err := smps.Decode(bytes.NewReader(b), &o); err != nil {
		return nil
	}
	return &o
}

// effectiveStatus reports Abandoned for a Running record whose load generator is gone: the
// plugin that ran it died before writing the result.
func effectiveStatus(ctx context.Context, cs kubernetes.Interface, r *runstore.Record) runstore.Status {
	if r.Status != runstore.Running || r.Job == "" {
		return r.Status
	}
	j, err := cs.BatchV1().Jobs(r.Namespace).Get(ctx, r.Job, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return runstore.Abandoned
	}
	if err != nil {
		return r.Status
	}
	if j.Status.CompletionTime != nil || j.Status.Failed > 0 {
		return runstore.Abandoned
	}
	return r.Status
}

func validateLabel(k, v string) error {
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return fmt.Errorf("label key %q: %s", k, errs[0])
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return fmt.Errorf("label %s value %q: %s", k, v, errs[0])
	}
	return nil
}
