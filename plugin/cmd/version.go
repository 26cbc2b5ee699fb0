package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/internal/version"
)

// SystemNamespace is where kubectl-mesh's in-cluster components run.
const SystemNamespace = "kubectl-mesh-system"

// VersionInfo is what `kubectl mesh version` reports.
type VersionInfo struct {
	Client     string            `json:"client"`
	Server     string            `json:"server,omitempty"`
	Components map[string]string `json:"components,omitempty"` // deployment/daemonset name -> image
	ServerErr  string            `json:"serverError,omitempty"`
}

// VersionOptions are the options of `kubectl mesh version`.
type VersionOptions struct {
	flags      *genericclioptions.ConfigFlags
	ClientOnly bool
	Output     string
	genericiooptions.IOStreams
	client kubernetes.Interface
}

// NewCmdVersion is `kubectl mesh version`.
func NewCmdVersion(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{flags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:     "version [--client] [-o json|yaml]",
		Short:   "Print the client's version and the cluster's and in-cluster components' versions",
		Example: "  kubectl mesh version\n  kubectl mesh version --client -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "print the client version only (no cluster access)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json or yaml (default: text)")
	return cmd
}

// Complete builds the client unless only the client version is wanted.
func (o *VersionOptions) Complete() error {
	if o.ClientOnly {
		return nil
	}
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("cannot load kubeconfig: %w (use --client for the client version only)", err)
	}
	cfg.Timeout = 10 * time.Second
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// Validate checks the output format.
func (o *VersionOptions) Validate() error {
	switch o.Output {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output must be json or yaml, got %q", o.Output)
}

// Run prints the versions. An unreachable cluster is reported, not fatal: the client version
// is still useful.
func (o *VersionOptions) Run(ctx context.Context) error {
	info := VersionInfo{Client: version.Version}
	if o.client != nil {
		if sv, err := o.client.Discovery().ServerVersion(); err != nil {
			info.ServerErr = err.Error()
		} else {
			info.Server = sv.GitVersion
			info.Components = map[string]string{}
			deps, err := o.client.AppsV1().Deployments(SystemNamespace).List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, d := range deps.Items {
					for _, c := range d.Spec.Template.Spec.Containers {
						info.Components[d.Name+"/"+c.Name] = c.Image
					}
				}
			}
		}
	}
	switch o.Output {
	case "json":
		b, _ := json.MarshalIndent(info, "", "  ")
		fmt.Fprintln(o.Out, string(b))
	case "yaml":
		b, _ := yaml.Marshal(info)
		fmt.Fprint(o.Out, string(b))
	default:
		fmt.Fprintf(o.Out, "Client Version: %s\n", info.Client)
		if info.Server != "" {
			fmt.Fprintf(o.Out, "Server Version: %s\n", info.Server)
			if len(info.Components) == 0 {
				fmt.Fprintf(o.Out, "kubectl-mesh components: none installed in %s\n", SystemNamespace)
			}
			for k, v := range info.Components {
				fmt.Fprintf(o.Out, "Component %s: %s\n", k, v)
			}
		}
		if info.ServerErr != "" {
			fmt.Fprintf(o.ErrOut, "Server: unreachable: %s\n", info.ServerErr)
		}
	}
	if info.ServerErr != "" {
		return fmt.Errorf("cluster unreachable")
	}
	return nil
}
