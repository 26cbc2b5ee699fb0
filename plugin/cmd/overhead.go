package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// overheadWatchInterval is how often --watch redraws: the probes' shortest window advances by
// one-second slots, and two seconds keeps 200 pods' reads well apart.
const overheadWatchInterval = 2 * time.Second

// OverheadOptions are the options of `kubectl mesh overhead`.
type OverheadOptions struct {
	flags         *genericclioptions.ConfigFlags
	AllNamespaces bool
	Selector      string
	Window        string
	Watch         bool
	Output        string
	Parallel      int
	genericiooptions.IOStreams

	namespace string
	selector  labels.Selector
	client    kubernetes.Interface
	// interval is overheadWatchInterval; tests shorten it.
	interval time.Duration
	now      func() time.Time
}

// NewCmdOverhead is `kubectl mesh overhead`.
func NewCmdOverhead(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &OverheadOptions{flags: flags, IOStreams: streams, interval: overheadWatchInterval, now: time.Now}
	cmd := &cobra.Command{
		Use:   "overhead [-n NAMESPACE | -A] [-l SELECTOR] [--window 1m] [--watch] [-o table|json|yaml]",
		Short: "Show the latency and CPU the mesh's proxies add, per pod and per namespace, from the probes",
		Long: `Show what the mesh's proxies cost right now, as the probes in the pods measured it over the last
window (10s, 1m or 10m): requests per second, the latency the proxy added (p50, p90, p99, in ms),
the proxy's CPU (millicores) and its CPU time per 1000 requests, then the same per namespace, where
latency percentiles are over all the pods' requests together (merged histograms, not averages).

Probes are read through the API server's pod proxy (RBAC: get pods/proxy), several at a time
(--parallel). Pods without the probe are listed as "no probe" (enable it with kubectl mesh probe
enable); a probe that cannot be read is listed as "unreachable: <why>" or "failed: <why>", and a
probe that lost events or covers only part of the window as "degraded: <why>".

-o json and -o yaml print the OverheadReport document (kubectl-mesh.io/v1alpha1) instead.
--watch redraws every 2 seconds until Ctrl-C; when the output is not a terminal, successive tables
(or documents) follow each other, separated by a blank line (or "---" for YAML).

Exit status: 0 once the figures are printed, whatever the probes' health: an unhealthy, unreachable
or missing probe is a row of the table, not an error. 1 when the figures cannot be had at all: the
cluster is unreachable, listing pods is forbidden, or no pod matches. 2 for bad flags.`,
		Example: "  kubectl mesh overhead -n shop\n" +
			"  kubectl mesh overhead -A --window 10s --watch\n" +
			"  kubectl mesh overhead -n shop -l app=checkout -o yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if o.Watch {
				// Ctrl-C is how a watch ends: a normal end, not a failure.
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
				defer stop()
			}
			return runOptions(ctx, o)
		},
	}
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "show the pods of every namespace")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "only pods matching this label selector (e.g. app=checkout)")
	cmd.Flags().StringVar(&o.Window, "window", "1m", "the probes' window: "+strings.Join(window.Names(), ", "))
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "redraw every 2 seconds until Ctrl-C")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().IntVar(&o.Parallel, "parallel", probes.DefaultParallel, "probes read at once")
	return cmd
}

// Complete resolves the namespace and builds the client (no request is made).
func (o *OverheadOptions) Complete() error {
	if !o.AllNamespaces {
		ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return fmt.Errorf("cannot load kubeconfig: %w", err)
		}
		o.namespace = ns
	}
	if o.interval <= 0 {
		o.interval = overheadWatchInterval
	}
	if o.now == nil {
		o.now = time.Now
	}
	var err error
	_, o.client, err = clusterClient(o.flags)
	return err
}

