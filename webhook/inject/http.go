package inject

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var reviewTypeMeta = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}

// ServeHTTP serves AdmissionReview v1 over HTTP (TLS is the server's business).
//
// Any body that decodes as JSON gets a 200 with an AdmissionReview v1 whose response is allowed
// and echoes the request UID; one that is unusable says why in its warnings and result. Only what
// cannot carry a UID gets an HTTP error with a plain-text explanation: a method other than POST
// (405), a body that cannot be read or is not JSON (400), a body over the size cap (413). The
// Content-Type is not checked: the API server always sends JSON, and being lenient can only
// admit more pods.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.httpError(w, r, start, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; POST an AdmissionReview", r.Method))
		return
	}
	if r.Body == nil {
		h.httpError(w, r, start, http.StatusBadRequest, "empty request body; POST an AdmissionReview")
		return
	}
	// Read at most one byte past the cap, which is how we know the cap was passed without
	// reading an arbitrarily large body into memory.
	body, err := io.ReadAll(io.LimitReader(r.Body, h.maxBytes+1))
	if err != nil {
		h.httpError(w, r, start, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	if int64(len(body)) > h.maxBytes {
		h.httpError(w, r, start, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", h.maxBytes))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		h.httpError(w, r, start, http.StatusBadRequest, "request body is not a JSON AdmissionReview: "+err.Error())
		return
	}

	var resp *admissionv1.AdmissionResponse
	switch {
	case review.TypeMeta != reviewTypeMeta:
		d := decided(ReasonMalformedRequest, "expected apiVersion %s kind AdmissionReview, got apiVersion %q kind %q",
			reviewTypeMeta.APIVersion, review.APIVersion, review.Kind).warn("malformed admission request")
		resp = h.respond(review.Request, d)
		h.finish(r.Context(), review.Request, d, start)
	default: // a nil Request is handled, and counted, by review
		resp = h.review(r.Context(), review.Request, start)
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewTypeMeta, Response: resp})
	if err != nil { // cannot happen for these types; answer something the server understands
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// httpError answers a body that cannot be answered with an AdmissionReview, and counts it.
func (h *Handler) httpError(w http.ResponseWriter, r *http.Request, start time.Time, code int, msg string) {
	http.Error(w, msg, code)
	h.finish(r.Context(), nil, decided(ReasonMalformedRequest, "HTTP %d: %s", code, msg), start)
}
