package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/internal/apply"
	"github.com/kubectl-mesh/kubectl-mesh/manifests"
	probeconfig "github.com/kubectl-mesh/kubectl-mesh/probe/config"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/check"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// NewCmdProbe is `kubectl mesh probe`.
func NewCmdProbe(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Install, remove or check kubectl-mesh's probe injector",
	}
	cmd.AddCommand(newCmdProbeInstall(flags, streams), newCmdProbeUninstall(flags, streams), newCmdProbeStatus(flags, streams),
		newCmdProbeToggle(flags, streams, true), newCmdProbeToggle(flags, streams, false))
	return cmd
}

// ProbeInstallOptions are the options of `kubectl mesh probe install`.
type ProbeInstallOptions struct {
	flags        *genericclioptions.ConfigFlags
	WebhookImage string
	ProbeImage   string
	// ProbeResources are the injected probe's requests and limits, passed to the webhook.
	ProbeResources inject.ResourceFlags
	// ProbeSampleAboveRPS is the injected probes' sampling threshold, passed to the webhook;
	// empty: the probe's default.
	ProbeSampleAboveRPS string
	CertManager         bool
	Wait                bool
	Timeout             time.Duration
	DryRun              bool
	genericiooptions.IOStreams

	objs    []*unstructured.Unstructured
	cfg     *rest.Config
	client  kubernetes.Interface
	applier *apply.Applier
}

func newCmdProbeInstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ProbeInstallOptions{flags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "install [--webhook-image IMG] [--probe-image IMG] [--probe-cpu-request Q ...] [--probe-sample-above-rps N] [--cert-manager] [--wait] [--timeout 2m] [--dry-run]",
		Short: "Install the webhook that injects the probe (server-side apply of the embedded manifests)",
		Example: "  kubectl mesh probe install\n" +
			"  kubectl mesh probe install --probe-image registry.example.com/mesh-probe:v0.1.0 --webhook-image registry.example.com/mesh-webhook:v0.1.0\n" +
			"  kubectl mesh probe install --probe-cpu-request 100m --probe-cpu-limit 500m   # probes that keep up on saturated nodes\n" +
			"  kubectl mesh probe install --dry-run > kubectl-mesh.yaml",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOptions(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.WebhookImage, "webhook-image", manifests.DefaultWebhookImage, "webhook image")
	cmd.Flags().StringVar(&o.ProbeImage, "probe-image", manifests.DefaultProbeImage, "probe image the webhook injects")
	cmd.Flags().StringVar(&o.ProbeResources.CPURequest, "probe-cpu-request", "", "CPU request of each injected probe (default "+inject.DefaultCPURequest.String()+"; it is also the probe's share of a saturated node)")
	cmd.Flags().StringVar(&o.ProbeResources.CPULimit, "probe-cpu-limit", "", "CPU limit of each injected probe (default "+inject.DefaultCPULimit.String()+")")
	cmd.Flags().StringVar(&o.ProbeResources.MemoryRequest, "probe-memory-request", "", "memory request of each injected probe (default "+inject.DefaultMemoryRequest.String()+")")
	cmd.Flags().StringVar(&o.ProbeResources.MemoryLimit, "probe-memory-limit", "", "memory limit of each injected probe (default "+inject.DefaultMemoryLimit.String()+")")
	cmd.Flags().StringVar(&o.ProbeSampleAboveRPS, "probe-sample-above-rps", "", "requests per second above which each injected probe follows requests part of each period only (default 5000; 0: every request at any rate)")
	cmd.Flags().BoolVar(&o.CertManager, "cert-manager", false, "let cert-manager issue the webhook's certificate (it must be installed)")
	cmd.Flags().BoolVar(&o.Wait, "wait", true, "wait until the webhook is ready")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the manifests instead of applying them")
	return cmd
}

// options is what every command's Options implement.
type options interface {
	Complete() error
	Validate() error
	Run(context.Context) error
}

func runOptions(ctx context.Context, o options) error {
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	return o.Run(ctx)
}

// Complete renders the manifests and, unless this is a dry run, connects to the cluster.
func (o *ProbeInstallOptions) Complete() error {
	var err error
	o.objs, err = manifests.Render(manifests.Options{WebhookImage: o.WebhookImage, ProbeImage: o.ProbeImage, CertManager: o.CertManager,
		ExtraWebhookArgs: o.webhookArgs()})
	if err != nil {
		return err
	}
	if o.DryRun {
		return nil
	}
	o.cfg, o.client, err = clusterClient(o.flags)
	if err != nil {
		return err
	}
	o.applier, err = apply.New(o.cfg)
	return err
}

