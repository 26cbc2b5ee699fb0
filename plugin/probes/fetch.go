// Package probes reads the mesh-probe sidecars of pods through the API server and turns their
// snapshots into kubectl-mesh's OverheadReport. It has one job: what a probe said, per pod and
// per namespace; choosing the pods and printing are the commands' business.
//
// Probes are read through the API server's pod proxy
// (GET /api/v1/namespaces/NS/pods/NAME:9464/proxy/v1/snapshot?window=W): no port-forward, no
// direct network path from the user to the pods, and access governed by RBAC (get pods/proxy).
package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

const (
	// DefaultParallel is how many probes Fetch reads at once when asked for 0 or less. With
	// the API server's proxy hop at a few milliseconds, 32 reads 200 probes in well under the
	// 2 s that `kubectl mesh overhead -A` is allowed (docs/benchmarks.md, "Plugin"), while
	// staying far below the API server's default in-flight request limits.
	DefaultParallel = 32

	// MaxSnapshotBytes caps what is read of one answer. A snapshot with every bucket of its
	// five histograms filled and 1024 cgroups is about 0.8 MB as the probe serves it (1.6 MB
	// indented); anything larger is not a probe's answer, and must not exhaust memory when
	// 200 arrive at once.
	MaxSnapshotBytes = 4 << 20

	// RequestTimeout bounds one probe's answer, so that one stuck pod (or a probe stopped in
	// a debugger) costs its own entry, not the whole read.
	RequestTimeout = 5 * time.Second

	// maxErrorBytes caps the body of a failed answer: a Status or a line of text.
	maxErrorBytes = 64 << 10
)

// requestTimeout is RequestTimeout; tests shorten it.
var requestTimeout = RequestTimeout

// Kinds of PodSnapshot.Err, for callers that present them differently (errors.Is).
var (
	// ErrNotRunning: the probe container is not running (waiting, crashed, pod not started
	// or finished); nothing was asked.
	ErrNotRunning = errors.New("probe not running")
	// ErrForbidden: the API server refused the pod proxy request (RBAC).
	ErrForbidden = errors.New("pod proxy forbidden")
	// ErrUnreachable: no answer from the probe (connection refused, timeout, API server
	// could not reach the pod).
	ErrUnreachable = errors.New("no answer")
	// ErrPodGone: the pod was deleted since it was listed.
	ErrPodGone = errors.New("pod gone")
	// ErrBadAnswer: something answered, but not with a usable snapshot (not a probe, a probe
	// too old, an error from the probe, or a malformed document).
	ErrBadAnswer = errors.New("bad answer")
)

// Probed reports whether the pod carries the probe container (init container with
// restartPolicy Always, or regular container) named inject.ProbeContainerName.
func Probed(pod *corev1.Pod) bool {
	return probeContainer(pod) != nil
}

// probeContainer returns the probe's container spec, nil when the pod has none. A run-to-
// completion init container of that name is not the probe: it is gone before traffic flows.
func probeContainer(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == inject.ProbeContainerName && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return c
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == inject.ProbeContainerName {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// probeStatus returns the probe container's status, nil when the kubelet has reported none.
func probeStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == inject.ProbeContainerName {
				return &list[i]
			}
		}
	}
	return nil
}

// PodSnapshot is what Fetch learnt of one pod.
type PodSnapshot struct {
	Pod      *corev1.Pod
	Probed   bool          // the pod carries the probe
	Snapshot *api.Snapshot // nil when !Probed or Err != nil
	// Err says why there is no snapshot: one line a user can act on (probe not running / not
	// ready / pod proxy forbidden (RBAC: needs get pods/proxy) / bad answer). It wraps one of
	// the Err* kinds of this package, or the context's error when the read was cancelled.
	Err error
}

// Fetch reads every probed pod's snapshot of the named window through the API server's pod
// proxy (GET /api/v1/namespaces/NS/pods/NAME:9464/proxy/v1/snapshot?window=W; no port-
// forward), at most parallel at a time, in the order of pods. Unprobed pods are returned with
// Probed false. A parallel of 0 or less means DefaultParallel.
//
// Each read has its own RequestTimeout. The clientset's client-side rate limiter is not
// applied to these reads (parallel bounds them instead): at client-go's default of 5 requests
// per second, 200 probes would take 40 s.
func Fetch(ctx context.Context, cs kubernetes.Interface, pods []corev1.Pod, window string, parallel int) []PodSnapshot {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	out := make([]PodSnapshot, len(pods))
	get := newGetter(cs)
	var wg sync.WaitGroup
	work := make(chan int)
	for range min(parallel, len(pods)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = fetchOne(ctx, get, &pods[i], window)
			}
		}()
	}
	for i := range pods {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}