// Validate checks the flags before the cluster is asked anything.
func (o *OverheadOptions) Validate() error {
	if _, ok := window.Lookup(o.Window); !ok {
		return usageError{fmt.Errorf("--window %q: use one of %s", o.Window, strings.Join(window.Names(), ", "))}
	}
	switch o.Output {
	case "", "table", "json", "yaml":
	default:
		return usageError{fmt.Errorf("--output %q: use table, json or yaml", o.Output)}
	}
	if o.Parallel < 1 {
		return usageError{fmt.Errorf("--parallel must be at least 1, got %d", o.Parallel)}
	}
	sel, err := labels.Parse(o.Selector)
	if err != nil {
		return usageError{fmt.Errorf("--selector %q: %v", o.Selector, err)}
	}
	o.selector = sel
	return nil
}

// Run prints the figures once, or until ctx ends with --watch.
func (o *OverheadOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.client); err != nil {
		return err
	}
	if !o.Watch {
		var buf bytes.Buffer
		if err := o.round(ctx, &buf); err != nil {
			return err
		}
		_, err := o.Out.Write(buf.Bytes())
		return err
	}
	tty := isTerminal(o.Out)
	for i := 0; ; i++ {
		// Drawn into a buffer first: the screen is cleared and redrawn in one write.
		var buf bytes.Buffer
		err := o.round(ctx, &buf)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && i == 0:
			return err // nothing shown yet: the command cannot work
		case err != nil:
			// Later rounds keep watching through a transient failure (an API server restart).
			fmt.Fprintf(o.ErrOut, "%s: %v\n", o.now().Format(time.TimeOnly), err)
		case tty:
			fmt.Fprintf(o.Out, "\x1b[H\x1b[2J%s  every %s, window %s (Ctrl-C to stop)\n\n%s", o.now().Format(time.TimeOnly), o.interval, o.Window, buf.Bytes())
		default:
			if i > 0 {
				sep := "\n"
				if o.Output == "yaml" {
					sep = "---\n"
				}
				fmt.Fprint(o.Out, sep)
			}
			_, _ = o.Out.Write(buf.Bytes())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

// round lists the pods, reads their probes and writes the result to w.
func (o *OverheadOptions) round(ctx context.Context, w io.Writer) error {
	pods, err := o.listPods(ctx)
	if err != nil {
		return err
	}
	snaps := probes.Fetch(ctx, o.client, pods, o.Window, o.Parallel)
	if err := ctx.Err(); err != nil {
		return err
	}
	spec, _ := window.Lookup(o.Window)
	start, end := o.now().Add(-spec.Length), o.now()
	first := true
	for _, s := range snaps {
		if s.Snapshot == nil {
			continue
		}
		if first || s.Snapshot.Start.Before(start) {
			start = s.Snapshot.Start
		}
		if first || s.Snapshot.End.After(end) {
			end = s.Snapshot.End
		}
		first = false
	}
	report := probes.Report("overhead-"+strings.ToLower(end.UTC().Format("20060102T150405Z")), start, end, snaps)
	switch o.Output {
	case "json":
		return smps.Encode(w, report, smps.JSON)
	case "yaml":
		return smps.Encode(w, report, smps.YAML)
	}
	return printOverheadTable(w, snaps, report)
}

func (o *OverheadOptions) listPods(ctx context.Context) ([]corev1.Pod, error) {
	ns := o.namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	list, err := o.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: o.selector.String()})
	where := "namespace " + ns
	check := "-n " + ns
	if o.AllNamespaces {
		where, check = "any namespace", "-A"
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			hint := ""
			if o.AllNamespaces {
				hint = "; or name one namespace with -n"
			}
			return nil, fmt.Errorf("permission denied: cannot list pods in %s (check: kubectl auth can-i list pods %s%s)", where, check, hint)
		}
		return nil, fmt.Errorf("cannot list pods in %s: %w", where, err)
	}
	// Finished pods (completed Jobs, such as perf runs' load generators) carry no traffic and
	// never had a probe: listing them as "no probe" would only bury the pods that matter.
	pods := slices.DeleteFunc(list.Items, func(p corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if len(pods) == 0 {
		msg := "no running pods found in " + where
		if !o.selector.Empty() {
			msg += " matching -l " + o.selector.String()
		}
		return nil, errors.New(msg)
	}
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	return pods, nil
}

// isTerminal: a character device, which is what a terminal is on every platform kubectl runs
// on. (/dev/null is one too; clearing it does no harm.)
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printOverheadTable writes a row per pod, in the order of snaps, then a row per namespace.
func printOverheadTable(w io.Writer, snaps []probes.PodSnapshot, r *smps.OverheadReport) error {
	byPod := map[string]*smps.PodOverhead{}
	for i := range r.Pods {
		byPod[r.Pods[i].Namespace+"/"+r.Pods[i].Name] = &r.Pods[i]
	}
	byNS := map[string]*smps.NamespaceOverhead{}
	for i := range r.Namespaces {
		byNS[r.Namespaces[i].Namespace] = &r.Namespaces[i]
	}
	type nsRow struct {
		pods   int
		health map[string]int
	}
	var nsOrder []string
	nsRows := map[string]*nsRow{}

	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tRPS\tP50(ms)\tP90(ms)\tP99(ms)\tPROXY CPU(m)\tCPU ms/1k REQ\tPROBE")
	for _, s := range snaps {
		if s.Pod == nil {
			continue
		}
		ns := s.Pod.Namespace
		row := nsRows[ns]
		if row == nil {
			row = &nsRow{health: map[string]int{}}
			nsRows[ns] = row
			nsOrder = append(nsOrder, ns)
		}
		row.pods++
		po := byPod[ns+"/"+s.Pod.Name]
		var stats *smps.OverheadStats
		var probe string
		switch {
		case !s.Probed:
			probe = "no probe"
		case s.Err != nil && isFailure(s.Err):
			probe = "failed: " + s.Err.Error()
		case s.Err != nil:
			probe = "unreachable: " + s.Err.Error()
		case po == nil:
			probe = "failed: not in the report"
		default:
			stats = &po.OverheadStats
			probe = string(po.Probe.Status)
			if po.Probe.Message != "" {
				probe += ": " + po.Probe.Message
			}
			if po.Note != "" {
				probe += "; " + po.Note
			}
		}
		row.health[healthWord(probe)]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ns, s.Pod.Name, statsColumns(stats, probe))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NAMESPACE\tPODS\tRPS\tP50(ms)\tP90(ms)\tP99(ms)\tPROXY CPU(m)\tCPU ms/1k REQ\tPROBES")
	sort.Strings(nsOrder)
	for _, ns := range nsOrder {
		row := nsRows[ns]
		var stats *smps.OverheadStats
		if no := byNS[ns]; no != nil {
			stats = &no.OverheadStats
		}
		var parts []string
		for _, word := range []string{"ok", "degraded", "failed", "unreachable", "no probe"} {
			if n := row.health[word]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, word))
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", ns, row.pods, statsColumns(stats, strings.Join(parts, ", ")))
	}
	return tw.Flush()
}

