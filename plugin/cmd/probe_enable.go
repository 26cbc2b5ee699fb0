package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/manifests"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// ProbeToggleOptions are the options of `kubectl mesh probe enable|disable`.
type ProbeToggleOptions struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	// Enable is true for enable, false for disable.
	Enable   bool
	Restart  bool
	AllowPSA bool

	namespace string
	client    kubernetes.Interface
	now       func() time.Time
}

func newCmdProbeToggle(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, enable bool) *cobra.Command {
	o := &ProbeToggleOptions{flags: flags, IOStreams: streams, Enable: enable, now: time.Now}
	use, short := "disable -n NS [--restart]", "Opt a namespace out: new pods get no probe (running ones keep theirs until restarted)"
	if enable {
		use, short = "enable -n NS [--restart] [--allow-psa]", "Opt a namespace in: every new pod there gets the probe"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The namespace is labelled kubectl-mesh.io/probe=enabled (enable) or the label is removed
(disable). Pods that already run are not changed: the command lists the workloads whose pods need a
restart, and --restart restarts them the way kubectl rollout restart does. Bare pods (no controller)
are listed but never deleted.`,
		Example: "  kubectl mesh probe enable -n demo --restart\n  kubectl mesh probe disable -n demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOptions(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.Restart, "restart", false, "restart the workloads whose running pods do not match the new setting")
	if enable {
		cmd.Flags().BoolVar(&o.AllowPSA, "allow-psa", false, "inject although the namespace enforces Pod Security baseline or restricted (sets "+inject.LabelAllowPSA+"=true; pods the policy rejects will then fail to start)")
	}
	return cmd
}

// Complete finds the namespace and connects.
func (o *ProbeToggleOptions) Complete() error {
	ns, explicit, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	if !explicit {
		// Opting a namespace in changes every pod created there: it must be named, never implied.
		return usageError{fmt.Errorf("name the namespace with -n NAMESPACE")}
	}
	o.namespace = ns
	_, o.client, err = clusterClient(o.flags)
	return err
}

// Validate has nothing to check beyond Complete.
func (o *ProbeToggleOptions) Validate() error {
	if o.namespace == manifests.Namespace || o.namespace == "kube-system" || o.namespace == "kube-public" || o.namespace == "kube-node-lease" {
		return fmt.Errorf("namespace %s is never probed (the webhook skips it)", o.namespace)
	}
	return nil
}

// Run labels the namespace, warns, lists or restarts the workloads.
func (o *ProbeToggleOptions) Run(ctx context.Context) error {
	if err := checkReachable(o.client); err != nil {
		return err
	}
	nsClient := o.client.CoreV1().Namespaces()
	ns, err := nsClient.Get(ctx, o.namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s not found", o.namespace)
	}
	if err != nil {
		return perf.ExplainForbidden(err, "get namespaces", o.namespace)
	}
	labels := map[string]any{inject.LabelProbe: nil}
	if o.Enable {
		labels[inject.LabelProbe] = inject.ValueEnabled
		if o.AllowPSA {
			labels[inject.LabelAllowPSA] = "true"
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if _, err := nsClient.Patch(ctx, o.namespace, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("permission denied: cannot label namespace %s (kubectl auth can-i patch namespaces/%s)", o.namespace, o.namespace)
		}
		return err
	}
	if o.Enable {
		fmt.Fprintf(o.Out, "namespace %s: probe enabled (label %s=%s)\n", o.namespace, inject.LabelProbe, inject.ValueEnabled)
		if level := ns.Labels[inject.LabelPSAEnforce]; (level == "baseline" || level == "restricted") && !o.AllowPSA && ns.Labels[inject.LabelAllowPSA] != "true" {
			fmt.Fprintf(o.ErrOut, "warning: namespace %s enforces Pod Security %q, which forbids the probe's capabilities (BPF, PERFMON, NET_ADMIN): the webhook will skip its pods and record why (events ProbeSkipped). Relax the policy, or use --allow-psa if an exemption lets them in.\n", o.namespace, level)
		}
		if _, err := o.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manifests.WebhookConfig, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			fmt.Fprintln(o.ErrOut, "warning: the probe injector is not installed: nothing will inject the probe until you run kubectl mesh probe install")
		}
	} else {
		fmt.Fprintf(o.Out, "namespace %s: probe disabled (label %s removed)\n", o.namespace, inject.LabelProbe)
	}

	stale, bare, err := o.staleWorkloads(ctx)
	if err != nil {
		return err
	}
	what := "without the probe"
	if !o.Enable {
		what = "still carrying the probe"
	}
	if len(stale) == 0 && len(bare) == 0 {
		fmt.Fprintf(o.Out, "no running pods %s\n", what)
		return nil
	}
	for _, b := range bare {
		fmt.Fprintf(o.Out, "pod %s is %s and has no controller: delete and recreate it yourself\n", b, what)
	}
	if !o.Restart {
		for _, w := range stale {
			fmt.Fprintf(o.Out, "%s has pods %s: restart it (kubectl -n %s rollout restart %s, or add --restart)\n", w, what, o.namespace, strings.ToLower(w.String()))
		}
		return nil
	}
	var errs []error
	for _, w := range stale {
		if err := restartWorkload(ctx, o.client, o.namespace, w, o.now()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w, err))
			continue
		}
		fmt.Fprintf(o.Out, "%s restarted\n", w)
	}
	return errors.Join(errs...)
}

// workload is a pod's top controller.
type workload struct{ Kind, Name string }

func (w workload) String() string { return w.Kind + "/" + w.Name }

// staleWorkloads lists the controllers of running pods whose probe does not match the setting,
// and the pods without a controller. Pods the webhook would skip anyway (host network, opted
// out, finished) do not count.
func (o *ProbeToggleOptions) staleWorkloads(ctx context.Context) ([]workload, []string, error) {
	pods, err := o.client.CoreV1().Pods(o.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, perf.ExplainForbidden(err, "list pods", o.namespace)
	}
	seen := map[workload]bool{}
	var stale []workload
	var bare []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.HostNetwork || p.Annotations[inject.AnnotationProbe] == inject.ValueDisabled || p.Labels[inject.LabelProbe] == inject.ValueDisabled {
			if o.Enable {
				continue
			}
		}
		if probes.Probed(p) == o.Enable {
			continue
		}
		w, ok := o.owner(ctx, p)
		if !ok {
			bare = append(bare, p.Name)
			continue
		}
		if !seen[w] {
			seen[w] = true
			stale = append(stale, w)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].String() < stale[j].String() })
	return stale, bare, nil
}

// owner follows a pod to its Deployment, StatefulSet or DaemonSet (through a ReplicaSet).
func (o *ProbeToggleOptions) owner(ctx context.Context, p *corev1.Pod) (workload, bool) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return workload{}, false
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return workload{ref.Kind, ref.Name}, true
	case "ReplicaSet":
		rs, err := o.client.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil {
			if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
				return workload{"Deployment", d.Name}, true
			}
		}
		return workload{"ReplicaSet", ref.Name}, true
	}
	return workload{ref.Kind, ref.Name}, true
}

// restartWorkload does what kubectl rollout restart does: a new pod-template annotation, which
// the controller rolls out under the workload's own update strategy.
func restartWorkload(ctx context.Context, cs kubernetes.Interface, ns string, w workload, now time.Time) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": now.Format(time.RFC3339)},
	}}}})
	var err error
	switch w.Kind {
	case "Deployment":
		_, err = cs.AppsV1().Deployments(ns).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "StatefulSet":
		_, err = cs.AppsV1().StatefulSets(ns).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "DaemonSet":
		_, err = cs.AppsV1().DaemonSets(ns).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	default:
		return fmt.Errorf("cannot restart a %s: restart its pods yourself", w.Kind)
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("permission denied: cannot patch %ss in namespace %s", strings.ToLower(w.Kind), ns)
	}
	return err
}