func fetchOne(ctx context.Context, get getter, pod *corev1.Pod, window string) PodSnapshot {
	ps := PodSnapshot{Pod: pod, Probed: Probed(pod)}
	if !ps.Probed {
		return ps
	}
	if err := notRunning(pod); err != nil {
		ps.Err = err
		return ps
	}
	if err := ctx.Err(); err != nil {
		ps.Err = fmt.Errorf("not read: %w", err)
		return ps
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	a := get(rctx, pod.Namespace, pod.Name, window)
	snap, err := a.snapshot(ctx, pod, window)
	if err != nil {
		if st := probeStatus(pod); st != nil && !st.Ready && !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrPodGone) {
			err = fmt.Errorf("%w (container %s is not ready: kubectl -n %s logs %s -c %s)", err, inject.ProbeContainerName, pod.Namespace, pod.Name, inject.ProbeContainerName)
		}
		ps.Err = err
		return ps
	}
	ps.Snapshot = snap
	return ps
}

// notRunning explains, from the pod's status alone, why its probe cannot answer; nil when it
// may.
func notRunning(pod *corev1.Pod) error {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return fmt.Errorf("%w: pod has finished (phase %s)", ErrNotRunning, pod.Status.Phase)
	}
	st := probeStatus(pod)
	if st == nil {
		if pod.Status.PodIP == "" {
			why := "pod not started yet"
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
					why = "pod not scheduled: " + oneLine(c.Message, 160)
				}
			}
			return fmt.Errorf("%w: %s", ErrNotRunning, why)
		}
		return nil // a status not reported yet: asking tells more
	}
	logs := fmt.Sprintf("kubectl -n %s logs %s -c %s", pod.Namespace, pod.Name, inject.ProbeContainerName)
	switch {
	case st.State.Waiting != nil:
		w := st.State.Waiting
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
			return fmt.Errorf("%w: cannot pull image %s (%s)", ErrNotRunning, st.Image, w.Reason)
		case "CrashLoopBackOff":
			msg := "keeps crashing"
			if t := st.LastTerminationState.Terminated; t != nil && t.Message != "" {
				msg += ": " + oneLine(t.Message, 160)
			}
			return fmt.Errorf("%w: %s (%s --previous)", ErrNotRunning, msg, logs)
		case "", "PodInitializing", "ContainerCreating":
			return fmt.Errorf("%w: starting", ErrNotRunning)
		}
		msg := w.Reason
		if w.Message != "" {
			msg += ": " + oneLine(w.Message, 160)
		}
		return fmt.Errorf("%w: %s", ErrNotRunning, msg)
	case st.State.Terminated != nil:
		t := st.State.Terminated
		msg := fmt.Sprintf("exited with code %d", t.ExitCode)
		if t.Reason != "" {
			msg += " (" + t.Reason + ")"
		}
		if t.Message != "" {
			msg += ": " + oneLine(t.Message, 160)
		}
		return fmt.Errorf("%w: %s (%s)", ErrNotRunning, msg, logs)
	}
	return nil
}

// answer is one HTTP exchange with the pod proxy.
type answer struct {
	code int
	body []byte
	// tooLarge: the body exceeded its cap and was cut.
	tooLarge bool
	// err is a transport error (no HTTP answer, or the body cut short).
	err error
}

// getter asks the pod proxy for a snapshot.
type getter func(ctx context.Context, namespace, name, window string) answer

