package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func mustQty(s string) resource.Quantity { return resource.MustParse(s) }

// SmokeNamespace is where lab-up proves the cluster works.
const SmokeNamespace = "lab-smoke"

// EchoWorkload returns a Deployment and Service of the mesh-echo HTTP server: the smallest real
// workload made from our own image. Tests and the smoke check use it.
func EchoWorkload(ns, name string, replicas int32) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            "echo",
						Image:           ImageRef("mesh-echo"),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"serve", "--listen=:8080"},
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1},
						SecurityContext: restrictedContainer(),
					}},
					SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					TerminationGracePeriodSeconds: ptr.To[int64](2),
				},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
		}},
	}
	return d, s
}

// ClientPod returns a pod that GETs url (retrying while DNS and endpoints settle) and exits 0 on
// a 200 answer.
func ClientPod(ns, name, url string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "get",
				Image:           ImageRef("mesh-echo"),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"get", "--retry-for=60s", url},
				SecurityContext: restrictedContainer(),
			}},
			SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
}

// CreateWithRetry creates obj, retrying while the namespace's default ServiceAccount does not
// exist yet (the ServiceAccount admission plugin refuses pods until it does).
func CreateWithRetry(ctx context.Context, timeout time.Duration, create func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := create(ctx)
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if time.Now().After(deadline) || !(apierrors.IsForbidden(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err)) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitPodSucceeded waits for a run-to-completion pod and returns its log when it fails.
func WaitPodSucceeded(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			switch p.Status.Phase {
			case corev1.PodSucceeded:
				return nil
			case corev1.PodFailed:
				return fmt.Errorf("pod %s/%s failed: %s\n%s", ns, name, describePod(p), PodLog(ctx, cs, ns, name))
			}
		}
		if time.Now().After(deadline) {
			state := "not found"
			if p != nil {
				state = describePod(p)
			}
			return fmt.Errorf("pod %s/%s did not succeed within %s: %s\n%s", ns, name, timeout, state, PodLog(ctx, cs, ns, name))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// PodLog returns the end of a pod's log (through the API server and kubelet), for errors.
func PodLog(ctx context.Context, cs kubernetes.Interface, ns, name string) string {
	rc, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{TailLines: ptr.To[int64](20)}).Stream(ctx)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 16384))
	return string(b)
}

// smokeTest proves the lab end to end: an echo Deployment behind a Service, and a pod that
// reaches it by DNS name. It removes its namespace afterwards.
func (lab *Lab) smokeTest(ctx context.Context, cs kubernetes.Interface) error {
	ns := SmokeNamespace
	if err := create(ctx, "namespace "+ns, func(ctx context.Context) (*corev1.Namespace, error) {
		return cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	}); err != nil {
		return err
	}
	d, s := EchoWorkload(ns, "echo", 1)
	if err := create(ctx, "echo Service", func(ctx context.Context) (*corev1.Service, error) {
		return cs.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
	}); err != nil {
		return err
	}
	if err := CreateWithRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("lab: smoke: %w", err)
	}
	url := fmt.Sprintf("http://echo.%s.svc.cluster.local/smoke", ns)
	if err := CreateWithRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, ClientPod(ns, "smoke-client", url), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("lab: smoke: %w", err)
	}
	if err := WaitPodSucceeded(ctx, cs, ns, "smoke-client", 90*time.Second); err != nil {
		return fmt.Errorf("lab: smoke test (a pod reaching a Service by DNS name) failed: %w%s", err, PodProblems(ctx, cs, ns, d.Spec.Selector))
	}
	_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	return nil
}

// WaitPodRunning waits until every container of a pod runs and is ready.
func WaitPodRunning(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if ready {
				return nil
			}
		}
		if time.Now().After(deadline) {
			state := "not found"
			if p != nil {
				state = describePod(p)
			}
			return fmt.Errorf("pod %s/%s not running and ready within %s: %s", ns, name, timeout, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
