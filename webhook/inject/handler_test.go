package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// staticNamespaces serves namespaces from a map; a missing one is an error, like a cache miss.
type staticNamespaces map[string]*corev1.Namespace

func (s staticNamespaces) GetNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	if ns, ok := s[name]; ok {
		return ns, nil
	}
	return nil, fmt.Errorf("namespace %q not found", name)
}

// recorder captures OnDecision calls.
type recorder struct {
	mu        sync.Mutex
	decisions []Decision
}

func (r *recorder) on(_ context.Context, _ *admissionv1.AdmissionRequest, d Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decisions = append(r.decisions, d)
}

func (r *recorder) last(t testing.TB) Decision {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.decisions) == 0 {
		t.Fatal("no decision recorded")
	}
	return r.decisions[len(r.decisions)-1]
}

func newTestHandler(t testing.TB, o Options) (*Handler, *recorder) {
	t.Helper()
	rec := &recorder{}
	if o.Namespaces == nil {
		o.Namespaces = staticNamespaces{}
	}
	o.OnDecision = rec.on
	h, err := NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	return h, rec
}

func reviewBody(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	return mustJSON(t, admissionv1.AdmissionReview{TypeMeta: reviewTypeMeta, Request: req})
}

func podRequest(t testing.TB, uid, ns string, pod *corev1.Pod) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID: types.UID(uid), Kind: podKind, Operation: admissionv1.Create, Namespace: ns,
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Object:   runtime.RawExtension{Raw: mustJSON(t, pod)},
	}
}

func post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, r)
	return w
}

// decodeReview checks that w holds a well-formed, allowed AdmissionReview v1 response.
func decodeReview(t testing.TB, w *httptest.ResponseRecorder, uid string) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not JSON: %v", err)
	}
	if out.TypeMeta != reviewTypeMeta || out.Response == nil {
		t.Fatalf("not an AdmissionReview v1 response: %s", w.Body)
	}
	if !out.Response.Allowed || string(out.Response.UID) != uid {
		t.Fatalf("allowed %v uid %q, want allowed and %q", out.Response.Allowed, out.Response.UID, uid)
	}
	if (out.Response.PatchType != nil) != (len(out.Response.Patch) > 0) ||
		(out.Response.PatchType != nil && *out.Response.PatchType != admissionv1.PatchTypeJSONPatch) {
		t.Errorf("patch type %v with %d patch bytes", out.Response.PatchType, len(out.Response.Patch))
	}
	return out.Response
}

// TestServeHTTPGolden sends every golden case through the HTTP handler and checks that the
// response carries exactly Decide's patch, warnings and reason.
func TestServeHTTPGolden(t *testing.T) {
	for _, file := range caseFiles(t) {
		tc := loadCase(t, file)
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			h, rec := newTestHandler(t, Options{
				Config: tc.Config, NativeSidecars: tc.NativeSidecars,
				Namespaces: staticNamespaces{tc.Namespace.Name: &tc.Namespace},
			})
			pod := tc.Pod.DeepCopy()
			pod.Namespace = "" // as for most creations; the request's namespace counts
			w := post(h, reviewBody(t, podRequest(t, "uid-"+name, tc.Namespace.Name, pod)))
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			resp := decodeReview(t, w, "uid-"+name)

			want := Decide(tc.input(pod))
			if got := rec.last(t); got.Reason != want.Reason {
				t.Errorf("handler reason %s, Decide %s", got.Reason, want.Reason)
			}
			wantPatch, _ := EncodePatch(want.Patch)
			if !bytes.Equal(resp.Patch, wantPatch) {
				t.Errorf("patch\n%s\nwant\n%s", resp.Patch, wantPatch)
			}
			if strings.Join(resp.Warnings, "|") != strings.Join(want.Warnings, "|") {
				t.Errorf("warnings %q, want %q", resp.Warnings, want.Warnings)
			}
			if resp.AuditAnnotations["reason"] != string(want.Reason) || resp.Result == nil || resp.Result.Message != want.Message {
				t.Errorf("audit %v result %+v", resp.AuditAnnotations, resp.Result)
			}
		})
	}
}

