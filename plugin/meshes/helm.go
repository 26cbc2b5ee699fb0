package meshes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/registry"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/Masterminds/semver/v3"

	"github.com/kubectl-mesh/kubectl-mesh/internal/apply"
)

// Labels and annotations kubectl-mesh writes.
const (
	// LabelManagedBy marks the namespaces kubectl-mesh created for a control plane, which
	// uninstall removes again once no Helm release is left in them.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "kubectl-mesh"
	// AnnotationKeptFrom marks a CRD that `uninstall --keep-crds` left behind: NAMESPACE/RELEASE
	// of the release it belonged to, which the next install of that release adopts again.
	AnnotationKeptFrom = "kubectl-mesh.io/kept-from-release"

	helmReleaseName      = "meta.helm.sh/release-name"
	helmReleaseNamespace = "meta.helm.sh/release-namespace"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Source says where charts come from: a chart repository (the mesh's official one by default),
// a local directory or an OCI registry, for air-gapped clusters.
type Source struct {
	// RepoURL is a chart repository serving index.yaml; "" for the mesh's official one.
	RepoURL string
	// Location is a local directory holding the charts (unpacked NAME/ or packaged
	// NAME-VERSION.tgz) or an oci:// reference under which each chart is NAME. It wins over
	// RepoURL.
	Location string
	// PlainHTTP talks to an OCI registry over HTTP.
	PlainHTTP bool
}

// Installer installs, upgrades and removes a mesh's charts as Helm releases.
//
// Charts are installed with the Helm Go SDK, helm.sh/helm/v4 (v4.3.1), not v3. Both build against
// our k8s.io v0.37.2 libraries (v3.22.0 asks for v0.37.0, v4.3.1 for v0.37.1 and exactly our
// controller-runtime v0.25.2; checked with a throwaway module importing action, loader, repo,
// registry and getter of each). v4 is taken because:
//   - Helm 3 is at its end of life: its last minor release came in September 2026, bug fixes
//     stopped in July 2026 and security fixes stop on 10 February 2027, after which not even
//     Kubernetes client updates come; a new dependency on it would need replacing within months;
//   - v4 applies with server-side apply by default, as the rest of kubectl-mesh does
//     (internal/apply), so field ownership of objects that other tools also touch (istiod patches
//     its webhooks' caBundle and failurePolicy) is tracked by the API server instead of Helm's
//     three-way merge;
//   - its actions take a context (RunWithContext), so Ctrl-C stops an install, and it logs
//     through log/slog, which we route to stderr at warning level;
//   - it refuses to delete, on uninstall, objects whose Helm ownership annotations name another
//     release, which is what lets `uninstall --keep-crds` keep CRDs that are chart templates.
//
// The cost: v4 compiles its WebAssembly plugin runtime (wazero, extism) into the binary although
// we never load a plugin, which adds several minutes to a cold build.
type Installer struct {
	Getter   genericclioptions.RESTClientGetter
	Client   kubernetes.Interface
	Dynamic  dynamic.Interface
	Settings *cli.EnvSettings
	// Log receives Helm's own warnings.
	Log io.Writer
	// Timeout bounds each chart's hooks (Helm waits for hook Jobs whatever the strategy).
	Timeout time.Duration
	// TakeOwnership lets an install adopt objects that exist without Helm's ownership metadata.
	TakeOwnership bool

	registry *registry.Client
}

// NewInstaller connects to the cluster through getter (the kubectl flags).
func NewInstaller(getter genericclioptions.RESTClientGetter, log io.Writer) (*Installer, error) {
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Installer{Getter: getter, Client: cs, Dynamic: dyn, Settings: cli.New(), Log: log, Timeout: 5 * time.Minute}, nil
}

// Step is one chart of an install, with its namespace.
type Step struct {
	Chart     Chart
	Namespace string
}

// Plan lists the charts of an install of m in order, each with its namespace. namespace is the
// control plane's namespace ("" for the mesh's default, or the namespace where its releases
// already are).
func (in *Installer) Plan(ctx context.Context, m Mesh, namespace string, with []string) ([]Step, error) {
	charts, err := ChartsFor(m, with)
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace, err = in.releaseNamespace(ctx, m)
		if err != nil {
			return nil, err
		}
	}
	var steps []Step
	for _, c := range charts {
		ns := namespace
		if c.Namespace != "" {
			ns = c.Namespace
		}
		steps = append(steps, Step{Chart: c, Namespace: ns})
	}
	return steps, nil
}

// releaseNamespace finds where m's first chart's release is installed, so that an upgrade
// without -n finds an install made with -n; the mesh's default namespace when there is none.
func (in *Installer) releaseNamespace(ctx context.Context, m Mesh) (string, error) {
	first := m.Charts()[0].Release
	nss, err := in.releaseNamespaces(ctx, first)
	if err != nil {
		return "", err
	}
	switch len(nss) {
	case 0:
		return m.Namespace(), nil
	case 1:
		return nss[0], nil
	default:
		return "", fmt.Errorf("Helm release %s of %s is in several namespaces (%s): say which with -n", first, m.Name(), strings.Join(nss, ", "))
	}
}

// releaseNamespaces lists the namespaces holding a Helm release of that name (its storage
// secrets carry owner=helm and name=RELEASE labels).
func (in *Installer) releaseNamespaces(ctx context.Context, name string) ([]string, error) {
	secrets, err := in.Client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + name})
	if err != nil {
		return nil, fmt.Errorf("looking for Helm release %s: %w", name, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range secrets.Items {
		if s.Labels["status"] == string(rcommon.StatusUninstalled) || seen[s.Namespace] {
			continue
		}
		seen[s.Namespace] = true
		out = append(out, s.Namespace)
	}
	sort.Strings(out)
	return out, nil
}

// Outcome says what an install did to one chart's release.
type Outcome string

const (
	Installed Outcome = "installed"
	Upgraded  Outcome = "upgraded"
	Unchanged Outcome = "unchanged"
)

// Workload is a Deployment, DaemonSet or StatefulSet of a release, to wait for.
type Workload struct {
	Kind, Namespace, Name string
}

func (w Workload) String() string { return w.Kind + " " + w.Namespace + "/" + w.Name }

// Result is what InstallChart did.
type Result struct {
	Step     Step
	Outcome  Outcome
	From, To string // chart versions before (empty on a first install) and after
	Revision int
	// Workloads are the release's Deployments, DaemonSets and StatefulSets.
	Workloads []Workload
	// CRDs are the CRDs the release's templates create.
	CRDs []string
}

// ChartValues are a chart's values from the command line: -f files and --set k=v, each applying
// to every chart of the mesh unless prefixed with CHART: (--set istiod:pilot.resources.requests.cpu=100m).
type ChartValues struct {
	Files []string
	Set   []string
}

// For returns the values the user gave for chart c, merged (files in order, then --set).
func (v ChartValues) For(m Mesh, c Chart) (map[string]any, error) {
	pick := func(items []string) []string {
		var out []string
		for _, it := range items {
			if name, rest, ok := chartPrefix(m, it); ok {
				if name == c.Name {
					out = append(out, rest)
				}
				continue
			}
			out = append(out, it)
		}
		return out
	}
	opts := values.Options{ValueFiles: pick(v.Files), Values: pick(v.Set)}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("values for chart %s: %w", c.Name, err)
	}
	return vals, nil
}

