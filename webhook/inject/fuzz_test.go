package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fuzzMaxBytes is a small body cap so the fuzzer also reaches the 413 path; the production cap is
// tested in TestServeHTTPSizeCap.
const fuzzMaxBytes = 16 << 10

// fuzzNamespaces knows the testdata namespaces; any other name is opted in (so the fuzzer
// explores injection), except "gone", which fails like a cache miss.
type fuzzNamespaces staticNamespaces

func (f fuzzNamespaces) GetNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	if ns, ok := f[name]; ok {
		return ns, nil
	}
	if name == "gone" {
		return nil, errors.New("not found")
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: enabledNS}}, nil
}

// FuzzHandleAdmissionReview feeds arbitrary bytes to the HTTP handler. It must never panic (a
// recovered panic counts as a failure too) and must always answer either a well-formed, allowed
// AdmissionReview v1 that echoes the request UID, or a plain-text 400 (not JSON) or 413 (too
// big). When it patches an API-server-shaped pod, the patch must apply, add exactly one probe,
// and a reinvocation on the result must change nothing.
func FuzzHandleAdmissionReview(f *testing.F) {
	nss := fuzzNamespaces{}
	for _, file := range caseFiles(f) {
		tc := loadCase(f, file)
		nss[tc.Namespace.Name] = tc.Namespace.DeepCopy()
		f.Add(reviewBody(f, podRequest(f, "seed-"+tc.Namespace.Name, tc.Namespace.Name, &tc.Pod)))
	}
	for _, s := range []string{
		"", "null", "{", "[]", "\xff\xfe", `"AdmissionReview"`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"y","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"gone","object":{"metadata":{},"spec":{"containers":null}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"z","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"annotations":null},"spec":{"containers":[],"initContainers":[]}}}}`,
	} {
		f.Add([]byte(s))
	}
	var last Decision
	h, err := NewHandler(Options{
		Namespaces: nss, NativeSidecars: true, MaxRequestBytes: fuzzMaxBytes,
		OnDecision: func(_ context.Context, _ *admissionv1.AdmissionRequest, d Decision) { last = d },
	})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		last = Decision{}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
		if last.Reason == "" {
			t.Fatal("no decision was recorded")
		}
		if last.Reason == ReasonInternalError {
			t.Fatalf("the handler panicked: %s", last.Message)
		}
		var in admissionv1.AdmissionReview
		inErr := json.Unmarshal(body, &in)

		switch w.Code {
		case http.StatusRequestEntityTooLarge:
			if len(body) <= fuzzMaxBytes {
				t.Fatalf("413 for %d bytes", len(body))
			}
			return
		case http.StatusBadRequest:
			if inErr == nil || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") || w.Body.Len() == 0 {
				t.Fatalf("400 for a decodable review, or without a message: %q", w.Body)
			}
			return
		case http.StatusOK:
			if inErr != nil || len(body) > fuzzMaxBytes {
				t.Fatalf("200 for an undecodable or oversized body (%v)", inErr)
			}
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body)
		}

		uid := ""
		if in.Request != nil {
			uid = string(in.Request.UID)
		}
		resp := decodeReview(t, w, uid)
		if len(resp.Patch) == 0 {
			return
		}
		if _, err := jsonpatch.DecodePatch(resp.Patch); err != nil {
			t.Fatalf("response patch is not RFC 6902: %v", err)
		}
		object := in.Request.Object.Raw
		if !apiServerShaped(object) {
			return
		}
		patched, out := applyPatch(t, object, mustPatchOps(t, resp.Patch))
		if n := len(findProbes(patched)); n != 1 {
			t.Fatalf("%d probes after patching", n)
		}
		again := *in.Request
		again.Object.Raw = out
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(mustJSON(t, admissionv1.AdmissionReview{TypeMeta: reviewTypeMeta, Request: &again}))))
		if resp := decodeReview(t, w, uid); len(resp.Patch) != 0 || last.Reason != ReasonAlreadyInjected {
			t.Fatalf("reinvocation: %s with patch %s (%s)", last.Reason, resp.Patch, last.Message)
		}
	})
}

// apiServerShaped reports whether raw is a pod as the API server serialises it: exactly what
// encoding the decoded pod gives back. The patch targets that shape (metadata and spec always
// present, canonical field names); arbitrary JSON such as duplicate or differently cased keys,
// which the API server never sends, may decode to a pod the patch paths do not address.
func apiServerShaped(raw []byte) bool {
	var pod corev1.Pod
	if json.Unmarshal(raw, &pod) != nil {
		return false
	}
	canon, err := json.Marshal(&pod)
	if err != nil {
		return false
	}
	var compact bytes.Buffer
	if json.Compact(&compact, raw) != nil {
		return false
	}
	return bytes.Equal(compact.Bytes(), canon)
}
