package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
)

func meshList() string { return strings.Join(meshes.Names(), "|") }

// explicitNamespace is -n when given on the command line, "" otherwise (the kubeconfig's
// namespace is not where a control plane goes).
func explicitNamespace(flags *genericclioptions.ConfigFlags) string {
	if flags.Namespace != nil {
		return *flags.Namespace
	}
	return ""
}

// MeshInstallOptions are the options of `kubectl mesh install`.
type MeshInstallOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams

	Mesh          string
	Version       string
	Set           []string
	Files         []string
	ChartRepo     string
	Chart         string
	PlainHTTP     bool
	With          []string
	GatewayAPI    bool
	TakeOwnership bool
	Wait          bool
	Timeout       time.Duration

	mesh      meshes.Mesh
	namespace string
	values    meshes.ChartValues
	inst      *meshes.Installer
}

// NewCmdInstall is `kubectl mesh install`.
func NewCmdInstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &MeshInstallOptions{flags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "install " + meshList() + " [--version V] [--set k=v] [-f values.yaml] [--chart-repo URL | --chart DIR|oci://REF] [--wait] [--timeout 5m]",
		Short: "Install or upgrade a service mesh from its official Helm charts",
		Long: `install installs a mesh's charts in order, each as a Helm release (Istio: base, [cni], istiod,
[gateway]; Linkerd: linkerd-crds, linkerd-control-plane, with a trust anchor and issuer generated
here). Running it again with the same version and values changes nothing; another version or other
values upgrade. The control plane goes to the mesh's namespace (istio-system, linkerd) or -n.

--set and -f apply to every chart of the mesh; prefix them with a chart's name to aim at one
(--set istiod:pilot.resources.requests.cpu=100m, -f linkerd-control-plane:values.yaml).
--chart DIR takes the charts from a directory (NAME/ or NAME-VERSION.tgz, e.g. from helm pull) and
--chart oci://REGISTRY/PATH from an OCI registry (PATH/NAME), for air-gapped clusters.

--wait shows what is not ready and why while waiting: an image that cannot be pulled, a crashing
container and its last log lines, a pod the scheduler cannot place.`,
		Example: `  kubectl mesh install istio
  kubectl mesh install istio --version 1.28.0 --with gateway --set istiod:pilot.resources.requests.cpu=200m
  kubectl mesh install linkerd --gateway-api
  kubectl mesh install linkerd --version edge-25.11.3 --chart ./charts          # air-gapped: helm pull'ed charts
  kubectl mesh install istio --chart oci://registry.internal/istio-charts --version 1.28.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Mesh = args[0]
			return runOptions(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Version, "version", "", "chart version (default: the latest); the same as the mesh's version (Linkerd: edge-25.11.3 or 2025.11.3)")
	f.StringArrayVar(&o.Set, "set", nil, "a chart value, k=v (repeatable; CHART:k=v for one chart)")
	f.StringArrayVarP(&o.Files, "values", "f", nil, "a values file (repeatable; CHART:FILE for one chart)")
	f.StringVar(&o.ChartRepo, "chart-repo", "", "chart repository URL (default: the mesh's official one)")
	f.StringVar(&o.Chart, "chart", "", "take the charts from a local directory or an oci:// reference instead of a repository")
	f.BoolVar(&o.PlainHTTP, "plain-http", false, "talk to the --chart OCI registry over HTTP")
	f.StringSliceVar(&o.With, "with", nil, "optional charts to install too (Istio: cni, gateway)")
	f.BoolVar(&o.GatewayAPI, "gateway-api", false, "install the Gateway API CRDs if the mesh needs them and they are missing (Linkerd)")
	f.BoolVar(&o.TakeOwnership, "take-ownership", false, "adopt objects that exist without Helm ownership (left by another installation)")
	f.BoolVar(&o.Wait, "wait", true, "wait until every workload of the mesh is ready, showing what is not and why")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for each chart")
	return cmd
}

// Complete finds the mesh and connects to the cluster.
func (o *MeshInstallOptions) Complete() error {
	m, err := meshes.Lookup(o.Mesh)
	if err != nil {
		return usageError{err}
	}
	o.mesh = m
	if _, err := meshes.ChartsFor(m, o.With); err != nil {
		return usageError{err}
	}
	o.values = meshes.ChartValues{Files: o.Files, Set: o.Set}
	o.namespace = explicitNamespace(o.flags)
	o.inst, err = meshes.NewInstaller(o.flags, o.ErrOut)
	if err != nil {
		return err
	}
	o.inst.Timeout, o.inst.TakeOwnership = o.Timeout, o.TakeOwnership
	return nil
}

// Validate checks the flags.
func (o *MeshInstallOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if o.Chart != "" && o.ChartRepo != "" {
		return errors.New("--chart and --chart-repo exclude each other")
	}
	if o.ChartRepo != "" {
		u, err := url.Parse(o.ChartRepo)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--chart-repo %q: want an http(s) URL", o.ChartRepo)
		}
	}
	if o.Chart != "" && !strings.HasPrefix(o.Chart, "oci://") {
		if st, err := os.Stat(o.Chart); err != nil || !st.IsDir() {
			return fmt.Errorf("--chart %q: want a directory of charts or an oci:// reference", o.Chart)
		}
	}
	return o.values.Validate(o.mesh)
}

// Run installs or upgrades each chart in order, waiting for each one's workloads when asked.
func (o *MeshInstallOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.inst.Client); err != nil {
		return err
	}
	if err := o.checkOtherInstalls(ctx); err != nil {
		return err
	}
	steps, err := o.inst.Plan(ctx, o.mesh, o.namespace, o.With)
	if err != nil {
		return err
	}
	var charts []meshes.Chart
	for _, s := range steps {
		charts = append(charts, s.Chart)
	}
	mainNS := steps[0].Namespace
	env := meshes.Env{Client: o.inst.Client, Dynamic: o.inst.Dynamic, Namespace: mainNS, Charts: charts, GatewayAPI: o.GatewayAPI}
	src := meshes.Source{RepoURL: o.ChartRepo, Location: o.Chart, PlainHTTP: o.PlainHTTP}
	version := o.mesh.ChartVersion(o.Version)
	changed := false
	for _, step := range steps {
		ch, err := o.inst.LoadChart(o.mesh, step.Chart, src, version)
		if err != nil {
			return err
		}
		// The charts of a mesh share a version: the first one's, when none was asked for.
		version = ch.Metadata.Version
		user, err := o.values.For(o.mesh, step.Chart)
		if err != nil {
			return usageError{err}
		}
		prev, err := o.inst.Previous(step)
		if err != nil {
			return err
		}
		var prevValues map[string]any
		if prev != nil {
			prevValues = prev.Config
		}
		own, err := o.mesh.Values(ctx, env, step.Chart, user, prevValues)
		if err != nil {
			return err
		}
		labels := o.mesh.NamespaceLabels(step.Namespace)
		if step.Namespace != mainNS {
			labels = nil
		}
		if err := o.inst.EnsureNamespace(ctx, step.Namespace, labels); err != nil {
			return fmt.Errorf("namespace %s: %w", step.Namespace, err)
		}
		res, err := o.inst.InstallChart(ctx, step, ch, meshes.MergeValues(own, user), o.mesh.ConflictHint)
		if err != nil {
			return err
		}
		switch res.Outcome {
		case meshes.Unchanged:
			fmt.Fprintf(o.Out, "%s: unchanged, chart %s %s already installed in %s (revision %d)\n", step.Chart.Release, step.Chart.Name, res.To, step.Namespace, res.Revision)
		case meshes.Upgraded:
			changed = true
			fmt.Fprintf(o.Out, "%s: upgraded chart %s %s -> %s in %s (revision %d)\n", step.Chart.Release, step.Chart.Name, res.From, res.To, step.Namespace, res.Revision)
		default:
			changed = true
			fmt.Fprintf(o.Out, "%s: installed chart %s %s in %s (revision %d)\n", step.Chart.Release, step.Chart.Name, res.To, step.Namespace, res.Revision)
		}
		if o.Wait {
			if err := waitWorkloads(ctx, o.inst.Client, res.Workloads, o.Timeout, o.Out); err != nil {
				return fmt.Errorf("%s %s: %w", o.mesh.Name(), step.Chart.Release, err)
			}
		}
	}
	if !changed {
		fmt.Fprintf(o.Out, "%s %s was already installed in %s: nothing changed\n", o.mesh.Name(), version, mainNS)
	} else {
		fmt.Fprintf(o.Out, "%s %s is installed in %s\n", o.mesh.Name(), version, mainNS)
	}
	if o.Wait {
		fmt.Fprintf(o.Out, "all workloads are ready; opt a namespace in with: kubectl mesh inject enable -n NAMESPACE --mesh %s\n", o.mesh.Name())
	}
	return nil
}

// checkOtherInstalls refuses to install over a control plane of the same mesh that another tool
// (istioctl, the linkerd CLI, a Helm release of another name) installed: two installers would
// fight over the same cluster-wide objects.
func (o *MeshInstallOptions) checkOtherInstalls(ctx context.Context) error {
	if o.TakeOwnership {
		return nil
	}
	cps, err := meshes.DetectMesh(ctx, o.inst.Client, o.mesh)
	if err != nil {
		return fmt.Errorf("looking for an existing %s: %w", o.mesh.Name(), err)
	}
	for _, cp := range cps {
		if meshes.OwnedBy(o.mesh, cp) {
			continue
		}
		return fmt.Errorf("%s %s is already installed in %s by %s: upgrade it with the tool that installed it, or remove it first; --take-ownership makes Helm adopt its objects instead",
			cp.Mesh, cp.Version, cp.Namespace, cp.InstalledBy)
	}
	return nil
}

// MeshUninstallOptions are the options of `kubectl mesh uninstall`.
type MeshUninstallOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	Mesh     string
	KeepCRDs bool
	Timeout  time.Duration

	mesh meshes.Mesh
	inst *meshes.Installer
}

// NewCmdUninstall is `kubectl mesh uninstall`.
func NewCmdUninstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &MeshUninstallOptions{flags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "uninstall " + meshList() + " [--keep-crds]",
		Short: "Remove a mesh that kubectl mesh install installed (its Helm releases, last chart first)",
		Long: `uninstall removes the mesh's Helm releases in reverse order, and the namespaces install created once
they hold no release. The CRDs go too, and with them every custom resource of the mesh, unless
--keep-crds: then they stay, and a later install adopts them again.

Workloads keep their injected proxies until they are restarted; disable injection first
(kubectl mesh inject disable). A mesh installed by istioctl or the linkerd CLI is left alone.`,
		Example: "  kubectl mesh uninstall istio\n  kubectl mesh uninstall linkerd --keep-crds",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Mesh = args[0]
			return runOptions(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.KeepCRDs, "keep-crds", false, "keep the mesh's CRDs and custom resources")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long uninstall hooks may take")
	return cmd
}

// Complete finds the mesh and connects.
func (o *MeshUninstallOptions) Complete() error {
	m, err := meshes.Lookup(o.Mesh)
	if err != nil {
		return usageError{err}
	}
	o.mesh = m
	o.inst, err = meshes.NewInstaller(o.flags, o.ErrOut)
	if err != nil {
		return err
	}
	o.inst.Timeout = o.Timeout
	return nil
}

// Validate checks the flags.
func (o *MeshUninstallOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	return nil
}

// Run removes the releases.
func (o *MeshUninstallOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.inst.Client); err != nil {
		return err
	}
	removed, err := o.inst.Uninstall(ctx, o.mesh, explicitNamespace(o.flags), o.KeepCRDs)
	for _, r := range removed {
		fmt.Fprintf(o.Out, "%s: removed release of chart version %s from %s\n", r.Release, r.Version, r.Namespace)
		if len(r.KeptCRDs) > 0 {
			fmt.Fprintf(o.Out, "%s: kept %d CRDs: %s\n", r.Release, len(r.KeptCRDs), strings.Join(r.KeptCRDs, ", "))
		}
	}
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		fmt.Fprintf(o.Out, "%s removed\n", o.mesh.Name())
		return nil
	}
	cps, err := meshes.DetectMesh(ctx, o.inst.Client, o.mesh)
	if err != nil {
		return err
	}
	for _, cp := range cps {
		if !meshes.OwnedBy(o.mesh, cp) {
			return fmt.Errorf("%s %s in %s was installed by %s, not by kubectl mesh install: remove it with that tool", cp.Mesh, cp.Version, cp.Namespace, cp.InstalledBy)
		}
	}
	fmt.Fprintf(o.Out, "%s is not installed: nothing to remove\n", o.mesh.Name())
	return nil
}

// MeshStatusOptions are the options of `kubectl mesh status`.
type MeshStatusOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	Output string

	client kubernetes.Interface
}

// NewCmdStatus is `kubectl mesh status`.
func NewCmdStatus(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &MeshStatusOptions{flags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "status [-o table|json|yaml]",
		Short: "Show the meshes installed (by any tool), their health, injected workloads per namespace and the probe",
		Long: `status finds every mesh's control planes from the cluster's objects, whoever installed them (kubectl
mesh, Helm, istioctl, the linkerd CLI), with their version and health, explains components that are
not ready, and counts per namespace the pods carrying each mesh's proxy and kubectl-mesh's probe.
It exits with code 1 when a control plane is not ready.`,
		Example: "  kubectl mesh status\n  kubectl mesh status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOptions(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table, json or yaml")
	return cmd
}

// Complete connects.
func (o *MeshStatusOptions) Complete() error {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	// Status sends its lists at once; client-go's default 5 requests/s would queue them.
	cfg.QPS, cfg.Burst = 50, 100
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// Validate checks the flags.
func (o *MeshStatusOptions) Validate() error {
	switch o.Output {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: want table, json or yaml", o.Output)
}

// Run collects and prints.
func (o *MeshStatusOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.client); err != nil {
		return err
	}
	st, err := meshes.Collect(ctx, o.client, statusTrouble)
	if err != nil {
		return err
	}
	switch o.Output {
	case "json":
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(o.Out, string(b))
	case "yaml":
		b, err := yaml.Marshal(st)
		if err != nil {
			return err
		}
		fmt.Fprint(o.Out, string(b))
	default:
		printStatus(o, st)
	}
	var sick []string
	for _, cp := range st.ControlPlanes {
		if !cp.Healthy() {
			sick = append(sick, cp.Mesh+" in "+cp.Namespace)
		}
	}
	if len(sick) > 0 {
		return fmt.Errorf("control plane not ready: %s", strings.Join(sick, ", "))
	}
	return nil
}

func printStatus(o *MeshStatusOptions, st *meshes.Status) {
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	if len(st.ControlPlanes) == 0 {
		fmt.Fprintf(w, "no service mesh found (kubectl mesh install %s)\n", meshList())
	} else {
		fmt.Fprintln(w, "MESH\tNAMESPACE\tVERSION\tINSTALLED BY\tREADY\tCOMPONENTS")
		for _, cp := range st.ControlPlanes {
			ready := "yes"
			if !cp.Healthy() {
				ready = "no"
			}
			var comps []string
			for _, c := range cp.Components {
				comps = append(comps, fmt.Sprintf("%s %d/%d", c.Name, c.ReadyN, c.Want))
			}
			name := cp.Mesh
			if cp.Revision != "" && cp.Revision != "default" {
				name += " (" + cp.Revision + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", name, cp.Namespace, cp.Version, cp.InstalledBy, ready, strings.Join(comps, ", "))
		}
	}
	w.Flush()
	for _, cp := range st.ControlPlanes {
		for _, c := range cp.Components {
			if c.Problem != "" {
				fmt.Fprintf(o.Out, "  %s/%s: %s %s %d/%d ready: %s\n", cp.Mesh, cp.Namespace, c.Kind, c.Name, c.ReadyN, c.Want, c.Problem)
			}
		}
		for _, n := range cp.Notes {
			fmt.Fprintf(o.Out, "  %s/%s: %s\n", cp.Mesh, cp.Namespace, n)
		}
	}
	p := st.Probe
	switch {
	case !p.Installed:
		fmt.Fprintln(o.Out, "probe: not installed (kubectl mesh probe install)")
	default:
		line := fmt.Sprintf("probe: mesh-webhook %d/%d ready in %s", p.Ready, p.Want, p.Namespace)
		if p.Problem != "" {
			line += ": " + p.Problem
		}
		if len(p.Namespaces) > 0 {
			line += "; opted-in namespaces: " + strings.Join(p.Namespaces, ", ")
		}
		fmt.Fprintln(o.Out, line)
	}
	if len(st.Namespaces) == 0 {
		fmt.Fprintln(o.Out, "no namespace has injection enabled or meshed pods")
		return
	}
	names := meshes.Names()
	fmt.Fprintln(o.Out)
	w = tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	head := "NAMESPACE\tINJECTION\tPODS"
	for _, n := range names {
		head += "\t" + strings.ToUpper(n)
	}
	fmt.Fprintln(w, head+"\tPROBE")
	for _, ns := range st.Namespaces {
		var inj []string
		for m, how := range ns.Injection {
			inj = append(inj, m+" ("+how+")")
		}
		sort.Strings(inj)
		if ns.ProbeEnabled {
			inj = append(inj, "probe")
		}
		if len(inj) == 0 {
			inj = []string{"-"}
		}
		line := fmt.Sprintf("%s\t%s\t%d", ns.Name, strings.Join(inj, ", "), ns.Pods)
		for _, n := range names {
			line += fmt.Sprintf("\t%d", ns.Meshed[n])
		}
		fmt.Fprintf(w, "%s\t%d\n", line, ns.Probed)
	}
	w.Flush()
}

// MeshInjectOptions are the options of `kubectl mesh inject enable|disable`.
type MeshInjectOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	Enable bool
	Mesh   string

	mesh      meshes.Mesh
	namespace string
	client    kubernetes.Interface
}

// NewCmdInject is `kubectl mesh inject`.
func NewCmdInject(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Turn a mesh's proxy injection on or off for a namespace, with the mesh's own label or annotation",
	}
	for _, enable := range []bool{true, false} {
		o := &MeshInjectOptions{flags: flags, IOStreams: streams, Enable: enable}
		use, short := "disable", "Remove the mesh's injection setting from the namespace"
		if enable {
			use, short = "enable", "Set the mesh's injection setting on the namespace (Istio: label istio-injection=enabled; Linkerd: annotation linkerd.io/inject=enabled)"
		}
		sub := &cobra.Command{
			Use:     use + " -n NAMESPACE [--mesh " + meshList() + "]",
			Short:   short,
			Long:    short + ". Pods created afterwards get the proxy; restart running workloads for them to get it (kubectl rollout restart). --mesh may be left out when one mesh is installed.",
			Example: "  kubectl mesh inject " + use + " -n demo --mesh istio",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runOptions(cmd.Context(), o)
			},
		}
		sub.Flags().StringVar(&o.Mesh, "mesh", "", "the mesh ("+meshList()+"); default: the only one installed")
		cmd.AddCommand(sub)
	}
	return cmd
}

// Complete resolves the namespace and connects.
func (o *MeshInjectOptions) Complete() error {
	if o.Mesh != "" {
		m, err := meshes.Lookup(o.Mesh)
		if err != nil {
			return usageError{err}
		}
		o.mesh = m
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	o.namespace = ns
	_, o.client, err = clusterClient(o.flags)
	return err
}

// Validate checks the flags.
func (o *MeshInjectOptions) Validate() error {
	if o.namespace == "" {
		return errors.New("say which namespace with -n")
	}
	return nil
}

// Run sets or removes the setting.
func (o *MeshInjectOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.client); err != nil {
		return err
	}
	if o.mesh == nil {
		var found []string
		for _, m := range meshes.All() {
			cps, err := meshes.DetectMesh(ctx, o.client, m)
			if err != nil {
				return err
			}
			if len(cps) > 0 {
				found = append(found, m.Name())
				o.mesh = m
			}
		}
		if len(found) != 1 {
			if len(found) == 0 {
				found = []string{"none"}
			}
			return usageError{fmt.Errorf("say which mesh with --mesh %s (installed: %s)", meshList(), strings.Join(found, ", "))}
		}
	}
	ns, err := o.client.CoreV1().Namespaces().Get(ctx, o.namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s not found", o.namespace)
	}
	if err != nil {
		return err
	}
	inj := o.mesh.Injection()
	if o.Enable {
		for _, other := range meshes.All() {
			if other.Name() == o.mesh.Name() {
				continue
			}
			if on, how := other.Injection().EnabledOn(ns); on {
				return fmt.Errorf("namespace %s already has %s injection on (%s): two meshes' proxies in one pod do not work; run kubectl mesh inject disable -n %s --mesh %s first",
					o.namespace, other.Name(), how, o.namespace, other.Name())
			}
		}
	}
	var value any // nil removes the key in a merge patch
	if o.Enable {
		value = inj.Value
	}
	field := "labels"
	if inj.Annotation {
		field = "annotations"
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{field: map[string]any{inj.Key: value}}})
	ns, err = o.client.CoreV1().Namespaces().Patch(ctx, o.namespace, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	if o.Enable {
		fmt.Fprintf(o.Out, "namespace %s: %s injection enabled (%s); restart its workloads for running pods to get the proxy (kubectl -n %s rollout restart deployment)\n",
			o.namespace, o.mesh.Name(), inj, o.namespace)
		return nil
	}
	fmt.Fprintf(o.Out, "namespace %s: %s injection disabled (%s removed); restart its workloads to remove the proxy from running pods\n", o.namespace, o.mesh.Name(), inj)
	if on, how := inj.EnabledOn(ns); on {
		fmt.Fprintf(o.Out, "note: injection is still on through %s, which kubectl mesh does not remove\n", how)
	}
	return nil
}
