// Package check proves that the API server can reach the probe-injection webhook: Ready pods
// are not enough, since the API server calls the webhook through its Service, whose endpoints
// and proxy rules follow readiness only after a moment, and the configuration's caBundle must
// match the served certificate. With failurePolicy Ignore, every admission in that window would
// silently skip the probe.
package check

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Admission creates a pod with a server-side dry run (mutating webhooks run, nothing is stored,
// and our webhook records no event for dry runs) in namespace ns, opting the pod in by label,
// and reports whether the answer carries the probe. ns must not opt out.
func Admission(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubectl-mesh-check-", Namespace: ns,
			Labels: map[string]string{inject.LabelProbe: inject.ValueEnabled}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "check", Image: "kubectl-mesh.local/check:none",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return fmt.Errorf("dry-run pod create in %s: %w", ns, err)
	}
	for _, c := range append(append([]corev1.Container{}, got.Spec.InitContainers...), got.Spec.Containers...) {
		if c.Name == inject.ProbeContainerName {
			return nil
		}
	}
	return fmt.Errorf("the API server admitted a test pod in %s without the probe: it cannot reach the webhook yet (or the namespace opts out)", ns)
}

// WaitAdmission repeats Admission until it succeeds or timeout passes.
func WaitAdmission(ctx context.Context, cs kubernetes.Interface, ns string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := Admission(ctx, cs, ns)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