// webhookArgs are the mesh-webhook flags that carry the probe's settings.
func (o *ProbeInstallOptions) webhookArgs() []string {
	args := o.ProbeResources.Args()
	if o.ProbeSampleAboveRPS != "" {
		args = append(args, "--probe-sample-above-rps="+o.ProbeSampleAboveRPS)
	}
	return args
}

// Validate checks the flags.
func (o *ProbeInstallOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if strings.TrimSpace(o.WebhookImage) == "" || strings.TrimSpace(o.ProbeImage) == "" {
		return errors.New("--webhook-image and --probe-image must not be empty")
	}
	// The webhook would refuse to start with these; say it here, before anything is applied.
	res, err := o.ProbeResources.Resources()
	if err != nil {
		return err
	}
	if o.ProbeSampleAboveRPS != "" {
		if _, err := probeconfig.ParseSampleAboveRPS(o.ProbeSampleAboveRPS); err != nil {
			return fmt.Errorf("--probe-sample-above-rps %q: %v", o.ProbeSampleAboveRPS, err)
		}
	}
	return inject.Config{Resources: res}.Validate()
}

// Run applies and waits, showing what is not ready yet.
func (o *ProbeInstallOptions) Run(ctx context.Context) error {
	if o.DryRun {
		y, err := apply.YAML(o.objs)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(y)
		return err
	}
	if err := checkReachable(o.client); err != nil {
		return err
	}
	if err := waitNamespaceGone(ctx, o.client, manifests.Namespace, o.Timeout, o.Out); err != nil {
		return err
	}
	if err := o.applier.Apply(ctx, o.objs); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "applied %d objects to namespace %s\n", len(o.objs), manifests.Namespace)
	if !o.Wait {
		return nil
	}
	return waitWebhookReady(ctx, o.client, o.Timeout, o.Out)
}

// waitNamespaceGone waits while the namespace is being deleted (a recent uninstall): nothing can
// be created in a terminating namespace, and the error would be a confusing "forbidden".
func waitNamespaceGone(ctx context.Context, cs kubernetes.Interface, name string, timeout time.Duration, out io.Writer) error {
	deadline := time.Now().Add(timeout)
	said := false
	for {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && ns.DeletionTimestamp == nil) {
			return nil
		}
		if err != nil {
			return err
		}
		if !said {
			fmt.Fprintf(out, "namespace %s is being deleted (an earlier uninstall); waiting for it to go\n", name)
			said = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s is still being deleted after %s: check what holds it (kubectl get namespace %s -o yaml: status.conditions)", name, timeout, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func clusterClient(flags *genericclioptions.ConfigFlags) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	return cfg, cs, err
}

// checkReachable turns a dead cluster into one clear line instead of a retry storm.
func checkReachable(cs kubernetes.Interface) error {
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("cluster unreachable: %v (check --kubeconfig/--context, and that the API server runs)", err)
	}
	return nil
}

// waitWebhookReady waits for the webhook Deployment and explains what holds it up: image pull
// problems, crash loops with the last log lines, Pod Security rejections, unschedulable pods.
func waitWebhookReady(ctx context.Context, cs kubernetes.Interface, timeout time.Duration, out io.Writer) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		d, err := cs.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.WebhookDeployment, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("webhook Deployment: %w", err)
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		problem := webhookProblem(ctx, cs)
		status := fmt.Sprintf("webhook: %d/%d ready%s", d.Status.ReadyReplicas, want, problem)
		if status != last {
			fmt.Fprintln(out, status)
			last = status
		}
		if d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas >= want && d.Status.UpdatedReplicas >= want {
			if err := waitReachable(ctx, cs, time.Until(deadline), out); err != nil {
				return err
			}
			fmt.Fprintln(out, "probe injector is ready; opt a namespace in with the label kubectl-mesh.io/probe=enabled")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook not ready after %s%s", timeout, problem)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// waitReachable proves the API server reaches the webhook with a dry-run admission in the
// "default" namespace, when that namespace neither opts out nor enforces Pod Security (either
// would make the webhook rightly skip the test pod).
func waitReachable(ctx context.Context, cs kubernetes.Interface, timeout time.Duration, out io.Writer) error {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(out, "skipping the admission check: %v\n", err)
		return nil
	}
	if _, labelled := ns.Labels["kubectl-mesh.io/probe"]; labelled || ns.Labels["pod-security.kubernetes.io/enforce"] != "" {
		fmt.Fprintln(out, "skipping the admission check: namespace default has its own probe or Pod Security setting")
		return nil
	}
	if timeout < 10*time.Second {
		timeout = 10 * time.Second
	}
	if err := check.WaitAdmission(ctx, cs, "default", timeout); err != nil {
		return fmt.Errorf("webhook pods are ready but the API server does not reach them: %w", err)
	}
	fmt.Fprintln(out, "admission check: the API server injects the probe (dry run)")
	return nil
}