// newGetter prefers speaking HTTP through the clientset's own authenticated http.Client, which
// lets it cap every body it reads, error bodies included (client-go reads those whole), and
// skip client-go's retries (a Retry-After from an overloaded API server would otherwise hold a
// read for seconds). Clientsets without one (fakes in tests) go through ProxyGet.
func newGetter(cs kubernetes.Interface) getter {
	if rc, ok := cs.CoreV1().RESTClient().(*rest.RESTClient); ok && rc != nil && rc.Client != nil {
		return func(ctx context.Context, namespace, name, window string) answer {
			u := rc.Get().Namespace(namespace).Resource("pods").Name(podPort(name)).
				SubResource("proxy").Suffix("v1", "snapshot").Param("window", window).URL()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return answer{err: err}
			}
			req.Header.Set("Accept", "application/json")
			resp, err := rc.Client.Do(req)
			if err != nil {
				return answer{err: err}
			}
			defer resp.Body.Close()
			limit := int64(MaxSnapshotBytes)
			if resp.StatusCode/100 != 2 {
				limit = maxErrorBytes
			}
			a := answer{code: resp.StatusCode}
			a.body, a.err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
			if int64(len(a.body)) > limit {
				a.body, a.tooLarge = a.body[:limit], true
			}
			return a
		}
	}
	return func(ctx context.Context, namespace, name, window string) answer {
		rw := cs.CoreV1().Pods(namespace).ProxyGet("", name, strconv.Itoa(inject.ProbePort), "v1/snapshot",
			map[string]string{"window": window})
		if rw == nil { // a fake clientset without a proxy reactor
			return answer{err: errors.New("the clientset cannot proxy to pods")}
		}
		rc, err := rw.Stream(ctx)
		if err != nil {
			var st apierrors.APIStatus
			if errors.As(err, &st) {
				s := st.Status()
				b, _ := json.Marshal(&s)
				return answer{code: int(s.Code), body: b}
			}
			return answer{err: err}
		}
		defer rc.Close()
		a := answer{code: http.StatusOK}
		a.body, a.err = io.ReadAll(io.LimitReader(rc, MaxSnapshotBytes+1))
		if len(a.body) > MaxSnapshotBytes {
			a.body, a.tooLarge = a.body[:MaxSnapshotBytes], true
		}
		return a
	}
}

func podPort(name string) string { return name + ":" + strconv.Itoa(inject.ProbePort) }

// snapshot turns the answer into a snapshot or an error a user can act on. parent is the
// caller's context: its end is a cancellation, not a probe's fault.
func (a answer) snapshot(parent context.Context, pod *corev1.Pod, window string) (*api.Snapshot, error) {
	if a.err != nil {
		if err := parent.Err(); err != nil {
			return nil, fmt.Errorf("not read: %w", err)
		}
		if errors.Is(a.err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w within %s from port %d (probe or API server overloaded?)", ErrUnreachable, requestTimeout, inject.ProbePort)
		}
		if a.code != 0 {
			return nil, fmt.Errorf("%w: answer cut short: %s", ErrUnreachable, oneLine(a.err.Error(), 200))
		}
		return nil, fmt.Errorf("%w: cannot reach the API server: %s", ErrUnreachable, oneLine(a.err.Error(), 200))
	}
	if a.code/100 != 2 {
		return nil, httpError(a, pod)
	}
	if a.tooLarge {
		return nil, fmt.Errorf("%w: larger than %d MiB, not a probe snapshot", ErrBadAnswer, MaxSnapshotBytes>>20)
	}
	var s api.Snapshot
	if err := json.Unmarshal(a.body, &s); err != nil {
		return nil, fmt.Errorf("%w: not a snapshot document: %s", ErrBadAnswer, oneLine(err.Error(), 160))
	}
	if err := checkSnapshot(&s); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadAnswer, err)
	}
	if s.Window != window {
		return nil, fmt.Errorf("%w: window %q asked, %q answered", ErrBadAnswer, window, oneLine(s.Window, 16))
	}
	return &s, nil
}

// statusBody is the common part of the API server's Status and the probe's error document.
type statusBody struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Message    string                `json:"message"`
	Reason     metav1.StatusReason   `json:"reason"`
	Details    *metav1.StatusDetails `json:"details"`
}

