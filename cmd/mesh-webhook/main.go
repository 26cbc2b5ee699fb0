// Command mesh-webhook is the mutating admission webhook that injects the probe next to
// workloads in opted-in namespaces. See webhook/server.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubectl-mesh/kubectl-mesh/internal/version"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/server"
)

func main() {
	var o server.Options
	flag.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace the webhook runs in")
	flag.StringVar(&o.ServiceName, "service-name", "mesh-webhook", "Service in front of the webhook (names the serving certificate)")
	flag.StringVar(&o.SecretName, "secret-name", "mesh-webhook-tls", "Secret holding the CA and serving certificate")
	flag.StringVar(&o.WebhookConfigName, "webhook-config", "kubectl-mesh-probe-injector", "MutatingWebhookConfiguration whose caBundle the webhook maintains")
	flag.StringVar(&o.CertMode, "cert-mode", "self", "self: manage our own CA and certificate; cert-manager: read the files cert-manager writes")
	flag.StringVar(&o.CertDir, "cert-dir", "/var/run/mesh-webhook/certs", "directory of tls.crt and tls.key")
	flag.DurationVar(&o.CAValidity, "ca-validity", 5*365*24*time.Hour, "lifetime of the self-managed CA")
	flag.DurationVar(&o.CertValidity, "cert-validity", 90*24*time.Hour, "lifetime of the serving certificate (renewed with a third left)")
	flag.IntVar(&o.Port, "port", 9443, "webhook HTTPS port")
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address")
	flag.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz address")
	flag.StringVar(&o.Inject.Image, "probe-image", "", "probe image to inject")
	flag.StringVar(&o.Inject.LogLevel, "probe-log-level", "", "probe log level: debug, info, warn, error")
	flag.StringVar(&o.Inject.SampleAboveRPS, "probe-sample-above-rps", "", "request rate above which the injected probe samples (default the probe's, 5000; 0: every request at any rate)")
	// The probe's CPU request is also its share of a busy node: at the default 10m it falls behind
	// (and counts lost exchanges) when the node's CPU is saturated; see docs/probe.md.
	var res inject.ResourceFlags
	flag.StringVar(&res.CPURequest, "probe-cpu-request", "", "CPU request of the injected probe (default "+inject.DefaultCPURequest.String()+")")
	flag.StringVar(&res.CPULimit, "probe-cpu-limit", "", "CPU limit of the injected probe (default "+inject.DefaultCPULimit.String()+")")
	flag.StringVar(&res.MemoryRequest, "probe-memory-request", "", "memory request of the injected probe (default "+inject.DefaultMemoryRequest.String()+")")
	flag.StringVar(&res.MemoryLimit, "probe-memory-limit", "", "memory limit of the injected probe (default "+inject.DefaultMemoryLimit.String()+")")
	showVersion := flag.Bool("version", false, "print the version and exit")
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	var err error
	if o.Inject.Resources, err = res.Resources(); err == nil {
		err = o.Inject.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-webhook:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-webhook: no cluster configuration:", err)
		os.Exit(1)
	}
	if err := server.Run(ctrl.SetupSignalHandler(), cfg, o); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-webhook:", err)
		os.Exit(1)
	}
}
