package meshes

import (
	"context"
	"fmt"
	"sort"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/manifests"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Status is what `kubectl mesh status` shows.
type Status struct {
	ControlPlanes []ControlPlane    `json:"controlPlanes"`
	Probe         ProbeStatus       `json:"probe"`
	Namespaces    []NamespaceStatus `json:"namespaces"`
}

// ProbeStatus is kubectl-mesh's own probe injector (the mesh-webhook Deployment).
type ProbeStatus struct {
	Installed  bool     `json:"installed"`
	Namespace  string   `json:"namespace"`
	Want       int32    `json:"want"`
	Ready      int32    `json:"ready"`
	Problem    string   `json:"problem,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"` // opted in with kubectl-mesh.io/probe=enabled
}

// NamespaceStatus is one namespace with a mesh or the probe enabled, or pods carrying a proxy.
type NamespaceStatus struct {
	Name string `json:"name"`
	// Injection maps a mesh to the label or annotation that enables its injection here.
	Injection map[string]string `json:"injection,omitempty"`
	Pods      int               `json:"pods"`
	// Meshed maps a mesh to the number of pods carrying its proxy.
	Meshed       map[string]int `json:"meshed,omitempty"`
	ProbeEnabled bool           `json:"probeEnabled,omitempty"`
	Probed       int            `json:"probed"`
}

// Collect reads the cluster, every list at once (a status must answer within a second on a
// cluster of fifty namespaces), and detects each registered mesh's control planes. trouble
// explains a pod that is not ready, for components not ready.
func Collect(ctx context.Context, cs kubernetes.Interface, trouble func(*corev1.Pod) string) (*Status, error) {
	all := All()
	snaps := make([]Snapshot, len(all))
	var (
		nss      []corev1.Namespace
		pods     []corev1.Pod
		webhooks []string
		probe    *appsv1.Deployment
		probeErr error
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
	)
	run := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				mu.Unlock()
			}
		}()
	}
	run("namespaces", func() error {
		l, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err == nil {
			nss = l.Items
		}
		return err
	})
	run("pods", func() error {
		var err error
		pods, err = listPods(ctx, cs)
		return err
	})
	run("mutating webhooks", func() error {
		l, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, w := range l.Items {
				webhooks = append(webhooks, w.Name)
			}
		}
		return err
	})
	run("probe", func() error {
		probe, probeErr = cs.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.WebhookDeployment, metav1.GetOptions{})
		if apierrors.IsNotFound(probeErr) {
			return nil
		}
		return probeErr
	})
	for i, m := range all {
		sel := m.Selectors()
		if sel.Deployments != "" {
			run(m.Name()+" deployments", func() error {
				l, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: sel.Deployments})
				if err == nil {
					snaps[i].Deployments = l.Items
				}
				return err
			})
		}
		if sel.DaemonSets != "" {
			run(m.Name()+" daemonsets", func() error {
				l, err := cs.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{LabelSelector: sel.DaemonSets})
				if err == nil {
					snaps[i].DaemonSets = l.Items
				}
				return err
			})
		}
		if sel.ConfigMaps != "" {
			run(m.Name()+" configmaps", func() error {
				l, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: sel.ConfigMaps})
				if err == nil {
					snaps[i].ConfigMaps = l.Items
				}
				return err
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	st := Summarize(all, snaps, nss, pods, webhooks, trouble)
	st.Probe.Namespace = manifests.Namespace
	if probe != nil && probeErr == nil {
		c := deploymentComponent(probe)
		st.Probe.Installed, st.Probe.Want, st.Probe.Ready = true, c.Want, c.ReadyN
		if !c.Ready() {
			st.Probe.Problem = componentProblem(c, pods, trouble)
		}
	}
	return st, nil
}