func httpError(a answer, pod *corev1.Pod) error {
	var st statusBody
	isStatus := json.Unmarshal(a.body, &st) == nil && st.Kind == "Status"
	fromProbe := isStatus && st.APIVersion == api.APIVersion
	msg := st.Message
	if !isStatus {
		msg = string(a.body)
	}
	msg = oneLine(msg, 200)
	ns := pod.Namespace
	switch {
	case fromProbe && a.code == http.StatusBadRequest:
		return fmt.Errorf("%w: the probe refused the request (an older probe version?): %s", ErrBadAnswer, msg)
	case fromProbe:
		return fmt.Errorf("%w: the probe failed (HTTP %d): %s", ErrBadAnswer, a.code, msg)
	case a.code == http.StatusForbidden:
		return fmt.Errorf("%w (RBAC: needs get pods/proxy in namespace %s; check: kubectl auth can-i get pods/proxy -n %s)", ErrForbidden, ns, ns)
	case a.code == http.StatusUnauthorized:
		return fmt.Errorf("%w: the API server rejected the credentials (HTTP 401): check --kubeconfig/--context", ErrForbidden)
	case a.code == http.StatusNotFound && isStatus && st.Reason == metav1.StatusReasonNotFound && st.Details != nil && st.Details.Kind == "pods":
		return fmt.Errorf("%w: deleted since it was listed", ErrPodGone)
	case a.code == http.StatusNotFound:
		return fmt.Errorf("%w: port %d answered 404 for /v1/snapshot: not a mesh-probe, or one too old", ErrBadAnswer, inject.ProbePort)
	case a.code == http.StatusTooManyRequests:
		return fmt.Errorf("%w: the API server is throttling requests (HTTP 429); retry, or lower --parallel", ErrUnreachable)
	case a.code == http.StatusBadGateway || a.code == http.StatusServiceUnavailable || a.code == http.StatusGatewayTimeout:
		if msg == "" {
			msg = http.StatusText(a.code)
		}
		return fmt.Errorf("%w from port %d: %s (kubectl -n %s logs %s -c %s)", ErrUnreachable, inject.ProbePort, msg, ns, pod.Name, inject.ProbeContainerName)
	}
	if msg == "" {
		msg = http.StatusText(a.code)
	}
	return fmt.Errorf("%w: HTTP %d: %s", ErrBadAnswer, a.code, msg)
}

// checkSnapshot rejects a document Report could not turn into valid figures: the wrong kind,
// negative or unordered figures, histograms that do not check out or disagree with the
// percentiles beside them.
func checkSnapshot(s *api.Snapshot) error {
	if s.APIVersion != api.APIVersion || s.Kind != api.KindSnapshot {
		return fmt.Errorf("%s %s is not a %s %s", oneLine(s.APIVersion, 40), oneLine(s.Kind, 40), api.APIVersion, api.KindSnapshot)
	}
	if bad(s.DurationSeconds) {
		return errors.New("negative duration")
	}
	if s.End.Before(s.Start) {
		return errors.New("window ends before it starts")
	}
	for _, c := range s.CPU {
		if bad(c.Millicores) || bad(c.CPUMsPer1000Requests) {
			return errors.New("negative CPU figure")
		}
	}
	in := s.Inbound()
	if err := checkTraffic(&in); err != nil {
		return err
	}
	if s.Outbound != nil {
		if err := checkTraffic(s.Outbound); err != nil {
			return fmt.Errorf("outbound: %w", err)
		}
	}
	return nil
}

// checkTraffic checks one direction's figures.
func checkTraffic(t *api.Traffic) error {
	if bad(t.RPS) || bad(t.ProxyAddedMean.Mean) {
		return errors.New("negative rate or mean")
	}
	pcts := map[string]*api.Percentiles{
		"proxyAdded": &t.ProxyAdded, "edge": &t.Edge, "app": &t.App,
		"requestPath": &t.RequestPath, "responsePath": &t.ResponsePath,
	}
	for name, p := range pcts {
		vals := []float64{p.P50, p.P90, p.P99, p.P999, p.Max}
		for i, v := range vals {
			if bad(v) || (i > 0 && v < vals[i-1]) {
				return fmt.Errorf("%s: percentiles negative or out of order", name)
			}
		}
		if bad(p.Mean) {
			return fmt.Errorf("%s: negative mean", name)
		}
	}
	var herr error
	t.Histograms.Each(func(name string, sp *histogram.Sparse) {
		if herr != nil {
			return
		}
		if err := sp.Validate(); err != nil {
			herr = fmt.Errorf("histogram %s: %v", name, err)
		} else if sp.Count != pcts[name].Count {
			herr = fmt.Errorf("histogram %s holds %d values, its percentiles %d", name, sp.Count, pcts[name].Count)
		}
	})
	return herr
}

func bad(f float64) bool { return f < 0 || math.IsNaN(f) || math.IsInf(f, 0) }

// oneLine keeps the first line of s, at most n bytes: messages from the network end up in a
// table cell.
func oneLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " ..."
	}
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}
