// Package meshes knows the service meshes kubectl-mesh installs and recognises: which Helm charts
// make each one, in what order, with which values of its own; how its control plane looks in a
// cluster (so that an installation made by other means, istioctl or the linkerd CLI, is
// recognised too); and how a namespace opts into its proxy injection.
//
// Each mesh is one file (istio.go, linkerd.go) that registers a Mesh in its init function. The
// commands only walk the registry, so a third mesh (Kuma, Cilium, Consul) is one new file.
package meshes

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Mesh is one service mesh.
type Mesh interface {
	// Name is the mesh's name on the command line: "istio".
	Name() string
	// Repository is the URL of the official Helm chart repository.
	Repository() string
	// Namespace is the default namespace of the control plane.
	Namespace() string
	// NamespaceLabels are set on the control plane's namespace when kubectl-mesh creates it
	// (the mesh's CLI sets them too; they keep the injector away from its own namespace).
	NamespaceLabels(namespace string) map[string]string
	// Charts are the mesh's charts in install order (uninstall goes backwards).
	Charts() []Chart
	// ChartVersion turns the version a user typed into the charts' version; the charts of a
	// mesh share one version.
	ChartVersion(v string) string
	// Values are what the mesh itself sets for a chart, under the user's --set and -f. previous
	// are the values of the installed release (nil on a first install), so that generated
	// secrets such as Linkerd's certificates survive upgrades.
	Values(ctx context.Context, env Env, chart Chart, user, previous map[string]any) (map[string]any, error)
	// Selectors choose the objects the mesh's detection needs; Detect reads them.
	Selectors() Selectors
	// Detect finds the mesh's control planes, whoever installed them.
	Detect(s *Snapshot) []ControlPlane
	// ProxyContainer is the name of the proxy the mesh puts into workload pods.
	ProxyContainer() string
	// Injection is how a namespace opts into the mesh's proxy injection.
	Injection() Injection
	// ConflictHint explains an existing object that blocks an install, or returns "".
	ConflictHint(kind, name string) string
}

// Chart is one of a mesh's Helm charts, installed as a release of its own.
type Chart struct {
	// Name is the chart's name in the repository, and the directory or NAME-VERSION.tgz of a
	// local chart directory.
	Name string
	// Release is the Helm release's name.
	Release string
	// Namespace overrides the mesh's namespace for this chart ("" for the mesh's).
	Namespace string
	// Optional charts are installed only when named with --with.
	Optional bool
	// CRDs says the chart creates CustomResourceDefinitions as templates: they are waited for
	// and API discovery is refreshed before the next chart, which may use them.
	CRDs bool
}

// Env is what Values may look at in the cluster.
type Env struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespace is the control plane's namespace of this install.
	Namespace string
	// Charts are the charts of this install, in order.
	Charts []Chart
	// GatewayAPI asks the mesh to install the Gateway API CRDs if it needs them and they are
	// missing (--gateway-api).
	GatewayAPI bool
}

// Selectors are label selectors of the objects a mesh's detection reads; "" lists none.
type Selectors struct {
	Deployments string
	DaemonSets  string
	ConfigMaps  string
}

// Snapshot holds the cluster objects detection reads: the ones the mesh's Selectors chose, and
// every namespace and mutating webhook configuration's name.
type Snapshot struct {
	Deployments []appsv1.Deployment
	DaemonSets  []appsv1.DaemonSet
	ConfigMaps  []corev1.ConfigMap
	Namespaces  []corev1.Namespace
	// MutatingWebhooks are the names of the cluster's MutatingWebhookConfigurations.
	MutatingWebhooks []string
}

// ControlPlane is one installation of a mesh found in the cluster.
type ControlPlane struct {
	Mesh      string `json:"mesh"`
	Namespace string `json:"namespace"`
	// Revision is Istio's revision ("default" when none was given), empty for other meshes.
	Revision string `json:"revision,omitempty"`
	Version  string `json:"version"`
	// InstalledBy says how: "Helm (release NAME)", "istioctl", "linkerd CLI" or "unknown".
	InstalledBy string `json:"installedBy"`
	// Components are the control plane's workloads.
	Components []Component `json:"components"`
	// Injector names the mutating webhook configuration that injects the proxy, "" if missing.
	Injector string `json:"injector,omitempty"`
	// Notes are things found wrong with the installation itself (a missing injector webhook).
	Notes []string `json:"notes,omitempty"`
}

