// Command mesh-loadgen is kubectl-mesh's load generator, run by `kubectl mesh perf run` as a Job.
// The main is thin on purpose: all behaviour lives in package loadgen, where it can be tested.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
)

func main() {
	// SIGTERM is how Kubernetes stops the Job's pod (and how the plugin's Ctrl-C reaches it):
	// cancelling the context stops the run early and still writes the partial result.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := loadgen.NewCmd(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-loadgen:", err)
	}
	os.Exit(loadgen.ExitCode(err))
}
