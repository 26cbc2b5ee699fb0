package cmd

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestProbeInstallDryRunPrintsManifests(t *testing.T) {
	var out bytes.Buffer
	root := NewCmdMesh(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	root.SetArgs([]string{"probe", "install", "--dry-run", "--probe-image", "example.com/p:v1"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"kind: MutatingWebhookConfiguration", "kind: Deployment", "--probe-image=example.com/p:v1", "failurePolicy: Ignore"} {
		if !strings.Contains(s, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
}

// The sampling threshold reaches the webhook's command line, which passes it to every probe.
func TestProbeInstallPassesSampling(t *testing.T) {
	out, err := runMesh("probe", "install", "--dry-run", "--probe-sample-above-rps", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--probe-sample-above-rps=0") {
		t.Errorf("dry-run output lacks --probe-sample-above-rps=0:\n%s", out)
	}
	if _, err := runMesh("probe", "install", "--dry-run", "--probe-sample-above-rps", "-5"); err == nil || !strings.Contains(err.Error(), "--probe-sample-above-rps") {
		t.Fatalf("want a --probe-sample-above-rps error, got %v", err)
	}
}

func TestProbeInstallRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	root := NewCmdMesh(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	root.SetArgs([]string{"probe", "install", "--dry-run", "--timeout", "-1s"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Fatalf("want a --timeout error, got %v", err)
	}
}

func TestProbeInstallUnreachableCluster(t *testing.T) {
	var out bytes.Buffer
	root := NewCmdMesh(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	// A loopback port nothing listens on: the error must say the cluster is unreachable.
	root.SetArgs([]string{"probe", "install", "--server", "https://127.0.0.1:1", "--insecure-skip-tls-verify"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "cluster unreachable") {
		t.Fatalf("want a one-line 'cluster unreachable', got %v", err)
	}
}

func TestPodTroubleExplainsImagePull(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: "webhook", Image: "nowhere.example/x:1",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}},
	}}}}
	if got := podTrouble(p); !strings.Contains(got, "cannot pull image nowhere.example/x:1") {
		t.Fatalf("podTrouble = %q", got)
	}
}