// listPods lists every pod, a page at a time, so that a large cluster is not one huge answer.
func listPods(ctx context.Context, cs kubernetes.Interface) ([]corev1.Pod, error) {
	var out []corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := cs.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// Summarize detects the control planes in the snapshots (one per mesh of all, in order) and
// counts, per namespace, the pods carrying each mesh's proxy and the probe.
func Summarize(all []Mesh, snaps []Snapshot, nss []corev1.Namespace, pods []corev1.Pod, webhooks []string, trouble func(*corev1.Pod) string) *Status {
	st := &Status{}
	for i, m := range all {
		snaps[i].Namespaces, snaps[i].MutatingWebhooks = nss, webhooks
		for _, cp := range m.Detect(&snaps[i]) {
			for j := range cp.Components {
				if c := &cp.Components[j]; !c.Ready() {
					c.Problem = componentProblem(*c, pods, trouble)
				}
			}
			st.ControlPlanes = append(st.ControlPlanes, cp)
		}
	}
	byNS := map[string]*NamespaceStatus{}
	get := func(name string) *NamespaceStatus {
		if byNS[name] == nil {
			byNS[name] = &NamespaceStatus{Name: name}
		}
		return byNS[name]
	}
	for i := range nss {
		ns := &nss[i]
		for _, m := range all {
			if on, how := m.Injection().EnabledOn(ns); on {
				s := get(ns.Name)
				if s.Injection == nil {
					s.Injection = map[string]string{}
				}
				s.Injection[m.Name()] = how
			}
		}
		if ns.Labels[inject.LabelProbe] == inject.ValueEnabled {
			get(ns.Name).ProbeEnabled = true
			st.Probe.Namespaces = append(st.Probe.Namespaces, ns.Name)
		}
	}
	podsPerNS := map[string]int{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		podsPerNS[p.Namespace]++
		for _, m := range all {
			if hasContainer(p, m.ProxyContainer()) {
				s := get(p.Namespace)
				if s.Meshed == nil {
					s.Meshed = map[string]int{}
				}
				s.Meshed[m.Name()]++
			}
		}
		if hasContainer(p, inject.ProbeContainerName) {
			get(p.Namespace).Probed++
		}
	}
	for name, s := range byNS {
		s.Pods = podsPerNS[name]
		st.Namespaces = append(st.Namespaces, *s)
	}
	sort.Slice(st.Namespaces, func(i, j int) bool { return st.Namespaces[i].Name < st.Namespaces[j].Name })
	sort.Strings(st.Probe.Namespaces)
	return st
}

// hasContainer looks in the containers and the init containers (native sidecars).
func hasContainer(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// componentProblem explains a component that is not ready from its pods.
func componentProblem(c Component, pods []corev1.Pod, trouble func(*corev1.Pod) string) string {
	if len(c.Selector) == 0 {
		return ""
	}
	sel := labels.SelectorFromSet(c.Selector)
	n := 0
	for i := range pods {
		p := &pods[i]
		if p.Namespace != c.Namespace || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		n++
		if trouble != nil {
			if msg := trouble(p); msg != "" {
				return "pod " + p.Name + ": " + msg
			}
		}
	}
	if n == 0 {
		return "no pods"
	}
	return ""
}

// DetectMesh finds m's control planes from m's objects alone (no pods): enough to tell whether
// an install would meet one made by other means.
func DetectMesh(ctx context.Context, cs kubernetes.Interface, m Mesh) ([]ControlPlane, error) {
	sel := m.Selectors()
	var s Snapshot
	if sel.Deployments != "" {
		l, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: sel.Deployments})
		if err != nil {
			return nil, err
		}
		s.Deployments = l.Items
	}
	if sel.ConfigMaps != "" {
		l, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: sel.ConfigMaps})
		if err != nil {
			return nil, err
		}
		s.ConfigMaps = l.Items
	}
	return m.Detect(&s), nil
}

// OwnedBy reports whether cp was installed by one of m's Helm releases, as kubectl-mesh does.
func OwnedBy(m Mesh, cp ControlPlane) bool {
	for _, c := range m.Charts() {
		if cp.InstalledBy == "Helm (release "+c.Release+")" {
			return true
		}
	}
	return false
}
