// Package cmd holds kubectl-mesh's commands. Each command follows kubectl's plugin pattern: an
// Options struct filled from flags, then Complete (derive what flags imply), Validate (reject
// bad input before touching the cluster) and Run.
package cmd

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewCmdMesh is `kubectl mesh`.
func NewCmdMesh(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl mesh",
		Short: "Measure what a service mesh costs your workloads, inside each pod",
		Long: `kubectl mesh installs meshes and its probe, runs load against workloads, and reports the latency and CPU the mesh's proxies add, per pod and per namespace, as SMPS documents.

Exit codes: 0 done; 1 failed (the cause is the last line on stderr); 2 bad flags or arguments, nothing changed; 3 a perf run was interrupted (Ctrl-C) and its partial result stored.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// kubectl plugins are invoked as kubectl-mesh; usage lines say `kubectl mesh`.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl mesh"},
	}
	flags.AddFlags(root.PersistentFlags())
	// A malformed flag is a usage error (exit code 2), in every subcommand.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(NewCmdVersion(flags, streams), NewCmdProbe(flags, streams), NewCmdPerf(flags, streams), NewCmdOverhead(flags, streams),
		NewCmdInstall(flags, streams), NewCmdUninstall(flags, streams), NewCmdStatus(flags, streams), NewCmdInject(flags, streams))
	return root
}
