package cmd

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
)

// meshImageHint is what to check when a mesh's image cannot be pulled: the chart chose it.
const meshImageHint = "the node cannot pull it: check the image name and the node's access to its registry; " +
	"for an air-gapped cluster, mirror the images and point the chart at the mirror with --set (Istio: global.hub; Linkerd: the *.image.name values)"

// waitWorkloads waits until every workload is ready, printing a line whenever what is not ready,
// or why, changes; on timeout the error says, on one line, what is still not ready and why.
func waitWorkloads(ctx context.Context, cs kubernetes.Interface, wl []meshes.Workload, timeout time.Duration, out io.Writer) error {
	if len(wl) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	shown := map[string]string{}
	for {
		var pending []string
		for _, w := range wl {
			line, ready := workloadState(ctx, cs, w)
			if ready {
				if _, was := shown[w.String()]; was {
					fmt.Fprintf(out, "  ready: %s\n", w)
					delete(shown, w.String())
				}
				continue
			}
			pending = append(pending, line)
			if shown[w.String()] != line {
				fmt.Fprintf(out, "  waiting: %s\n", line)
				shown[w.String()] = line
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %s", timeout, strings.Join(pending, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w while waiting: %s", ctx.Err(), strings.Join(pending, "; "))
		case <-time.After(time.Second):
		}
	}
}

// workloadState reads a workload and, when it is not ready, says why.
func workloadState(ctx context.Context, cs kubernetes.Interface, w meshes.Workload) (string, bool) {
	var ready, want int32
	var sel *metav1.LabelSelector
	var settled bool
	switch w.Kind {
	case "Deployment":
		d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("%s: %v", w, err), false
		}
		ready, want = meshes.DeploymentReadiness(d)
		sel, settled = d.Spec.Selector, true
	case "StatefulSet":
		s, err := cs.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("%s: %v", w, err), false
		}
		want = ptr.Deref(s.Spec.Replicas, 1)
		ready, sel = min(s.Status.ReadyReplicas, s.Status.UpdatedReplicas), s.Spec.Selector
		settled = s.Status.ObservedGeneration >= s.Generation
	case "DaemonSet":
		d, err := cs.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("%s: %v", w, err), false
		}
		want = d.Status.DesiredNumberScheduled
		ready, sel = min(d.Status.NumberReady, d.Status.UpdatedNumberScheduled), d.Spec.Selector
		settled = d.Status.ObservedGeneration >= d.Generation
	default:
		return "", true
	}
	if settled && ready >= want {
		return "", true
	}
	line := fmt.Sprintf("%s %d/%d ready", w, ready, want)
	if why := workloadProblem(ctx, cs, w, sel); why != "" {
		line += ": " + why
	}
	return line, false
}

// workloadProblem explains a workload that is not ready from its pods, or from the events of
// its controller when it has none (Pod Security or a quota refusing them).
func workloadProblem(ctx context.Context, cs kubernetes.Interface, w meshes.Workload, sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || sel == nil {
		return ""
	}
	pods, err := cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return ""
	}
	if len(pods.Items) == 0 {
		evs, err := cs.CoreV1().Events(w.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
		if err == nil {
			sort.Slice(evs.Items, func(i, j int) bool { return eventTime(&evs.Items[i]).Before(eventTime(&evs.Items[j])) })
			for i := len(evs.Items) - 1; i >= 0; i-- {
				if strings.HasPrefix(evs.Items[i].InvolvedObject.Name, w.Name) {
					return "pods cannot be created: " + evs.Items[i].Message
				}
			}
		}
		return "no pods yet"
	}
	// The newest pods first: during a rollout they are the ones that matter.
	items := pods.Items
	sort.Slice(items, func(i, j int) bool { return items[j].CreationTimestamp.Before(&items[i].CreationTimestamp) })
	for i := range items {
		if msg := meshPodTrouble(ctx, cs, &items[i]); msg != "" {
			return "pod " + items[i].Name + ": " + msg
		}
	}
	p := &items[0]
	if p.Status.Phase == corev1.PodPending {
		if ev := lastWarning(ctx, cs, p); ev != "" {
			return "pod " + p.Name + " pending: " + ev
		}
		return "pod " + p.Name + " pending"
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			msg := "pod " + p.Name + ": container " + c.Name + " is not ready"
			if ev := lastWarning(ctx, cs, p); ev != "" {
				msg += ": " + ev
			}
			return msg
		}
	}
	return ""
}

// meshPodTrouble is podTrouble with more of the cause: the kubelet's message for an image that
// cannot be pulled, and the last lines a crashing container logged.
func meshPodTrouble(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) string {
	msg := podTroubleHint(p, meshImageHint)
	if msg == "" {
		return ""
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		w := s.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff":
			if w.Message != "" {
				msg += " (kubelet: " + shorten(w.Message, 240) + ")"
			}
			return msg
		case "CrashLoopBackOff":
			if logs := lastLogLines(ctx, cs, p, s.Name, 5); logs != "" {
				msg += "; last log lines: " + logs
			}
			return msg
		}
	}
	return msg
}

// lastLogLines reads the last lines the previous run of a container logged, joined with " | ".
func lastLogLines(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, container string, n int64) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, Previous: true, TailLines: &n, LimitBytes: ptr.To[int64](4096)}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, shorten(l, 200))
		}
	}
	return strings.Join(lines, " | ")
}

// lastWarning is the newest Warning event of a pod (a volume that cannot be mounted, a failing
// readiness probe).
func lastWarning(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) string {
	evs, err := cs.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "type=Warning,involvedObject.name=" + p.Name,
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	sort.Slice(evs.Items, func(i, j int) bool { return eventTime(&evs.Items[i]).Before(eventTime(&evs.Items[j])) })
	e := evs.Items[len(evs.Items)-1]
	return e.Reason + ": " + shorten(e.Message, 240)
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// statusTrouble explains a control plane pod for `kubectl mesh status`, without extra requests
// per pod (status answers from lists it already made).
func statusTrouble(p *corev1.Pod) string {
	if msg := podTroubleHint(p, "check the image and the node's access to its registry"); msg != "" {
		return msg
	}
	if p.Status.Phase == corev1.PodPending {
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && w.Reason != "" {
				return "pending (" + s.Name + ": " + w.Reason + ")"
			}
		}
		return "pending"
	}
	return ""
}