// Validate checks that every CHART: prefix names one of m's charts.
func (v ChartValues) Validate(m Mesh) error {
	for _, it := range append(append([]string{}, v.Files...), v.Set...) {
		if name, _, ok := chartPrefix(m, it); ok && name == "" {
			return fmt.Errorf("%q: no chart of %s is named %q", it, m.Name(), strings.SplitN(it, ":", 2)[0])
		}
	}
	return nil
}

var chartPrefixRe = regexp.MustCompile(`^([a-z0-9][a-z0-9-]*):(.*)$`)

// chartPrefix splits "CHART:rest". ok with an empty name is a prefix naming no chart of m. A URL
// (https://...), a Windows drive letter (C:\...) or a colon after '=' or '.' is no prefix.
func chartPrefix(m Mesh, s string) (name, rest string, ok bool) {
	sub := chartPrefixRe.FindStringSubmatch(s)
	if sub == nil || len(sub[1]) == 1 || strings.HasPrefix(sub[2], "//") {
		return "", s, false
	}
	for _, c := range m.Charts() {
		if c.Name == sub[1] {
			return c.Name, sub[2], true
		}
	}
	return "", s, true
}

// LoadChart finds chart c of m at version (the latest when empty) and loads it.
func (in *Installer) LoadChart(m Mesh, c Chart, src Source, version string) (*chart.Chart, error) {
	var path string
	var err error
	switch {
	case strings.HasPrefix(src.Location, "oci://"):
		if in.registry == nil {
			opts := []registry.ClientOption{registry.ClientOptWriter(io.Discard), registry.ClientOptCredentialsFile(in.Settings.RegistryConfig)}
			if src.PlainHTTP {
				opts = append(opts, registry.ClientOptPlainHTTP())
			}
			if in.registry, err = registry.NewClient(opts...); err != nil {
				return nil, err
			}
		}
		locate := action.NewInstall(&action.Configuration{RegistryClient: in.registry})
		locate.Version, locate.PlainHTTP = version, src.PlainHTTP
		ref := strings.TrimSuffix(src.Location, "/") + "/" + c.Name
		if path, err = locate.LocateChart(ref, in.Settings); err != nil {
			return nil, fmt.Errorf("chart %s: %w", ref, err)
		}
	case src.Location != "":
		if path, err = localChart(src.Location, c.Name, version); err != nil {
			return nil, err
		}
	default:
		repo := src.RepoURL
		if repo == "" {
			repo = m.Repository()
		}
		locate := action.NewInstall(&action.Configuration{})
		locate.Version, locate.RepoURL = version, repo
		if path, err = locate.LocateChart(c.Name, in.Settings); err != nil {
			return nil, fmt.Errorf("chart %s from %s: %w", c.Name, repo, err)
		}
	}
	ch, err := loader.Load(path)
	if err != nil {
		return nil, fmt.Errorf("chart %s (%s): %w", c.Name, path, err)
	}
	if ch.Metadata.Name != c.Name {
		return nil, fmt.Errorf("%s holds chart %q, not %q", path, ch.Metadata.Name, c.Name)
	}
	if version != "" && !sameVersion(ch.Metadata.Version, version) {
		return nil, fmt.Errorf("%s is chart %s version %s, not %s", path, c.Name, ch.Metadata.Version, version)
	}
	return ch, nil
}

