package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/htmlreport"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
)

// NewCmdPerf is `kubectl mesh perf`.
func NewCmdPerf(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Run load against a workload and read what its proxies cost; list, show and compare runs",
	}
	cmd.AddCommand(newCmdPerfRun(flags, streams), newCmdPerfList(flags, streams), newCmdPerfGet(flags, streams),
		newCmdPerfCompare(flags, streams), newCmdPerfDelete(flags, streams), newCmdPerfReport(flags, streams))
	return cmd
}

// PerfRunOptions are the options of `kubectl mesh perf run`.
type PerfRunOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams

	Target      string
	Baseline    string
	Name        string
	Labels      string
	QPS         float64
	Connections int
	Duration    time.Duration
	Warmup      time.Duration
	Protocol    string
	PayloadSize int
	Image       string
	OutputDir   string
	Output      string

	spec   perf.Spec
	client kubernetes.Interface
	now    func() time.Time
}

func newCmdPerfRun(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &PerfRunOptions{flags: flags, IOStreams: streams, now: time.Now}
	cmd := &cobra.Command{
		Use:   "run (svc/NAME:PORT[/path] | URL) [--qps N] [--connections N] [--duration D] [flags]",
		Short: "Load a workload from inside the cluster and record the client's and the probes' view as SMPS documents",
		Long: `perf run starts a load generator Job (fortio's library: uniform pacing, no catch-up, keep-alive)
in the target's namespace, shows its progress, then reads every target pod's probe over the run's
window through the API server's pod proxy, and writes the SMPS documents (test config, mesh config,
environment, result in milliseconds, a Meshery test config) and the per-pod overhead report.

The run is stored in the cluster (configmap mesh-perf-NAME) before the load starts and completed at
the end, so kubectl mesh perf list|get|compare find it from any machine. Ctrl-C stops the load
generator, keeps its partial result and exits with code 3.

--baseline TARGET loads a second target the same way after the first one, for the client-side
difference with and without the proxy: the same application deployed without a proxy, or a port the
mesh excludes from interception (traffic.sidecar.istio.io/excludeInboundPorts,
config.linkerd.io/skip-inbound-ports).`,
		Example: `  kubectl mesh perf run svc/echo:8080 -n demo --qps 200 --duration 30s
  kubectl mesh perf run svc/echo:http/api -n demo --baseline svc/echo-direct:8080 --name echo-vs-direct
  kubectl mesh perf run http://echo.demo.svc:8080/ --qps 0 --connections 16 --protocol http2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			return runOptions(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.QPS, "qps", 100, "requests per second over all connections; 0 for as fast as possible")
	f.IntVarP(&o.Connections, "connections", "c", 4, "concurrent connections")
	f.DurationVarP(&o.Duration, "duration", "t", 30*time.Second, "length of the measured phase")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured phase at the same rate before the measured one")
	f.StringVar(&o.Protocol, "protocol", "http", "http, http2 (h2c on http:// targets) or grpc (grpc.health.v1 Check)")
	f.IntVar(&o.PayloadSize, "payload-size", 0, "request body size in bytes (HTTP: sent as a POST)")
	f.StringVar(&o.Name, "name", "", "run name (default: the target's name and the time, e.g. echo-20261126-101500)")
	f.StringVar(&o.Labels, "labels", "", "labels of the run, k=v[,k=v]: on the stored run and the SMPS documents, for perf list -l")
	f.StringVar(&o.Baseline, "baseline", "", "a second target loaded the same way without the proxy, for the client-side difference")
	f.StringVar(&o.Image, "loadgen-image", perf.DefaultLoadgenImage, "load generator image")
	f.StringVar(&o.OutputDir, "output-dir", "kubectl-mesh-runs", "write the documents into DIR/NAME/; empty to write no files (the run is stored in the cluster anyway)")
	f.StringVarP(&o.Output, "output", "o", "table", "summary format: table, json or yaml (the run record)")
	return cmd
}

// Complete parses the target and builds the run's spec.
func (o *PerfRunOptions) Complete() error {
	// The command line is checked before the kubeconfig is read: a typo is a usage error
	// whatever the state of the cluster.
	t, err := perf.ParseTarget(o.Target)
	if err != nil {
		return usageError{err}
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	o.spec = perf.Spec{
		Namespace: ns, Target: t, Image: o.Image,
		Load: loadgen.Config{
			Protocol: loadgen.Protocol(strings.ToLower(o.Protocol)), QPS: o.QPS, Connections: o.Connections,
			Duration: o.Duration, Warmup: o.Warmup, PayloadSize: o.PayloadSize, ProgressInterval: time.Second,
		},
	}
	if o.Baseline != "" {
		b, err := perf.ParseTarget(o.Baseline)
		if err != nil {
			return usageError{fmt.Errorf("--baseline: %w", err)}
		}
		o.spec.Baseline = &b
	}
	if o.Labels != "" {
		set, err := labels.ConvertSelectorToLabelsMap(o.Labels)
		if err != nil {
			return usageError{fmt.Errorf("--labels %q: %v (write k=v[,k=v])", o.Labels, err)}
		}
		o.spec.Labels = set
	}
	o.spec.Name = o.Name
	if o.spec.Name == "" {
		o.spec.Name = defaultRunName(t, o.now())
	}
	if o.OutputDir != "" {
		o.spec.OutputDir = filepath.Join(o.OutputDir, o.spec.Name)
	}
	_, o.client, err = clusterClient(o.flags)
	return err
}

// defaultRunName is the target's name and the time, within the allowed length.
func defaultRunName(t perf.Target, now time.Time) string {
	base := t.Service
	if base == "" && t.URL != nil {
		base = strings.SplitN(t.URL.Hostname(), ".", 2)[0]
	}
	base = strings.Trim(strings.ToLower(base), "-")
	stamp := now.UTC().Format("20060102-150405")
	if max := runstore.MaxNameLength - len(stamp) - 1; len(base) > max {
		base = strings.TrimRight(base[:max], "-")
	}
	if base == "" || runstore.ValidateName(base+"-"+stamp) != nil {
		base = "run"
	}
	return base + "-" + stamp
}

// Validate rejects bad flags before anything is created.
func (o *PerfRunOptions) Validate() error {
	load := o.spec.Load
	load.URL = "http://validate.invalid/" // the real URL is known once the target is resolved
	if load.Protocol == loadgen.GRPC {
		load.URL = "grpc://validate.invalid:1"
	}
	errs := []error{load.Validate(), runstore.ValidateName(o.spec.Name)}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup must not be negative, got %s", o.Warmup))
	}
	if strings.TrimSpace(o.Image) == "" {
		errs = append(errs, errors.New("--loadgen-image must not be empty"))
	}
	if _, err := parseOutput(o.Output); err != nil {
		errs = append(errs, err)
	}
	for k, v := range o.spec.Labels {
		if err := validateLabel(k, v); err != nil {
			errs = append(errs, fmt.Errorf("--labels: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run runs the load and prints the summary.
func (o *PerfRunOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.client); err != nil {
		return err
	}
	runner := &perf.Runner{Client: o.client, Status: o.ErrOut}
	out, err := runner.Run(ctx, o.spec)
	if out == nil {
		return err
	}
	format, _ := parseOutput(o.Output)
	if perr := printRun(o.Out, format, out.Record, out.Overhead); perr != nil && err == nil {
		err = perr
	}
	if o.spec.OutputDir != "" && len(out.Files) > 0 {
		path := filepath.Join(o.spec.OutputDir, reportFile)
		if rerr := writeReport(path, out.Record, out.Documents); rerr != nil {
			fmt.Fprintf(o.ErrOut, "warning: HTML report: %v\n", rerr)
		} else {
			out.Files = append(out.Files, path)
		}
	}
	for _, f := range out.Files {
		fmt.Fprintf(o.ErrOut, "wrote %s\n", f)
	}
	return err
}

// reportFile is the HTML report's name beside a run's documents.
const reportFile = "report.html"

// writeReport renders the run's HTML report into path, atomically.
func writeReport(path string, rec *runstore.Record, docs map[string][]byte) error {
	var b bytes.Buffer
	if err := htmlreport.Render(&b, rec, docs); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newCmdPerfReport is `kubectl mesh perf report NAME`.
func newCmdPerfReport(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "report NAME [--file PATH]",
		Short:   "Write a stored run's HTML report: latency histograms with and without the proxy, and inside the pods",
		Example: "  kubectl mesh perf report echo-20261126-101500 -n demo --file echo.html",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, cs, err := namespacedClient(flags)
			if err != nil {
				return err
			}
			rec, docs, err := runstore.Store{Client: cs}.Get(cmd.Context(), ns, args[0])
			if err != nil {
				return perf.ExplainForbidden(err, "get configmaps", ns)
			}
			if file == "" {
				file = rec.Name + ".html"
			}
			if err := writeReport(file, rec, docs); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "wrote %s\n", file)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "where to write the report (default NAME.html)")
	return cmd
}

// newCmdPerfList is `kubectl mesh perf list`.
func newCmdPerfList(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var all bool
	var selector, output string
	cmd := &cobra.Command{
		Use:   "list [-n NS | -A] [-l selector]",
		Short: "List the stored runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := parseOutput(output)
			if err != nil {
				return usageError{err}
			}
			if _, err := labels.Parse(selector); err != nil {
				return usageError{fmt.Errorf("-l %q: %v", selector, err)}
			}
			ns, cs, err := namespacedClient(flags)
			if err != nil {
				return err
			}
			if all {
				ns = ""
			}
			runs, err := runstore.Store{Client: cs}.List(cmd.Context(), ns, selector)
			if err != nil {
				return perf.ExplainForbidden(err, "list configmaps", ns)
			}
			for i := range runs {
				runs[i].Status = effectiveStatus(cmd.Context(), cs, &runs[i])
			}
			return printRunList(streams.Out, format, runs, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list runs in all namespaces")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector over the runs' --labels")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or yaml")
	return cmd
}

// newCmdPerfGet is `kubectl mesh perf get NAME`.
func newCmdPerfGet(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var output, show, outDir string
	cmd := &cobra.Command{
		Use:   "get NAME [-o table|json|yaml] [--show DOCUMENT] [--output-dir DIR]",
		Short: "Show a stored run, print one of its documents, or write them all to files",
		Example: "  kubectl mesh perf get echo-20261126-101500 -n demo\n" +
			"  kubectl mesh perf get echo-20261126-101500 -n demo --show " + perf.DocResult + "\n" +
			"  kubectl mesh perf get echo-20261126-101500 -n demo --output-dir ./results",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := parseOutput(output)
			if err != nil {
				return usageError{err}
			}
			ns, cs, err := namespacedClient(flags)
			if err != nil {
				return err
			}
			rec, docs, err := runstore.Store{Client: cs}.Get(cmd.Context(), ns, args[0])
			if err != nil {
				return perf.ExplainForbidden(err, "get configmaps", ns)
			}
			rec.Status = effectiveStatus(cmd.Context(), cs, rec)
			if show != "" {
				b, ok := docs[show]
				if !ok {
					return fmt.Errorf("run %s has no document %s; it has: %s", rec.Name, show, strings.Join(docNames(docs), ", "))
				}
				_, err := streams.Out.Write(b)
				return err
			}
			if outDir != "" {
				files, err := perf.WriteFiles(filepath.Join(outDir, rec.Name), docs)
				for _, f := range files {
					fmt.Fprintf(streams.ErrOut, "wrote %s\n", f)
				}
				return err
			}
			return printRun(streams.Out, format, rec, overheadOf(docs))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or yaml (the run record)")
	cmd.Flags().StringVar(&show, "show", "", "print this stored document instead (e.g. "+perf.DocResult+", "+perf.DocOverhead+")")
	cmd.Flags().StringVar(&outDir, "output-dir", "", "write every document of the run into DIR/NAME/")
	return cmd
}

// newCmdPerfCompare is `kubectl mesh perf compare A B`.
func newCmdPerfCompare(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "compare RUN_A RUN_B",
		Short:   "Compare two stored runs side by side (B - A and B / A)",
		Example: "  kubectl mesh perf compare echo-no-mesh echo-istio -n demo\n  kubectl mesh perf compare demo/echo-a other/echo-b",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := parseOutput(output)
			if err != nil {
				return usageError{err}
			}
			ns, cs, err := namespacedClient(flags)
			if err != nil {
				return err
			}
			var recs [2]*runstore.Record
			for i, a := range args {
				rns, name := ns, a
				if before, after, ok := strings.Cut(a, "/"); ok {
					rns, name = before, after
				}
				if recs[i], _, err = (runstore.Store{Client: cs}).Get(cmd.Context(), rns, name); err != nil {
					return perf.ExplainForbidden(err, "get configmaps", rns)
				}
				if recs[i].Summary == nil {
					return fmt.Errorf("run %s/%s has no result (%s): nothing to compare", rns, name, recs[i].Status)
				}
			}
			return printCompare(streams.Out, format, recs[0], recs[1])
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or yaml")
	return cmd
}

// newCmdPerfDelete is `kubectl mesh perf delete NAME...`.
func newCmdPerfDelete(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete stored runs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, cs, err := namespacedClient(flags)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if err := (runstore.Store{Client: cs}).Delete(cmd.Context(), ns, name); err != nil {
					errs = append(errs, perf.ExplainForbidden(err, "delete configmaps", ns))
					continue
				}
				fmt.Fprintf(streams.Out, "run %s deleted\n", name)
			}
			return errors.Join(errs...)
		},
	}
}

// namespacedClient is the namespace the flags select and a client of a cluster that answers.
func namespacedClient(flags *genericclioptions.ConfigFlags) (string, kubernetes.Interface, error) {
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", nil, fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	_, cs, err := clusterClient(flags)
	if err != nil {
		return "", nil, err
	}
	return ns, cs, checkReachable(cs)
}

func docNames(docs map[string][]byte) []string {
	var names []string
	for _, n := range perf.DocumentOrder {
		if _, ok := docs[n]; ok {
			names = append(names, n)
		}
	}
	return names
}

// output formats of the perf commands.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
	outputYAML  outputFormat = "yaml"
)

func parseOutput(s string) (outputFormat, error) {
	switch f := outputFormat(strings.ToLower(s)); f {
	case outputTable, outputJSON, outputYAML:
		return f, nil
	case "yml":
		return outputYAML, nil
	case "wide", "":
		return outputTable, nil
	}
	return "", fmt.Errorf("-o %q: use table, json or yaml", s)
}
