// Command kubectl-mesh is the kubectl plugin `kubectl mesh`. The main is thin on purpose: all
// behaviour lives in plugin/cmd, where it can be tested.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
)

func main() {
	// Ctrl-C cancels the command's context: a perf run then stops its load generator and keeps
	// the partial result. A second Ctrl-C kills the process the usual way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	root := cmd.NewCmdMesh(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	os.Exit(cmd.ExitCode(err))
}
