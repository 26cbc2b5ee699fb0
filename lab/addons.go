package lab

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func (lab *Lab) caPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(lab.PKIDir(), "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("lab: bad CA certificate")
	}
	return pool, nil
}

// corefile serves the cluster zone only. Port 1053 inside the pod lets CoreDNS run as a
// non-root user without NET_BIND_SERVICE; the Service maps 53 to it.
const corefile = `.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
    loadbalance
}
`

func create[T any](ctx context.Context, what string, f func(context.Context) (T, error)) error {
	_, err := f(ctx)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("lab: create %s: %w", what, err)
	}
	return nil
}

// deployDNS installs CoreDNS as the cluster's DNS (Service kube-dns at DNSIP) and waits until
// it is available.
func (lab *Lab) deployDNS(ctx context.Context, cs kubernetes.Interface) error {
	ns := "kube-system"
	labels := map[string]string{"k8s-app": "kube-dns"}
	om := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	steps := []error{
		create(ctx, "coredns ServiceAccount", func(ctx context.Context) (*corev1.ServiceAccount, error) {
			return cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: om("coredns")}, metav1.CreateOptions{})
		}),
		create(ctx, "coredns ClusterRole", func(ctx context.Context) (*rbacv1.ClusterRole, error) {
			return cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
					{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
				},
			}, metav1.CreateOptions{})
		}),
		create(ctx, "coredns ClusterRoleBinding", func(ctx context.Context) (*rbacv1.ClusterRoleBinding, error) {
			return cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "coredns", Namespace: ns}},
			}, metav1.CreateOptions{})
		}),
		create(ctx, "coredns ConfigMap", func(ctx context.Context) (*corev1.ConfigMap, error) {
			return cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: om("coredns"), Data: map[string]string{"Corefile": corefile}}, metav1.CreateOptions{})
		}),
		create(ctx, "kube-dns Service", func(ctx context.Context) (*corev1.Service, error) {
			return cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
				ObjectMeta: om("kube-dns"),
				Spec: corev1.ServiceSpec{ClusterIP: lab.DNSIP, Selector: labels, Ports: []corev1.ServicePort{
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(1053)},
					{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(1053)},
				}},
			}, metav1.CreateOptions{})
		}),
		create(ctx, "coredns Deployment", func(ctx context.Context) (*appsv1.Deployment, error) {
			return cs.AppsV1().Deployments(ns).Create(ctx, lab.corednsDeployment(labels), metav1.CreateOptions{})
		}),
	}
	for _, err := range steps {
		if err != nil {
			return err
		}
	}
	return lab.waitFor(ctx, "kubelet", 90*time.Second, func(ctx context.Context) error {
		return deploymentAvailable(ctx, cs, ns, "coredns")
	})
}

func (lab *Lab) corednsDeployment(labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "coredns",
					PriorityClassName:  "system-cluster-critical",
					DNSPolicy:          corev1.DNSDefault, // it is the DNS: it must not point at itself
					Containers: []corev1.Container{{
						Name:            "coredns",
						Image:           ImageRef("coredns"),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 1053, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 1053, Protocol: corev1.ProtocolTCP},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
							PeriodSeconds: 1},
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 10, FailureThreshold: 5},
						Resources:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mustQty("170Mi")}},
						SecurityContext: restrictedContainer(),
					}},
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}}}}},
					Tolerations: []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
}

// restrictedContainer is a container security context that passes Pod Security "restricted".
func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

func deploymentAvailable(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= want && d.Status.UpdatedReplicas >= want {
		return nil
	}
	return fmt.Errorf("deployment %s/%s: %d of %d replicas available%s", ns, name, d.Status.AvailableReplicas, want, PodProblems(ctx, cs, ns, d.Spec.Selector))
}

// PodProblems describes what keeps the selected pods from being ready ("" when nothing is
// known), for error messages.
func PodProblems(ctx context.Context, cs kubernetes.Interface, ns string, sel *metav1.LabelSelector) string {
	if sel == nil {
		return ""
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(sel)})
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, fmt.Sprintf("%s: %s", p.Name, describePod(&p)))
	}
	if len(out) == 0 {
		return " (no pods yet)"
	}
	return " (" + strings.Join(out, "; ") + ")"
}

func describePod(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "unschedulable: " + c.Message
		}
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := s.State.Waiting; w != nil && w.Reason != "" {
			return fmt.Sprintf("container %s waiting: %s %s", s.Name, w.Reason, w.Message)
		}
		if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Sprintf("container %s exited %d: %s %s", s.Name, t.ExitCode, t.Reason, t.Message)
		}
	}
	return string(p.Status.Phase)
}
