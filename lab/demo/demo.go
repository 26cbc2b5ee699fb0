// Package demo is the lab's demo application: mesh-echo with a configurable service time behind
// the lab's sidecar (lab/sidecar), served by a Service with two ports: "http", which the sidecar
// intercepts, and "direct", which it does not, the way a mesh's excluded inbound port reaches the
// same pods past their proxy. `make demo` and the end-to-end tests deploy it; `kubectl mesh perf
// run svc/NAME:http --baseline svc/NAME:direct` then measures the same pods with and without the
// proxy.
package demo

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar"
)

// The application's ports: AppPort is intercepted by the sidecar, DirectPort is not.
const (
	AppPort    = 8080
	DirectPort = 8081
	// Service ports and their names, the targets of perf runs.
	ServiceHTTP   = "http"
	ServiceDirect = "direct"
)

// Options describe one demo application.
type Options struct {
	Namespace, Name string
	Replicas        int32
	// ServiceTime is the application's own time per request.
	ServiceTime time.Duration
	// Sidecar adds the lab sidecar; nil deploys the application alone.
	Sidecar *sidecar.Options
}

// Objects returns the Deployment and Service.
func Objects(o Options) (*appsv1.Deployment, *corev1.Service, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	labels := map[string]string{"app": o.Name}
	restricted := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "echo",
				Image:           lab.ImageRef("mesh-echo"),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"serve", fmt.Sprintf("--listen=:%d,:%d", AppPort, DirectPort),
					"--service-time=" + o.ServiceTime.String()},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: AppPort}, {Name: "direct", ContainerPort: DirectPort}},
				// The kubelet checks the port the proxy does not intercept, as Istio rewrites
				// application probes to bypass the proxy: probes are not the load under test.
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(DirectPort)}},
					PeriodSeconds: 2},
				SecurityContext: restricted,
			}},
			SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			TerminationGracePeriodSeconds: ptr.To[int64](2),
		},
	}
	if o.Sidecar != nil {
		sc := *o.Sidecar
		sc.AppPort = AppPort
		if err := sidecar.Add(&tmpl.ObjectMeta, &tmpl.Spec, sc); err != nil {
			return nil, nil, err
		}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: tmpl,
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: ServiceHTTP, Port: 80, TargetPort: intstr.FromString("http")},
			{Name: ServiceDirect, Port: 81, TargetPort: intstr.FromString("direct")},
		}},
	}
	return d, s, nil
}

// Deploy creates or replaces the application and waits until its Deployment is available.
func Deploy(ctx context.Context, cs kubernetes.Interface, o Options, timeout time.Duration) error {
	d, s, err := Objects(o)
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Services(o.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("demo: service: %w", err)
	}
	err = lab.CreateWithRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := cs.AppsV1().Deployments(o.Namespace).Create(ctx, d, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := cs.AppsV1().Deployments(o.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			d.ResourceVersion = cur.ResourceVersion
			_, err = cs.AppsV1().Deployments(o.Namespace).Update(ctx, d, metav1.UpdateOptions{})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: deployment: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		cur, err := cs.AppsV1().Deployments(o.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err == nil && cur.Status.ObservedGeneration >= cur.Generation && cur.Status.UpdatedReplicas == o.replicas() &&
			cur.Status.AvailableReplicas == o.replicas() && cur.Status.Replicas == o.replicas() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s/%s not available within %s%s", o.Namespace, o.Name, timeout, lab.PodProblems(ctx, cs, o.Namespace, d.Spec.Selector))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (o Options) replicas() int32 {
	if o.Replicas == 0 {
		return 1
	}
	return o.Replicas
}