// localChart finds chart name in dir: DIR/NAME (unpacked) or DIR/NAME-VERSION.tgz, the highest
// version when none is asked for.
func localChart(dir, name, version string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("--chart %s: %w", dir, err)
	}
	type cand struct {
		path    string
		version *semver.Version
	}
	var cands []cand
	var seen []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var isChart bool
		if e.IsDir() {
			_, err := os.Stat(filepath.Join(p, "Chart.yaml"))
			isChart = err == nil && (e.Name() == name || strings.HasPrefix(e.Name(), name+"-"))
		} else {
			isChart = strings.HasSuffix(e.Name(), ".tgz") && strings.HasPrefix(e.Name(), name+"-")
		}
		if !isChart {
			continue
		}
		meta, err := loader.Load(p)
		if err != nil || meta.Metadata.Name != name {
			continue
		}
		v, err := semver.NewVersion(meta.Metadata.Version)
		if err != nil {
			continue
		}
		seen = append(seen, v.Original())
		if version == "" || sameVersion(meta.Metadata.Version, version) {
			cands = append(cands, cand{p, v})
		}
	}
	if len(cands) == 0 {
		if len(seen) > 0 {
			return "", fmt.Errorf("--chart %s: chart %s %s not found (there: %s)", dir, name, version, strings.Join(seen, ", "))
		}
		return "", fmt.Errorf("--chart %s: no chart %s in it (want %s/ or %s-VERSION.tgz)", dir, name, name, name)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].version.GreaterThan(cands[j].version) })
	return cands[0].path, nil
}

func sameVersion(a, b string) bool {
	va, erra := semver.NewVersion(a)
	vb, errb := semver.NewVersion(b)
	if erra != nil || errb != nil {
		return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
	}
	return va.Equal(vb)
}

// config is a Helm action configuration for one namespace: releases are stored there and
// objects without a namespace of their own land there, whatever the kubeconfig's context says.
func (in *Installer) config(namespace string) (*action.Configuration, error) {
	// Helm's warnings go to stderr, without the timestamp a log file would want.
	h := slog.NewTextHandler(in.Log, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(h))
	if err := cfg.Init(in.Getter, namespace, "secret"); err != nil {
		return nil, err
	}
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		kc.Namespace = namespace
	}
	cfg.RegistryClient = in.registry
	return cfg, nil
}