func webhookProblem(ctx context.Context, cs kubernetes.Interface) string {
	pods, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=mesh-webhook"})
	if err != nil {
		return ""
	}
	if len(pods.Items) == 0 {
		// No pods: the ReplicaSet may be refused (Pod Security, quota); its events say why.
		evs, err := cs.CoreV1().Events(manifests.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
		if err == nil && len(evs.Items) > 0 {
			return ": pods cannot be created: " + evs.Items[len(evs.Items)-1].Message
		}
		return ": no pods yet"
	}
	for _, p := range pods.Items {
		if msg := podTrouble(&p); msg != "" {
			return fmt.Sprintf(": pod %s: %s", p.Name, msg)
		}
	}
	return ""
}

// podTrouble names the first thing wrong with a pod, in words a user can act on.
func podTrouble(p *corev1.Pod) string {
	return podTroubleHint(p, "check --webhook-image/--probe-image and registry access")
}

// podTroubleHint is podTrouble with imageHint saying what to check when an image cannot be
// pulled, which depends on who chose the image (our flags, or a mesh chart's values).
func podTroubleHint(p *corev1.Pod, imageHint string) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + c.Message
		}
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := s.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				return fmt.Sprintf("cannot pull image %s (%s): %s", s.Image, w.Reason, imageHint)
			case "CrashLoopBackOff":
				msg := "container " + s.Name + " keeps crashing"
				if t := s.LastTerminationState.Terminated; t != nil && t.Message != "" {
					msg += ": " + strings.TrimSpace(t.Message)
				}
				return msg + " (kubectl -n " + p.Namespace + " logs " + p.Name + " -c " + s.Name + " --previous)"
			case "CreateContainerConfigError":
				return "container " + s.Name + ": " + w.Message
			}
		}
	}
	return ""
}

func newCmdProbeUninstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the webhook (pods already carrying the probe keep it until they are restarted)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := manifests.Render(manifests.Options{})
			if err != nil {
				return err
			}
			cfg, cs, err := clusterClient(flags)
			if err != nil {
				return err
			}
			if err := checkReachable(cs); err != nil {
				return err
			}
			ap, err := apply.New(cfg)
			if err != nil {
				return err
			}
			// The webhook configuration goes first (Delete walks the list backwards and it is
			// last), so the API server stops calling a webhook that is being removed.
			if err := ap.Delete(cmd.Context(), objs); err != nil {
				return err
			}
			_ = cs.CoreV1().Secrets(manifests.Namespace).Delete(cmd.Context(), manifests.TLSSecret, metav1.DeleteOptions{})
			fmt.Fprintln(streams.Out, "probe injector removed")
			return nil
		},
	}
}

func newCmdProbeStatus(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the probe injector is installed and ready",
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, cs, err := clusterClient(flags)
			if err != nil {
				return err
			}
			if err := checkReachable(cs); err != nil {
				return err
			}
			ctx := cmd.Context()
			d, err := cs.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.WebhookDeployment, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("probe injector not installed (run: kubectl mesh probe install)")
			}
			if err != nil {
				return err
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			fmt.Fprintf(streams.Out, "webhook: %d/%d ready%s\n", d.Status.ReadyReplicas, want, webhookProblem(ctx, cs))
			if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manifests.WebhookConfig, metav1.GetOptions{}); err != nil {
				fmt.Fprintf(streams.Out, "MutatingWebhookConfiguration %s: %v\n", manifests.WebhookConfig, err)
			}
			nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "kubectl-mesh.io/probe=enabled"})
			if err == nil {
				var names []string
				for _, n := range nss.Items {
					names = append(names, n.Name)
				}
				if len(names) == 0 {
					names = []string{"none (kubectl label namespace NAME kubectl-mesh.io/probe=enabled)"}
				}
				fmt.Fprintf(streams.Out, "opted-in namespaces: %s\n", strings.Join(names, ", "))
			}
			if d.Status.ReadyReplicas < want {
				return fmt.Errorf("probe injector not ready")
			}
			return nil
		},
	}
}