// Healthy says every component has all its replicas ready.
func (c ControlPlane) Healthy() bool {
	for _, comp := range c.Components {
		if !comp.Ready() {
			return false
		}
	}
	return len(c.Components) > 0
}

// Component is one workload of a control plane.
type Component struct {
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Want      int32             `json:"want"`
	ReadyN    int32             `json:"ready"`
	Selector  map[string]string `json:"-"`
	Images    []string          `json:"images,omitempty"`
	// Problem says why it is not ready, filled in by the caller from its pods.
	Problem string `json:"problem,omitempty"`
}

// Ready says all wanted replicas are ready.
func (c Component) Ready() bool { return c.ReadyN >= c.Want }

// Injection is how a namespace opts into a mesh's proxy injection.
type Injection struct {
	// Annotation: the setting is a namespace annotation (Linkerd) rather than a label (Istio).
	Annotation bool
	Key, Value string
	// AlsoEnabledBy are label keys whose presence also enables injection whatever their value
	// (Istio's istio.io/rev), not set by enable but recognised.
	AlsoEnabledBy []string
}

// String is the setting as a user would write it: istio-injection=enabled.
func (i Injection) String() string {
	kind := "label"
	if i.Annotation {
		kind = "annotation"
	}
	return fmt.Sprintf("%s %s=%s", kind, i.Key, i.Value)
}

// EnabledOn reports whether the namespace has injection on, and by which setting.
func (i Injection) EnabledOn(ns *corev1.Namespace) (bool, string) {
	m := ns.Labels
	if i.Annotation {
		m = ns.Annotations
	}
	if v, ok := m[i.Key]; ok && v == i.Value {
		return true, i.Key + "=" + v
	}
	for _, k := range i.AlsoEnabledBy {
		if v, ok := ns.Labels[k]; ok {
			return true, k + "=" + v
		}
	}
	return false, ""
}

var (
	mu           sync.RWMutex
	meshRegistry = map[string]Mesh{}
)

// Register adds a mesh; each mesh's file calls it from init. A second mesh of the same name is a
// programming error.
func Register(m Mesh) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := meshRegistry[m.Name()]; dup {
		panic("meshes: " + m.Name() + " registered twice")
	}
	meshRegistry[m.Name()] = m
}

// Lookup finds a mesh by name.
func Lookup(name string) (Mesh, error) {
	mu.RLock()
	defer mu.RUnlock()
	if m, ok := meshRegistry[strings.ToLower(name)]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("unknown mesh %q (known: %s)", name, strings.Join(namesLocked(), ", "))
}

// All returns the registered meshes by name.
func All() []Mesh {
	mu.RLock()
	defer mu.RUnlock()
	var out []Mesh
	for _, n := range namesLocked() {
		out = append(out, meshRegistry[n])
	}
	return out
}

// Names lists the registered meshes' names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	var names []string
	for n := range meshRegistry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ChartsFor returns the charts an install of m consists of: the required ones and the optional
// ones named in with.
func ChartsFor(m Mesh, with []string) ([]Chart, error) {
	want := map[string]bool{}
	for _, w := range with {
		want[w] = true
	}
	var out []Chart
	for _, c := range m.Charts() {
		if c.Optional && !want[c.Name] {
			continue
		}
		delete(want, c.Name)
		out = append(out, c)
	}
	if len(want) > 0 {
		var optional, unknown []string
		for _, c := range m.Charts() {
			if c.Optional {
				optional = append(optional, c.Name)
			}
		}
		for w := range want {
			unknown = append(unknown, w)
		}
		sort.Strings(unknown)
		if len(optional) == 0 {
			return nil, fmt.Errorf("--with %s: %s has no optional charts", strings.Join(unknown, ","), m.Name())
		}
		return nil, fmt.Errorf("--with %s: %s's optional charts are %s", strings.Join(unknown, ","), m.Name(), strings.Join(optional, ", "))
	}
	return out, nil
}