// Previous returns the release of step's chart, nil when there is none.
func (in *Installer) Previous(step Step) (*release.Release, error) {
	cfg, err := in.config(step.Namespace)
	if err != nil {
		return nil, err
	}
	return lastRelease(cfg, step.Chart.Release)
}

func lastRelease(cfg *action.Configuration, name string) (*release.Release, error) {
	r, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("release %s: unexpected record type %T", name, r)
	}
	return rel, nil
}

// EnsureNamespace creates the control plane's namespace with the mesh's labels, or adds the
// mesh's labels that an existing one lacks (never changing a value someone set).
func (in *Installer) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns, err := in.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := map[string]string{LabelManagedBy: ManagedByValue}
		for k, v := range labels {
			l[k] = v
		}
		_, err = in.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	missing := map[string]string{}
	for k, v := range labels {
		if _, ok := ns.Labels[k]; !ok {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": missing}})
	_, err = in.Client.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// InstallChart installs step's chart ch with vals, upgrades its release when the version or the
// values differ, and leaves it alone when they are the same. A chart whose templates create CRDs
// is followed by a wait for them to be established and a refresh of API discovery, so that the
// next chart may use them.
func (in *Installer) InstallChart(ctx context.Context, step Step, ch *chart.Chart, vals map[string]any, hint func(kind, name string) string) (*Result, error) {
	cfg, err := in.config(step.Namespace)
	if err != nil {
		return nil, err
	}
	name := step.Chart.Release
	prev, err := lastRelease(cfg, name)
	if err != nil {
		return nil, fmt.Errorf("release %s in %s: %w", name, step.Namespace, err)
	}
	res := &Result{Step: step, To: ch.Metadata.Version}
	var rel *release.Release
	switch {
	case prev != nil && prev.Info.Status.IsPending():
		return nil, fmt.Errorf("release %s in %s is %s: another install, upgrade or uninstall is running or was interrupted; wait for it, or remove the mesh with kubectl mesh uninstall and install again",
			name, step.Namespace, prev.Info.Status)
	case prev != nil && prev.Info.Status == rcommon.StatusDeployed && prev.Chart != nil && prev.Chart.Metadata != nil &&
		sameVersion(prev.Chart.Metadata.Version, ch.Metadata.Version) && sameValues(prev.Config, vals):
		res.Outcome, res.From, res.Revision = Unchanged, prev.Chart.Metadata.Version, prev.Version
		rel = prev
	case prev == nil:
		if err := in.readoptKeptCRDs(ctx, step); err != nil {
			return nil, err
		}
		inst := action.NewInstall(cfg)
		inst.ReleaseName, inst.Namespace = name, step.Namespace
		// Helm would wait silently; the caller waits itself, showing what is not ready and why.
		inst.WaitStrategy = kube.HookOnlyStrategy
		inst.Timeout = in.Timeout
		inst.TakeOwnership = in.TakeOwnership
		r, err := inst.RunWithContext(ctx, ch, vals)
		if err != nil {
			return nil, ExplainConflict(fmt.Errorf("installing chart %s %s as release %s in %s: %w", ch.Metadata.Name, ch.Metadata.Version, name, step.Namespace, oneLine(err)), hint)
		}
		rel, _ = r.(*release.Release)
		res.Outcome = Installed
	default:
		up := action.NewUpgrade(cfg)
		up.Namespace = step.Namespace
		up.WaitStrategy = kube.HookOnlyStrategy
		up.Timeout = in.Timeout
		up.TakeOwnership = in.TakeOwnership
		up.MaxHistory = 10
		r, err := up.RunWithContext(ctx, name, ch, vals)
		if err != nil {
			return nil, ExplainConflict(fmt.Errorf("upgrading release %s in %s to chart %s %s: %w", name, step.Namespace, ch.Metadata.Name, ch.Metadata.Version, oneLine(err)), hint)
		}
		rel, _ = r.(*release.Release)
		res.Outcome = Upgraded
		if prev.Chart != nil && prev.Chart.Metadata != nil {
			res.From = prev.Chart.Metadata.Version
		}
	}
	if rel == nil {
		return nil, fmt.Errorf("release %s: Helm returned no release", name)
	}
	res.Revision = rel.Version
	res.Workloads, res.CRDs, err = manifestObjects(rel.Manifest, step.Namespace)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", name, err)
	}
	if len(res.CRDs) > 0 && res.Outcome != Unchanged {
		if err := in.waitCRDs(ctx, res.CRDs, time.Minute); err != nil {
			return nil, err
		}
		in.RefreshDiscovery()
	}
	return res, nil
}

// oneLineError is an error whose message has its lines joined, still unwrapping to the original:
// Helm joins the errors of several objects with newlines, and a failed command's cause must be the
// last line on stderr.
type oneLineError struct{ err error }

func (e oneLineError) Error() string {
	return strings.ReplaceAll(strings.TrimSpace(e.err.Error()), "\n", "; ")
}
func (e oneLineError) Unwrap() error { return e.err }

func oneLine(err error) error { return oneLineError{err} }

// sameValues compares values as Helm stores them (JSON), so that 1 and 1.0 are equal.
func sameValues(a, b map[string]any) bool {
	ja, err1 := json.Marshal(nonNil(a))
	jb, err2 := json.Marshal(nonNil(b))
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// manifestObjects lists a release manifest's workloads and CRDs.
func manifestObjects(manifest, namespace string) ([]Workload, []string, error) {
	objs, err := apply.Decode(strings.NewReader(manifest))
	if err != nil {
		return nil, nil, err
	}
	var wl []Workload
	var crds []string
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "DaemonSet", "StatefulSet":
			ns := o.GetNamespace()
			if ns == "" {
				ns = namespace
			}
			wl = append(wl, Workload{Kind: o.GetKind(), Namespace: ns, Name: o.GetName()})
		case "CustomResourceDefinition":
			crds = append(crds, o.GetName())
		}
	}
	return wl, crds, nil
}

