// Command mesh-lab runs the local Kubernetes lab: `mesh-lab up`, `mesh-lab down`, `mesh-lab
// status`. `make lab-up` and `make lab-down` call it. See docs/lab.md.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/lab/demo"
	"github.com/kubectl-mesh/kubectl-mesh/lab/forward"
	"github.com/kubectl-mesh/kubectl-mesh/lab/netns"
	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newLab() *lab.Lab {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return &lab.Lab{Layout: lab.DefaultLayout(), Out: os.Stdout, SelfExe: self}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "mesh-lab",
		Short:         "A real single-node Kubernetes in a network namespace of its own",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Build (or reuse) the binaries, start the lab, and wait until a pod reaches a Service by DNS name",
			RunE: func(cmd *cobra.Command, _ []string) error {
				l := newLab()
				t, err := l.Up(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Printf("lab is up in %s (build %s, start %s, node ready %s, dns %s, smoke %s)\n",
					t.Total.Round(1e8), t.Build.Round(1e8), t.Start.Round(1e8), t.NodeReady.Round(1e8), t.DNS.Round(1e8), t.Smoke.Round(1e8))
				fmt.Printf("kubeconfig: %s\n  export KUBECONFIG=%s\n  kubectl: %s/kubectl\n", l.Kubeconfig(), l.Kubeconfig(), l.KubeBinDir())
				return nil
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Stop every lab process by PID and remove its mounts, cgroups, network namespace and files",
			RunE: func(cmd *cobra.Command, _ []string) error {
				l := newLab()
				if err := l.Down(cmd.Context()); err != nil {
					return err
				}
				fmt.Println("lab is down")
				return nil
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show which lab components run",
			RunE: func(cmd *cobra.Command, _ []string) error {
				l := newLab()
				ok, dead := l.Running()
				if ok {
					fmt.Printf("lab is up; kubeconfig: %s\n", l.Kubeconfig())
					return nil
				}
				if !l.HasRemains() {
					fmt.Println("lab is down")
					return nil
				}
				return fmt.Errorf("lab is partly up; not running: %v (run `make lab-up` to repair or `make lab-down`)", dead)
			},
		},
		&cobra.Command{
			Use:   "build [caddy]",
			Short: "Build (or find cached) Kubernetes and CoreDNS binaries; `build caddy` builds the optional Caddy of the mesh-caddy image instead",
			Args:  cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				l := newLab()
				if len(args) == 1 {
					// Optional extras are named one by one, so a plain build never pays for them.
					if args[0] != "caddy" {
						return fmt.Errorf("build: unknown extra %q (known: caddy)", args[0])
					}
					return l.EnsureCaddy(os.Stdout)
				}
				if err := l.EnsureKube(os.Stdout); err != nil {
					return err
				}
				return l.EnsureCoreDNS(os.Stdout)
			},
		},
		&cobra.Command{
			Use:   "images",
			Short: "Build the lab's container images from the binaries in MESH_LAB_BIN_DIR",
			RunE: func(cmd *cobra.Command, _ []string) error {
				paths, err := newLab().BuildImages()
				for _, p := range paths {
					fmt.Println(p)
				}
				return err
			},
		},
		&cobra.Command{
			Use:   "kubeconfig",
			Short: "Print the path of the lab's admin kubeconfig",
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Println(newLab().Kubeconfig()) },
		},
		newRelay(),
		newDemoApp(),
	)
	return root
}

// newDemoApp deploys the demo application (lab/demo) for `make demo`: mesh-echo behind the
// lab's sidecar, with the proxy's added delay and CPU cost as flags.
func newDemoApp() *cobra.Command {
	o := demo.Options{Sidecar: &sidecar.Options{}}
	var noSidecar, caddy bool
	cmd := &cobra.Command{
		Use:   "demo-app -n NAMESPACE [--name echo] [--service-time 1ms] [--delay 1ms] [--cpu-per-request 200us]",
		Short: "Deploy the demo application (mesh-echo behind the lab's sidecar proxy) and wait until it is available",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Namespace == "" {
				return fmt.Errorf("name the namespace with -n")
			}
			if noSidecar {
				o.Sidecar = nil
			} else if caddy {
				o.Sidecar.Proxy = sidecar.ProxyCaddy
				// Caddy adds what it adds: the defaults of --delay and --cpu-per-request do not apply.
				if !cmd.Flags().Changed("delay") {
					o.Sidecar.Delay = 0
				}
				if !cmd.Flags().Changed("cpu-per-request") {
					o.Sidecar.CPUPerRequest = 0
				}
			}
			cs, err := newLab().Client()
			if err != nil {
				return err
			}
			if err := demo.Deploy(cmd.Context(), cs, o, 3*time.Minute); err != nil {
				return err
			}
			fmt.Printf("demo app %s/%s available: svc/%s:%s through the sidecar, svc/%s:%s past it\n",
				o.Namespace, o.Name, o.Name, demo.ServiceHTTP, o.Name, demo.ServiceDirect)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Namespace, "namespace", "n", "", "namespace (must exist)")
	f.StringVar(&o.Name, "name", "echo", "name of the Deployment and Service")
	f.Int32Var(&o.Replicas, "replicas", 1, "replicas")
	f.DurationVar(&o.ServiceTime, "service-time", time.Millisecond, "the application's time per request")
	f.DurationVar(&o.Sidecar.Delay, "delay", time.Millisecond, "delay the sidecar adds on the request path")
	f.DurationVar(&o.Sidecar.CPUPerRequest, "cpu-per-request", 200*time.Microsecond, "CPU the sidecar burns per request")
	f.BoolVar(&noSidecar, "no-sidecar", false, "deploy the application alone")
	f.BoolVar(&caddy, "caddy", false, "unmodified Caddy as the sidecar proxy (image mesh-caddy: make caddy first); --delay and --cpu-per-request must be 0")
	return cmd
}

// newRelay is the process that lets the host reach the API server: it listens on a loopback
// port of the host and dials inside the lab's network namespace. lab-up starts it like any other
// component and lab-down stops it by PID.
func newRelay() *cobra.Command {
	var listen, ns, to string
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Relay a host loopback port to an address inside the lab (started by `up`)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ip := net.ParseIP(hostOf(listen)); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("relay: --listen must be a loopback address, got %q", listen)
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return forward.Serve(cmd.Context(), l, to, netns.Dialer(ns), nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:16443", "loopback address to listen on")
	cmd.Flags().StringVar(&ns, "netns", "/run/netns/kubectl-mesh-lab", "network namespace to dial from")
	cmd.Flags().StringVar(&to, "to", "10.88.0.2:6443", "address to dial inside the namespace")
	return cmd
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}
