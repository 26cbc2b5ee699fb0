// Command kubectl-mesh is the kubectl plugin `kubectl mesh`. The main is thin on purpose: all
// behaviour lives in plugin/cmd, where it can be tested.
package main

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
)

func main() {
	root := cmd.NewCmdMesh(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