// waitCRDs waits until the API server serves the CRDs (condition Established).
func (in *Installer) waitCRDs(ctx context.Context, names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range names {
		for {
			u, err := in.Dynamic.Resource(crdResource).Get(ctx, n, metav1.GetOptions{})
			if err == nil && crdEstablished(u.Object) {
				break
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = errors.New("not established")
				}
				return fmt.Errorf("CRD %s: %v after %s", n, err, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(obj map[string]any) bool {
	status, _ := obj["status"].(map[string]any)
	conds, _ := status["conditions"].([]any)
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		if cm["type"] == "Established" && cm["status"] == "True" {
			return true
		}
	}
	return false
}

// RefreshDiscovery forgets the API groups and kinds cached by this process (and on disk), so
// that kinds defined by CRDs just created resolve. Helm only does this for CRDs in a chart's
// crds/ directory; Istio's and Linkerd's charts create theirs as templates.
func (in *Installer) RefreshDiscovery() {
	if dc, err := in.Getter.ToDiscoveryClient(); err == nil {
		dc.Invalidate()
	}
	if rm, err := in.Getter.ToRESTMapper(); err == nil {
		if r, ok := rm.(meta.ResettableRESTMapper); ok {
			r.Reset()
		}
	}
}

var conflictRe = regexp.MustCompile(`(\w+) "([^"]+)" in namespace "([^"]*)" exists and cannot be imported into the current release`)

// ExplainConflict adds what to do when an object of the chart already exists outside the release:
// the mesh's hint (a leftover Istio webhook), then the generic way out.
func ExplainConflict(err error, hint func(kind, name string) string) error {
	m := conflictRe.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	kind, name, ns := m[1], m[2], m[3]
	where := kind + " " + name
	if ns != "" {
		where = kind + " " + ns + "/" + name
	}
	msg := fmt.Sprintf("%s already exists and no Helm release of this install owns it", where)
	if hint != nil {
		if h := hint(kind, name); h != "" {
			msg += ": " + h
		}
	}
	del := "kubectl delete " + strings.ToLower(kind) + " " + name
	if ns != "" {
		del = "kubectl -n " + ns + " delete " + strings.ToLower(kind) + " " + name
	}
	// One line: the cause of a failed command is the last line on stderr.
	return fmt.Errorf("%w; %s; remove it (%s) or adopt it with --take-ownership", err, msg, del)
}

// readoptKeptCRDs gives CRDs that `uninstall --keep-crds` kept back to their release, so that
// installing it again neither conflicts with them nor leaves them orphaned.
func (in *Installer) readoptKeptCRDs(ctx context.Context, step Step) error {
	if !step.Chart.CRDs {
		return nil
	}
	list, err := in.Dynamic.Resource(crdResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing CRDs: %w", err)
	}
	want := step.Namespace + "/" + step.Chart.Release
	for _, crd := range list.Items {
		if crd.GetAnnotations()[AnnotationKeptFrom] != want {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"labels":      map[string]any{LabelManagedBy: "Helm"},
			"annotations": map[string]any{AnnotationKeptFrom: nil, helmReleaseName: step.Chart.Release, helmReleaseNamespace: step.Namespace},
		}})
		if _, err := in.Dynamic.Resource(crdResource).Patch(ctx, crd.GetName(), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("re-adopting kept CRD %s: %w", crd.GetName(), err)
		}
	}
	return nil
}

// Removed is one release Uninstall removed.
type Removed struct {
	Release, Namespace, Version string
	// KeptCRDs are the CRDs left in place by --keep-crds.
	KeptCRDs []string
}

// Uninstall removes m's releases, last chart first, from namespace ("" to find them). keepCRDs
// leaves the CRDs of charts that create them (and so every custom resource) in place: their Helm
// ownership is taken away first, which makes Helm skip them. Namespaces kubectl-mesh created are
// removed once no release is left in them.
func (in *Installer) Uninstall(ctx context.Context, m Mesh, namespace string, keepCRDs bool) ([]Removed, error) {
	charts := m.Charts()
	var removed []Removed
	touched := map[string]bool{}
	for i := len(charts) - 1; i >= 0; i-- {
		c := charts[i]
		var nss []string
		switch {
		case namespace != "" && c.Namespace == "":
			nss = []string{namespace}
		default:
			found, err := in.releaseNamespaces(ctx, c.Release)
			if err != nil {
				return removed, err
			}
			for _, ns := range found {
				if c.Namespace != "" || namespace == "" || ns == namespace {
					nss = append(nss, ns)
				}
			}
		}
		if len(nss) > 1 && namespace == "" {
			return removed, fmt.Errorf("Helm release %s of %s is in several namespaces (%s): say which with -n", c.Release, m.Name(), strings.Join(nss, ", "))
		}
		for _, ns := range nss {
			r, err := in.uninstallRelease(ctx, c, ns, keepCRDs)
			if err != nil {
				return removed, err
			}
			if r != nil {
				removed = append(removed, *r)
				touched[ns] = true
			}
		}
	}
	for ns := range touched {
		if err := in.removeNamespaceIfOurs(ctx, ns); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func (in *Installer) uninstallRelease(ctx context.Context, c Chart, ns string, keepCRDs bool) (*Removed, error) {
	cfg, err := in.config(ns)
	if err != nil {
		return nil, err
	}
	rel, err := lastRelease(cfg, c.Release)
	if err != nil || rel == nil {
		return nil, err
	}
	out := &Removed{Release: c.Release, Namespace: ns}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		out.Version = rel.Chart.Metadata.Version
	}
	if keepCRDs {
		_, crds, err := manifestObjects(rel.Manifest, ns)
		if err != nil {
			return nil, err
		}
		for _, name := range crds {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
				"labels":      map[string]any{LabelManagedBy: nil},
				"annotations": map[string]any{helmReleaseName: nil, helmReleaseNamespace: nil, AnnotationKeptFrom: ns + "/" + c.Release},
			}})
			_, err := in.Dynamic.Resource(crdResource).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("keeping CRD %s: %w", name, err)
			}
			out.KeptCRDs = append(out.KeptCRDs, name)
		}
	}
	u := action.NewUninstall(cfg)
	u.WaitStrategy = kube.HookOnlyStrategy
	u.Timeout = in.Timeout
	u.IgnoreNotFound = true
	if _, err := u.Run(c.Release); err != nil {
		return nil, fmt.Errorf("uninstalling release %s in %s: %w", c.Release, ns, err)
	}
	return out, nil
}

// removeNamespaceIfOurs deletes a namespace kubectl-mesh created once no Helm release is left in
// it; a namespace someone else made, or one still holding a release, stays.
func (in *Installer) removeNamespaceIfOurs(ctx context.Context, name string) error {
	ns, err := in.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.Labels[LabelManagedBy] != ManagedByValue {
		return nil
	}
	left, err := in.Client.CoreV1().Secrets(name).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm", Limit: 1})
	if err != nil {
		return err
	}
	if len(left.Items) > 0 {
		return nil
	}
	err = in.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// MergeValues merges over into base, recursively for maps (the way Helm merges values files):
// over wins. Neither argument is changed.
func MergeValues(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = MergeValues(bm, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}