// isFailure: the probe answered, but not usefully; anything else kept it from answering.
func isFailure(err error) bool { return errors.Is(err, probes.ErrBadAnswer) }

func healthWord(probe string) string {
	for _, w := range []string{"ok", "degraded", "failed", "unreachable", "no probe"} {
		if probe == w || strings.HasPrefix(probe, w+":") || strings.HasPrefix(probe, w+";") {
			return w
		}
	}
	return probe
}

func statsColumns(s *smps.OverheadStats, last string) string {
	dash := func(f *float64, format string) string {
		if f == nil {
			return "-"
		}
		return fmt.Sprintf(format, *f)
	}
	rps, p50, p90, p99, cpu, per1k := "-", "-", "-", "-", "-", "-"
	if s != nil {
		rps = fmt.Sprintf("%.1f", s.RPS)
		if l := s.ProxyAddedLatencyMs; l != nil {
			p50, p90, p99 = fmt.Sprintf("%.3f", l.P50), fmt.Sprintf("%.3f", l.P90), fmt.Sprintf("%.3f", l.P99)
		}
		cpu = dash(s.ProxyCPUMillicores, "%.1f")
		per1k = dash(s.ProxyCPUMsPer1000Requests, "%.1f")
	}
	return strings.Join([]string{rps, p50, p90, p99, cpu, per1k, last}, "\t")
}
