//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/netns"
)

// TestZZLabCrashRecoveryAndDown runs last (files run in name order, and this one's name sorts
// last): every component killed at once, the next up cleans up and comes back, and down leaves
// no process, mount, namespace, cgroup, iptables rule or file behind.
func TestZZLabCrashRecoveryAndDown(t *testing.T) {
	l := newLab(t)
	if os.Getenv(keepLabEnv) == "1" {
		t.Skipf("%s=1: the lab is to stay up", keepLabEnv)
	}
	ctx := context.Background()
	for _, p := range componentPIDs(t, l) {
		_ = killNow(p.PID)
	}
	time.Sleep(500 * time.Millisecond)
	if ok, _ := l.Running(); ok {
		t.Fatal("lab still reported running after its components were killed")
	}
	if _, err := l.Up(ctx); err != nil {
		t.Fatalf("lab up after a crash: %v", err)
	}

	// Down leaves no process, mount, namespace, cgroup, iptables rule or file behind.
	pids := componentPIDs(t, l)
	shims := l.ContainerdRecordedPIDs()
	start := time.Now()
	if err := l.Down(ctx); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	t.Logf("lab down: %s", time.Since(start).Round(time.Millisecond))
	for name, p := range pids {
		if p.Alive() {
			t.Errorf("%s (pid %d) still runs after down", name, p.PID)
		}
	}
	for _, pid := range shims {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil && !isZombie(pid) {
			t.Errorf("containerd shim or container pid %d still runs after down", pid)
		}
	}
	if mps, _ := l.Mounts(); len(mps) > 0 {
		t.Errorf("mounts left behind: %v", mps)
	}
	if netns.Exists(l.Name) {
		t.Errorf("network namespace %s left behind", l.Name)
	}
	for name := range cniNetns() {
		if !netnsBeforeLab[name] {
			t.Errorf("pod network namespace /run/netns/%s left behind", name)
		}
	}
	for _, d := range []string{l.StateDir, l.RunDir} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
	for _, m := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(m, l.Name)); err == nil {
			t.Errorf("cgroup %s left behind", filepath.Join(m, l.Name))
		}
	}
	if rules := hostKubeRules(t); len(rules) > 0 {
		t.Errorf("iptables rules of the lab in the host's namespace: %v", rules)
	}
	// Down twice is harmless.
	if err := l.Down(ctx); err != nil {
		t.Fatalf("second lab down: %v", err)
	}
	broughtUp = false // nothing left for TestMain to tear down
}
