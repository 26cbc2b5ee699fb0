//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
)

// keepLabEnv names the variable that keeps the lab up after the tests.
const keepLabEnv = "MESH_E2E_KEEP_LAB"

// broughtUp says TestMain started the lab and must remove it at the end.
var broughtUp bool

// netnsBeforeLab are the pod network namespaces that existed before the lab came up (none of
// them may be removed or blamed on the lab).
var netnsBeforeLab map[string]bool

// TestMain brings the lab up once for all tests (they share it, so the package runs its tests
// one after another) and down at the end. Without root every test skips.
func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run()
		}
		netnsBeforeLab = cniNetns()
		l := lab.DefaultLayout()
		if l.RepoDir == "." {
			l.RepoDir, _ = filepath.Abs("..")
		}
		if l.BinDir == "bin" {
			l.BinDir = filepath.Join(l.RepoDir, "bin")
		}
		lb := &lab.Lab{Layout: l, Out: os.Stdout, SelfExe: filepath.Join(l.BinDir, "mesh-lab")}
		start := time.Now()
		t, err := lb.Up(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: lab up failed: %v\n", err)
			_ = lb.Down(context.Background())
			return 1
		}
		fmt.Printf("e2e: lab up in %s (build %s, start %s, node ready %s, dns %s, smoke %s)\n",
			time.Since(start).Round(time.Millisecond), t.Build, t.Start, t.NodeReady, t.DNS, t.Smoke)
		// MESH_E2E_KEEP_LAB=1 leaves the lab running after the tests (and skips the teardown
		// test), so that a developer can run one test again and again against the same lab.
		broughtUp = os.Getenv(keepLabEnv) != "1"
		code := m.Run()
		if broughtUp {
			if err := lb.Down(context.Background()); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: lab down failed: %v\n", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}
