package lab

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/proc"
)

func TestShimsOfOurSocketFindsOnlyOurs(t *testing.T) {
	l := testLayout(t)
	// Stand-ins for shims: processes whose command line names a containerd socket, ours and
	// another one.
	ours := exec.Command("sh", "-c", "sleep 60; true", "shim", "-address", l.ContainerdSocket())
	other := exec.Command("sh", "-c", "sleep 60; true", "shim", "-address", filepath.Join(t.TempDir(), "containerd.sock"))
	for _, c := range []*exec.Cmd{ours, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c := c
		t.Cleanup(func() { _ = c.Process.Kill(); _, _ = c.Process.Wait() })
	}
	found := map[int]bool{}
	for _, pid := range (&Lab{Layout: l}).shimsOfOurSocket() {
		found[pid] = true
	}
	if !found[ours.Process.Pid] {
		t.Fatal("the process started with the lab's socket was not found")
	}
	if found[other.Process.Pid] {
		t.Fatal("a process of another containerd was taken for ours")
	}
	proc.KillPID(ours.Process.Pid, time.Second)
	_, _ = ours.Process.Wait()
}