func TestServeHTTPEdgeCases(t *testing.T) {
	tc := loadCase(t, "testdata/plain.yaml")
	ns := staticNamespaces{"shop": &tc.Namespace}
	okReq := func() *admissionv1.AdmissionRequest { return podRequest(t, "u1", "shop", &tc.Pod) }

	tests := []struct {
		name   string
		body   func() []byte
		uid    string
		reason Reason
		warn   bool
	}{
		{"wrong kind", func() []byte {
			r := okReq()
			r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			return reviewBody(t, r)
		}, "u1", ReasonNotAPod, false},
		{"pod subresource", func() []byte {
			r := okReq()
			r.SubResource = "ephemeralcontainers"
			return reviewBody(t, r)
		}, "u1", ReasonNotAPod, false},
		{"update", func() []byte {
			r := okReq()
			r.Operation = admissionv1.Update
			return reviewBody(t, r)
		}, "u1", ReasonUnsupportedOperation, false},
		{"no object", func() []byte {
			r := okReq()
			r.Object = runtime.RawExtension{}
			return reviewBody(t, r)
		}, "u1", ReasonMalformedRequest, true},
		{"object is not a pod", func() []byte {
			r := okReq()
			r.Object.Raw = []byte(`{"spec":"oops"}`)
			return reviewBody(t, r)
		}, "u1", ReasonMalformedPod, true},
		{"no request", func() []byte { return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`) }, "", ReasonMalformedRequest, true},
		{"JSON null", func() []byte { return []byte(`null`) }, "", ReasonMalformedRequest, true},
		{"v1beta1 review", func() []byte {
			b := reviewBody(t, okReq())
			return bytes.Replace(b, []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1)
		}, "u1", ReasonMalformedRequest, true},
		{"unknown namespace", func() []byte { return reviewBody(t, podRequest(t, "u2", "elsewhere", &tc.Pod)) }, "u2", ReasonNamespaceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec := newTestHandler(t, Options{Namespaces: ns, NativeSidecars: true})
			resp := decodeReview(t, post(h, tt.body()), tt.uid)
			d := rec.last(t)
			if d.Reason != tt.reason {
				t.Fatalf("reason %s, want %s: %s", d.Reason, tt.reason, d.Message)
			}
			if len(resp.Patch) != 0 {
				t.Errorf("unexpected patch %s", resp.Patch)
			}
			if (len(resp.Warnings) > 0) != tt.warn {
				t.Errorf("warnings %q", resp.Warnings)
			}
		})
	}
}

func TestServeHTTPErrors(t *testing.T) {
	h, rec := newTestHandler(t, Options{})

	w := post(h, []byte("this is not json"))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not a JSON AdmissionReview") {
		t.Errorf("non-JSON: %d %q", w.Code, w.Body)
	}
	if rec.last(t).Reason != ReasonMalformedRequest {
		t.Errorf("non-JSON counted as %s", rec.last(t).Reason)
	}
	w = post(h, []byte(`{"request":{"uid":7}}`))
	if w.Code != http.StatusBadRequest {
		t.Errorf("mistyped review: %d", w.Code)
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/inject", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d allow %q", w.Code, w.Header().Get("Allow"))
	}

	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/inject", nil)
	r.Body = nil
	h.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("nil body: %d", w.Code)
	}

	w = httptest.NewRecorder()
	r = httptest.NewRequest(http.MethodPost, "/inject", errReader{})
	h.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "reading") {
		t.Errorf("read error: %d %q", w.Code, w.Body)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestServeHTTPSizeCap: a review of exactly the cap is served; one byte more is refused with 413
// without being decoded.
func TestServeHTTPSizeCap(t *testing.T) {
	tc := loadCase(t, "testdata/plain.yaml")
	h, rec := newTestHandler(t, Options{Namespaces: staticNamespaces{"shop": &tc.Namespace}, NativeSidecars: true})
	body := reviewBody(t, podRequest(t, "big", "shop", &tc.Pod))
	// JSON allows trailing whitespace, so padding keeps the review valid.
	atCap := append(body, bytes.Repeat([]byte(" "), DefaultMaxRequestBytes-len(body))...)
	resp := decodeReview(t, post(h, atCap), "big")
	if len(resp.Patch) == 0 || rec.last(t).Reason != ReasonInjected {
		t.Errorf("review at the cap: reason %s", rec.last(t).Reason)
	}

	w := post(h, append(atCap, ' '))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "exceeds 3145728 bytes") {
		t.Errorf("over the cap: %d %q", w.Code, w.Body)
	}

	small, _ := newTestHandler(t, Options{MaxRequestBytes: 10})
	if w := post(small, body); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("custom cap: %d", w.Code)
	}
}

// TestControllerRuntimeWebhook hosts the handler the way a controller-runtime webhook server does.
func TestControllerRuntimeWebhook(t *testing.T) {
	tc := loadCase(t, "testdata/istio-native.yaml")
	h, _ := newTestHandler(t, Options{Namespaces: staticNamespaces{tc.Namespace.Name: &tc.Namespace}, NativeSidecars: true})
	wh := &admission.Webhook{Handler: h}
	w := post(wh, reviewBody(t, podRequest(t, "cr-1", tc.Namespace.Name, &tc.Pod)))
	resp := decodeReview(t, w, "cr-1")
	patched, _ := applyPatch(t, mustJSON(t, &tc.Pod), mustPatchOps(t, resp.Patch))
	checkProbe(t, patched, true)
}

func mustPatchOps(t testing.TB, raw []byte) []PatchOperation {
	t.Helper()
	var ops []PatchOperation
	if err := json.Unmarshal(raw, &ops); err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestPanicIsContained: a panicking dependency still admits the pod and is counted.
func TestPanicIsContained(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h, rec := newTestHandler(t, Options{
		Registerer: reg,
		Namespaces: NamespaceGetterFunc(func(context.Context, string) (*corev1.Namespace, error) { panic("cache exploded") }),
	})
	resp := decodeReview(t, post(h, reviewBody(t, podRequest(t, "p", "shop", basePod("shop")))), "p")
	if rec.last(t).Reason != ReasonInternalError || len(resp.Warnings) == 0 || len(resp.Patch) != 0 {
		t.Errorf("reason %s warnings %q", rec.last(t).Reason, resp.Warnings)
	}
	if got := counterValue(t, reg, string(ReasonInternalError)); got != 1 {
		t.Errorf("internal_error counter %v", got)
	}
}

func TestNamespaceTimeout(t *testing.T) {
	h, rec := newTestHandler(t, Options{
		NamespaceTimeout: 1,
		Namespaces: NamespaceGetterFunc(func(ctx context.Context, _ string) (*corev1.Namespace, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	})
	p := basePod("shop")
	p.Annotations = map[string]string{AnnotationProbe: ValueEnabled}
	resp := h.Review(context.Background(), podRequest(t, "t", "shop", p))
	if !resp.Allowed || rec.last(t).Reason != ReasonNamespaceUnavailable || len(resp.Warnings) != 1 {
		t.Errorf("reason %s warnings %q", rec.last(t).Reason, resp.Warnings)
	}
}

func TestNewHandlerErrors(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Error("no namespace getter accepted")
	}
	if _, err := NewHandler(Options{Namespaces: staticNamespaces{}, Config: Config{LogLevel: "x"}}); err == nil {
		t.Error("invalid config accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewHandler(Options{Namespaces: staticNamespaces{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHandler(Options{Namespaces: staticNamespaces{}, Registerer: reg}); err == nil {
		t.Error("second registration on one registry accepted")
	}
}

// TestConcurrentReviews: the handler is shared by the webhook server's goroutines.
func TestConcurrentReviews(t *testing.T) {
	tc := loadCase(t, "testdata/linkerd.yaml")
	reg := prometheus.NewRegistry()
	h, _ := newTestHandler(t, Options{Registerer: reg, Namespaces: staticNamespaces{tc.Namespace.Name: &tc.Namespace}, NativeSidecars: true})
	body := reviewBody(t, podRequest(t, "c", tc.Namespace.Name, &tc.Pod))
	want := post(h, body).Body.String()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if got := post(h, body).Body.String(); got != want {
					t.Error("concurrent responses differ")
					return
				}
			}
		})
	}
	wg.Wait()
	if got := counterValue(t, reg, string(ReasonInjected)); got != 161 {
		t.Errorf("injected counter %v, want 161", got)
	}
}
