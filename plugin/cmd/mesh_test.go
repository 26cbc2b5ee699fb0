package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
)

func runMesh(args ...string) (string, error) {
	var out bytes.Buffer
	root := NewCmdMesh(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// Bad command lines are usage errors (exit code 2), found before the cluster is touched (the
// server named here does not exist).
func TestMeshCommandsRejectBadFlags(t *testing.T) {
	const nowhere = "--server=https://127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "nosuchmesh", nowhere}, `unknown mesh "nosuchmesh" (known: istio, linkerd`},
		{[]string{"install", "istio", "--chart", "/tmp", "--chart-repo", "https://example.com/charts", nowhere}, "exclude each other"},
		{[]string{"install", "istio", "--chart-repo", "ftp://example.com/charts", nowhere}, "want an http(s) URL"},
		{[]string{"install", "istio", "--chart", "/nonexistent/charts", nowhere}, "want a directory of charts"},
		{[]string{"install", "istio", "--with", "kiali", nowhere}, "istio's optional charts are cni, gateway"},
		{[]string{"install", "istio", "--set", "istiodd:pilot.x=1", nowhere}, `no chart of istio is named "istiodd"`},
		{[]string{"install", "istio", "--timeout", "0s", nowhere}, "--timeout must be positive"},
		{[]string{"uninstall", "nosuchmesh", nowhere}, "unknown mesh"},
		{[]string{"status", "-o", "xml", nowhere}, "want table, json or yaml"},
		{[]string{"inject", "enable", "-n", "demo", "--mesh", "nosuchmesh", nowhere}, "unknown mesh"},
	} {
		_, err := runMesh(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != ExitUsage {
			t.Errorf("%v: got %v (exit code %d), want a usage error with %q", tc.args, err, ExitCode(err), tc.want)
		}
	}
}

func TestMeshStatusUnreachableCluster(t *testing.T) {
	_, err := runMesh("status", "--server", "https://127.0.0.1:1", "--insecure-skip-tls-verify")
	if err == nil || !strings.Contains(err.Error(), "cluster unreachable") || ExitCode(err) != ExitError {
		t.Fatalf("want a one-line 'cluster unreachable', got %v", err)
	}
}

func notReady(ns, name string, pod *corev1.Pod) *fake.Clientset {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1},
	}
	pod.Namespace, pod.Labels = ns, map[string]string{"app": name}
	return fake.NewClientset(d, pod)
}

// The wait's diagnosis names the cause and, on timeout, fails on one line with it.
func TestWaitWorkloadsDiagnosis(t *testing.T) {
	w := []meshes.Workload{{Kind: "Deployment", Namespace: "istio-system", Name: "istiod"}}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		wants []string
	}{
		{"image pull", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-1"}, Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "discovery", Image: "mirror.internal/pilot:1.28.0", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "ImagePullBackOff", Message: `Back-off pulling image "mirror.internal/pilot:1.28.0": ErrImagePull: not found`}}}}}},
			[]string{"pod istiod-1: cannot pull image mirror.internal/pilot:1.28.0 (ImagePullBackOff)", "global.hub", "kubelet: Back-off pulling image"}},
		{"crash loop", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-2"}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "discovery", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "invalid mesh config"}}}}}},
			// The fake clientset answers every log request with "fake logs".
			[]string{"container discovery keeps crashing: invalid mesh config", "last log lines: fake logs"}},
		{"unschedulable", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-3"}, Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/3 nodes are available: 3 Insufficient memory."}}}},
			[]string{"pod istiod-3: not scheduled: 0/3 nodes are available: 3 Insufficient memory."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := notReady("istio-system", "istiod", tc.pod)
			var out bytes.Buffer
			err := waitWorkloads(context.Background(), cs, w, time.Millisecond, &out)
			if err == nil {
				t.Fatal("a Deployment with 0/1 ready pods passed the wait")
			}
			msg := err.Error()
			for _, want := range append([]string{"not ready after 1ms: Deployment istio-system/istiod 0/1 ready"}, tc.wants...) {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if !strings.Contains(out.String(), "waiting: Deployment istio-system/istiod 0/1 ready") {
				t.Errorf("no live line: %q", out.String())
			}
		})
	}
}

func TestWaitWorkloadsNoPodsExplainsFailedCreate(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "linkerd", Name: "linkerd-destination", Generation: 1},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}}},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 1},
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "linkerd", Name: "e1"}, Reason: "FailedCreate",
		InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Name: "linkerd-destination-7d9f"},
		Message:        `pods "linkerd-destination-7d9f-x" is forbidden: violates PodSecurity "restricted:latest": capabilities`}
	cs := fake.NewClientset(d, ev)
	err := waitWorkloads(context.Background(), cs, []meshes.Workload{{Kind: "Deployment", Namespace: "linkerd", Name: "linkerd-destination"}}, time.Millisecond, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "pods cannot be created: pods \"linkerd-destination-7d9f-x\" is forbidden: violates PodSecurity") {
		t.Fatalf("got %v", err)
	}
}

func TestWaitWorkloadsReady(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod", Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2},
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-cni-node", Generation: 1},
		Status:     appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, NumberReady: 3, UpdatedNumberScheduled: 3},
	}
	cs := fake.NewClientset(d, ds)
	var out bytes.Buffer
	err := waitWorkloads(context.Background(), cs, []meshes.Workload{{Kind: "Deployment", Namespace: "istio-system", Name: "istiod"},
		{Kind: "DaemonSet", Namespace: "istio-system", Name: "istio-cni-node"}}, time.Second, &out)
	if err != nil || out.Len() != 0 {
		t.Fatalf("ready workloads: %v, printed %q", err, out.String())
	}
}

// The probe's callers keep their message; the mesh wait gets the mesh's hint.
func TestPodTroubleHintKeepsProbeMessage(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: "webhook", Image: "x/y:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}},
	}}}}
	if got := podTrouble(p); got != "cannot pull image x/y:1 (ErrImagePull): check --webhook-image/--probe-image and registry access" {
		t.Errorf("podTrouble = %q", got)
	}
	if got := podTroubleHint(p, "mirror it"); got != "cannot pull image x/y:1 (ErrImagePull): mirror it" {
		t.Errorf("podTroubleHint = %q", got)
	}
}
