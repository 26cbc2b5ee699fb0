// Package server runs the probe-injection webhook: a controller-runtime manager hosting the
// inject.Handler at /inject-probe over TLS 1.2+, with the certificate manager, Kubernetes events
// for every decision, Prometheus metrics and health endpoints.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubectl-mesh/kubectl-mesh/webhook/certs"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Path is where the API server sends pod admission reviews.
const Path = "/inject-probe"

// Options configure the webhook.
type Options struct {
	Namespace         string // where the webhook runs (its Secret lives here)
	ServiceName       string
	SecretName        string
	WebhookConfigName string
	CertMode          string // "self" (manage our own CA) or "cert-manager" (read files only)
	CertDir           string
	CAValidity        time.Duration
	CertValidity      time.Duration
	Port              int
	MetricsAddr       string
	HealthAddr        string
	Inject            inject.Config
}

// Validate rejects impossible settings before anything starts.
func (o Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required (set it from the downward API)"))
	}
	if o.CertMode != "self" && o.CertMode != "cert-manager" {
		errs = append(errs, fmt.Errorf("--cert-mode must be self or cert-manager, got %q", o.CertMode))
	}
	if o.CertMode == "self" && (o.CertValidity < 30*time.Second || o.CAValidity < o.CertValidity) {
		errs = append(errs, fmt.Errorf("certificate lifetimes: want 30s <= --cert-validity (%s) <= --ca-validity (%s)", o.CertValidity, o.CAValidity))
	}
	if o.Port <= 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d out of range", o.Port))
	}
	if err := o.Inject.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run starts the webhook and blocks until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	log := ctrl.Log.WithName("mesh-webhook")
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	rotations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mesh_webhook_certificate_rotations_total",
		Help: "Certificate renewals made by this replica, by kind (serving or ca).",
	}, []string{"kind"})
	metrics.Registry.MustRegister(rotations)

	// Certificates must be on disk before the TLS server starts.
	var cm *certs.Manager
	if o.CertMode == "self" {
		cm = &certs.Manager{Client: cs, Namespace: o.Namespace, SecretName: o.SecretName, WebhookConfigName: o.WebhookConfigName,
			DNSNames: []string{
				fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace),
				fmt.Sprintf("%s.%s.svc.cluster.local", o.ServiceName, o.Namespace),
			},
			CertDir: o.CertDir, CAValidity: o.CAValidity, CertValidity: o.CertValidity,
			Rotations: func(kind string) { rotations.WithLabelValues(kind).Inc() }}
		if err := ensureWithRetry(ctx, cm, 30*time.Second); err != nil {
			return err
		}
	} else if _, err := os.Stat(filepath.Join(o.CertDir, certs.KeyCert)); err != nil {
		return fmt.Errorf("cert-manager mode: no certificate in %s (is the Certificate mesh-webhook issued? `kubectl -n %s describe certificate mesh-webhook`): %w", o.CertDir, o.Namespace, err)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.HealthAddr,
		WebhookServer: webhook.NewServer(webhook.Options{
			Port:    o.Port,
			CertDir: o.CertDir,
			// TLS 1.2 is the floor: the API server speaks 1.3 and 1.2 only.
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
		}),
	})
	if err != nil {
		return err
	}
	// Namespaces are read from the manager's informer cache: one watch, no API round trip per
	// admission.
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Namespace{}); err != nil {
		return err
	}
	reader := mgr.GetClient()
	native := false
	if v, err := cs.Discovery().ServerVersion(); err == nil {
		native = inject.NativeSidecarsSupported(v)
	} else {
		log.Error(err, "cannot read the server version; injecting the probe as a regular container")
	}
	recorder := mgr.GetEventRecorderFor("mesh-webhook")
	h, err := inject.NewHandler(inject.Options{
		Config: o.Inject,
		Namespaces: inject.NamespaceGetterFunc(func(ctx context.Context, name string) (*corev1.Namespace, error) {
			var ns corev1.Namespace
			err := reader.Get(ctx, types.NamespacedName{Name: name}, &ns)
			return &ns, err
		}),
		NativeSidecars: native,
		Registerer:     metrics.Registry,
		OnDecision: func(ctx context.Context, req *admissionv1.AdmissionRequest, d inject.Decision) {
			recordEvent(recorder, req, d)
		},
	})
	if err != nil {
		return err
	}
	mgr.GetWebhookServer().Register(Path, &admission.Webhook{Handler: h})
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("namespaces-synced", func(*http.Request) error {
		sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(sctx) {
			return errors.New("namespace cache not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	if cm != nil {
		go cm.Run(ctx, certs.CheckInterval(o.CertValidity), func(err error) { log.Error(err, "certificate check failed; retrying") })
	}
	log.Info("starting", "native-sidecars", native, "cert-mode", o.CertMode, "probe-image", o.Inject.WithDefaults().Image)
	return mgr.Start(ctx)
}

func ensureWithRetry(ctx context.Context, cm *certs.Manager, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := cm.Ensure(ctx)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// recordEvent records ProbeInjected/ProbeSkipped on the pod's controller (the pod has no name
// or UID yet when created by a ReplicaSet), or on the pod itself for a bare named pod. Dry runs
// record nothing: the webhook declares sideEffects None.
func recordEvent(rec record.EventRecorder, req *admissionv1.AdmissionRequest, d inject.Decision) {
	if req == nil || (req.DryRun != nil && *req.DryRun) || len(req.Object.Raw) == 0 {
		return
	}
	var pod metav1.PartialObjectMetadata
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: req.Namespace, Name: pod.Name}
	if owner := metav1.GetControllerOfNoCopy(&pod); owner != nil {
		ref = &corev1.ObjectReference{Kind: owner.Kind, APIVersion: owner.APIVersion, Namespace: req.Namespace, Name: owner.Name, UID: owner.UID}
	}
	if ref.Name == "" {
		return
	}
	typ := corev1.EventTypeNormal
	if len(d.Warnings) > 0 {
		typ = corev1.EventTypeWarning
	}
	rec.Event(ref, typ, d.EventReason(), fmt.Sprintf("%s: %s", d.Reason, d.Message))
}
