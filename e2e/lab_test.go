//go:build e2e

// Package e2e holds the integration tests that run against the lab: a real kube-apiserver,
// kubelet, containerd and pods. They need root and bring the lab up and down themselves.
package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/lab/proc"
)

func newLab(t testing.TB) *lab.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates a network namespace, cgroups and mounts")
	}
	l := lab.DefaultLayout()
	if !filepath.IsAbs(l.RepoDir) || l.RepoDir == "." {
		l.RepoDir, _ = filepath.Abs("..")
	}
	if !filepath.IsAbs(l.BinDir) {
		l.BinDir = filepath.Join(l.RepoDir, "bin")
	}
	self := filepath.Join(l.BinDir, "mesh-lab")
	if _, err := os.Stat(self); err != nil {
		t.Fatalf("%s missing: run `make build` first (make e2e does)", self)
	}
	return &lab.Lab{Layout: l, Out: testWriter{t}, SelfExe: self}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// componentPIDs reads every PID the lab recorded (components) plus containerd's shims.
func componentPIDs(t testing.TB, l *lab.Lab) map[string]*proc.Process {
	out := map[string]*proc.Process{}
	for _, c := range []string{"etcd", "containerd", "kube-apiserver", "api-relay", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		p, err := proc.Load(l.PIDDir(), l.LogDir(), c)
		if err != nil {
			t.Fatalf("no PID file for %s: %v", c, err)
		}
		out[c] = p
	}
	return out
}

func cniNetns() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cni-") {
			m[e.Name()] = true
		}
	}
	return m
}

// TestLabUpAndWorkload: (TestMain brought the lab up) a second up is harmless, kubectl with the
// printed kubeconfig sees one Ready node, and a two-replica Deployment of our image is reached
// through its Service by DNS name from another pod.
func TestLabUpAndWorkload(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	first := componentPIDs(t, l)

	// Up twice is harmless: same processes, still healthy.
	if _, err := l.Up(ctx); err != nil {
		t.Fatalf("second lab up: %v", err)
	}
	for name, p := range componentPIDs(t, l) {
		if p.PID != first[name].PID {
			t.Errorf("second up restarted %s (pid %d -> %d)", name, first[name].PID, p.PID)
		}
	}

	// kubectl, with the kubeconfig lab-up printed, sees exactly one Ready node.
	kubectl := filepath.Join(l.KubeBinDir(), "kubectl")
	out, err := exec.Command(kubectl, "--kubeconfig", l.Kubeconfig(), "get", "nodes", "--no-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nodes: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], " Ready ") || !strings.HasPrefix(lines[0], l.NodeName) {
		t.Fatalf("kubectl get nodes: want one Ready node %s, got:\n%s", l.NodeName, out)
	}
	out, err = exec.Command(kubectl, "--kubeconfig", l.Kubeconfig(), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Server Version: "+lab.KubeVersion) {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}

	// A Deployment of two replicas of our image, reached by DNS name from another pod.
	cs, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	ns := "e2e-lab"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, s := lab.EchoWorkload(ns, "hello", 2)
	if _, err := cs.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createDeployment(ctx, t, cs, d)
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err == nil && got.Status.AvailableReplicas == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment hello not available with 2 replicas: %+v", got.Status)
		}
		time.Sleep(300 * time.Millisecond)
	}
	url := "http://hello." + ns + ".svc.cluster.local/dns-check"
	if err := lab.CreateWithRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, lab.ClientPod(ns, "client", url), metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitPodSucceeded(ctx, cs, ns, "client", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if log := lab.PodLog(ctx, cs, ns, "client"); !strings.Contains(log, "200 OK") || !strings.Contains(log, "GET /dns-check") {
		t.Fatalf("client pod log does not show the echo answer:\n%s", log)
	}
}

func killNow(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// hostKubeRules lists iptables chains or rules in the host's own namespace that kube-proxy or
// kubelet would have written (KUBE-*), through both iptables back ends.
func hostKubeRules(t *testing.T) []string {
	var found []string
	ran := false
	for _, cmd := range []string{"iptables-save", "iptables-legacy-save", "iptables-nft-save"} {
		path, err := exec.LookPath(cmd)
		if err != nil {
			continue
		}
		out, err := exec.Command(path).Output()
		if err != nil {
			continue
		}
		ran = true
		s := bufio.NewScanner(strings.NewReader(string(out)))
		for s.Scan() {
			if strings.Contains(s.Text(), "KUBE-") {
				found = append(found, cmd+": "+s.Text())
			}
		}
	}
	if !ran {
		t.Fatal("no iptables-save could run in the host's namespace: cannot check for left-behind rules")
	}
	return found
}

// createDeployment creates d in its namespace, retrying while the lab's API server still
// refuses (lab.CreateWithRetry: a new namespace's service account not there yet, and the like).
func createDeployment(ctx context.Context, t testing.TB, cs kubernetes.Interface, d *appsv1.Deployment) {
	t.Helper()
	if err := lab.CreateWithRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := cs.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
