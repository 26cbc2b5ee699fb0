package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// DefaultMaxRequestBytes caps an AdmissionReview body. The API server limits a request body to
// 3 MiB, and a pod CREATE review carries one pod, so anything larger did not come from it.
const DefaultMaxRequestBytes = 3 << 20

// DefaultNamespaceTimeout bounds the namespace lookup, well inside the webhook's own timeout, so a
// slow lookup ends as namespace_unavailable instead of an API server timeout.
const DefaultNamespaceTimeout = time.Second

// Options configure a Handler.
type Options struct {
	// Config tunes the injected container.
	Config Config
	// Namespaces reads namespace labels and annotations. Required.
	Namespaces NamespaceGetter
	// NativeSidecars says the API server runs native sidecars (see NativeSidecarsSupported).
	NativeSidecars bool
	// Registerer receives the handler's metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// OnDecision, when set, is called once per admission with the decision, for example to
	// record a ProbeInjected or ProbeSkipped event (Decision.EventReason). req is nil when the
	// body was not an AdmissionReview. It runs on the request path: keep it fast, and skip
	// side effects such as events when req.DryRun is set (the webhook has no side effects).
	OnDecision func(ctx context.Context, req *admissionv1.AdmissionRequest, d Decision)
	// MaxRequestBytes caps the HTTP body; default DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// NamespaceTimeout bounds one namespace lookup; default DefaultNamespaceTimeout.
	NamespaceTimeout time.Duration
}

// Handler answers pod admission reviews. It is an http.Handler for AdmissionReview v1 (ServeHTTP)
// and a controller-runtime admission.Handler (Handle), so it can be served standalone or
// registered with a controller-runtime webhook server as &admission.Webhook{Handler: h}.
type Handler struct {
	cfg        Config
	namespaces NamespaceGetter
	native     bool
	metrics    *Metrics
	onDecision func(context.Context, *admissionv1.AdmissionRequest, Decision)
	maxBytes   int64
	nsTimeout  time.Duration
}

var (
	_ http.Handler      = (*Handler)(nil)
	_ admission.Handler = (*Handler)(nil)
)

// NewHandler validates the options and registers the metrics.
func NewHandler(o Options) (*Handler, error) {
	if o.Namespaces == nil {
		return nil, errors.New("inject: Options.Namespaces is required")
	}
	cfg := o.Config.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	h := &Handler{
		cfg:        cfg,
		namespaces: o.Namespaces,
		native:     o.NativeSidecars,
		onDecision: o.OnDecision,
		maxBytes:   o.MaxRequestBytes,
		nsTimeout:  o.NamespaceTimeout,
	}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultMaxRequestBytes
	}
	if h.nsTimeout <= 0 {
		h.nsTimeout = DefaultNamespaceTimeout
	}
	if o.Registerer != nil {
		m, err := NewMetrics(o.Registerer)
		if err != nil {
			return nil, fmt.Errorf("inject: registering metrics: %w", err)
		}
		h.metrics = m
	}
	return h, nil
}

// Handle implements controller-runtime's admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	return admission.Response{AdmissionResponse: *h.Review(ctx, &req.AdmissionRequest)}
}

// Review answers one admission request. The response is always Allowed; see the package
// documentation.
func (h *Handler) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return h.review(ctx, req, time.Now())
}

func (h *Handler) review(ctx context.Context, req *admissionv1.AdmissionRequest, start time.Time) (resp *admissionv1.AdmissionResponse) {
	var d Decision
	defer func() {
		// The probe is optional; a bug in the injector must not block pod creation, nor make
		// the API server wait for its timeout. The reason is counted, so it is not silent.
		if p := recover(); p != nil {
			d = decided(ReasonInternalError, "injector panic: %v", p).warn("internal error in the injector")
			resp = h.respond(req, d)
		}
		h.finish(ctx, req, d, start)
	}()
	d = h.decide(ctx, req)
	return h.respond(req, d)
}

// decide turns a request into Decide's Input: it checks that the request is a pod CREATE,
// decodes the pod and reads its namespace.
func (h *Handler) decide(ctx context.Context, req *admissionv1.AdmissionRequest) Decision {
	if req == nil {
		return decided(ReasonMalformedRequest, "the AdmissionReview has no request").warn("malformed admission request")
	}
	if k := req.Kind; k.Group != "" || k.Version != "v1" || k.Kind != "Pod" || req.SubResource != "" {
		return decided(ReasonNotAPod, "the request is for %s, subresource %q, not a pod", k.String(), req.SubResource)
	}
	if req.Operation != admissionv1.Create {
		return decided(ReasonUnsupportedOperation, "operation %s is not CREATE; a pod's containers cannot change after creation", req.Operation)
	}
	if len(req.Object.Raw) == 0 {
		return decided(ReasonMalformedRequest, "the request has no object").warn("malformed admission request")
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return decided(ReasonMalformedPod, "the object is not a valid pod: %v", err).warn("the pod could not be decoded")
	}
	in := Input{Pod: pod, Namespace: req.Namespace, NativeSidecars: h.native, Config: h.cfg}
	if in.Namespace == "" {
		in.Namespace = pod.Namespace
	}
	if in.Namespace != "" {
		lctx, cancel := context.WithTimeout(ctx, h.nsTimeout)
		ns, err := h.namespaces.GetNamespace(lctx, in.Namespace)
		cancel()
		switch {
		case err != nil:
			in.NamespaceErr = err
		case ns == nil:
			in.NamespaceErr = errors.New("namespace not found")
		default:
			in.NamespaceLabels, in.NamespaceAnnotations = ns.Labels, ns.Annotations
		}
	}
	return Decide(in)
}

// respond builds the admission response: always allowed, the patch if any, warnings for the
// user, the message as the result (for API server logs) and the reason as an audit annotation
// (the API server prefixes the key with the webhook's name).
func (h *Handler) respond(req *admissionv1.AdmissionRequest, d Decision) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{
		Allowed:          true,
		Warnings:         d.Warnings,
		AuditAnnotations: map[string]string{"reason": string(d.Reason), "message": d.Message},
		Result:           &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK, Message: d.Message},
	}
	if req != nil {
		resp.UID = req.UID
	}
	patch, err := EncodePatch(d.Patch)
	if err != nil { // our own ops always marshal; if not, admit the pod unchanged
		resp.Warnings = append(resp.Warnings, "kubectl-mesh probe not injected: internal error (internal_error)")
		return resp
	}
	if len(patch) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}

func (h *Handler) finish(ctx context.Context, req *admissionv1.AdmissionRequest, d Decision, start time.Time) {
	h.metrics.observe(time.Since(start), d.Reason)
	if h.onDecision != nil {
		h.onDecision(ctx, req, d)
	}
}
