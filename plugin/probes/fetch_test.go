package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes/probestest"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

var (
	t0  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now = t0.Add(90 * time.Second)
)

func istioTraffic(seed uint64) probestest.Traffic {
	return probestest.Traffic{RPS: 50, ProxyAdded: 400 * time.Microsecond, App: 2 * time.Millisecond,
		ProxyCPUPerRequest: 300 * time.Microsecond, AppCPUPerRequest: time.Millisecond, Seed: seed}
}

func spec(name string) window.Spec {
	s, ok := window.Lookup(name)
	if !ok {
		panic(name)
	}
	return s
}

func TestProbed(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	for name, c := range map[string]struct {
		pod  corev1.Pod
		want bool
	}{
		"native sidecar": {probestest.Pod("ns", "a", "istio-proxy", true), true},
		"none":           {probestest.Pod("ns", "a", "istio-proxy", false), false},
		"regular container": {corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app"}, {Name: inject.ProbeContainerName}}}}, true},
		// A run-to-completion init container is gone before traffic flows.
		"plain init container": {corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{
			{Name: inject.ProbeContainerName}}}}, false},
		"native, other name": {corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{
			{Name: "probe", RestartPolicy: &always}}}}, false},
	} {
		if got := Probed(&c.pod); got != c.want {
			t.Errorf("%s: Probed = %v, want %v", name, got, c.want)
		}
	}
}

// cluster builds an API server with three pods: an Istio pod with a probe, one without probe
// and one with a probe but no proxy.
func cluster(t *testing.T) (*probestest.APIServer, []corev1.Pod, map[string]*probestest.Probe) {
	t.Helper()
	srv := probestest.NewAPIServer()
	t.Cleanup(srv.Close)
	probes := map[string]*probestest.Probe{
		"echo-1": probestest.NewProbe(t0, now, "istio", "istio-proxy", istioTraffic(1)),
		"plain-1": probestest.NewProbe(t0, now, "none", "", probestest.Traffic{RPS: 20, App: time.Millisecond,
			NoProxy: true, AppCPUPerRequest: time.Millisecond, Seed: 2}),
	}
	pods := []corev1.Pod{
		probestest.Pod("shop", "echo-1", "istio-proxy", true),
		probestest.Pod("shop", "unprobed-1", "istio-proxy", false),
		probestest.Pod("shop", "plain-1", "", true),
	}
	for _, p := range pods {
		var h http.Handler
		if pr := probes[p.Name]; pr != nil {
			h = pr.Handler()
		}
		srv.AddPod(p, h)
	}
	return srv, pods, probes
}

func TestFetchThroughPodProxy(t *testing.T) {
	srv, pods, probes := cluster(t)
	var mu sync.Mutex
	var paths []string
	srv.SetOverride(func(_ http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		paths = append(paths, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		return false
	})
	got := Fetch(context.Background(), srv.Clientset(), pods, "1m", 2)
	if len(got) != 3 {
		t.Fatalf("%d results", len(got))
	}
	for i, ps := range got {
		if ps.Pod != &pods[i] {
			t.Errorf("result %d is not pod %d: order not kept", i, i)
		}
	}
	if got[1].Probed || got[1].Snapshot != nil || got[1].Err != nil {
		t.Errorf("unprobed pod: %+v", got[1])
	}
	for _, i := range []int{0, 2} {
		ps := got[i]
		if !ps.Probed || ps.Err != nil || ps.Snapshot == nil {
			t.Fatalf("%s: probed %v err %v", ps.Pod.Name, ps.Probed, ps.Err)
		}
		want, err := probes[ps.Pod.Name].Snapshot(spec("1m"))
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, *ps.Snapshot, want) {
			t.Errorf("%s: fetched snapshot differs from the probe's", ps.Pod.Name)
		}
	}
	// Two probed pods, two reads, through the pod proxy on the probe's port; none for the
	// unprobed pod.
	want := map[string]bool{
		"/api/v1/namespaces/shop/pods/echo-1:9464/proxy/v1/snapshot?window=1m":  true,
		"/api/v1/namespaces/shop/pods/plain-1:9464/proxy/v1/snapshot?window=1m": true,
	}
	if len(paths) != 2 || !want[paths[0]] || !want[paths[1]] || paths[0] == paths[1] {
		t.Errorf("requests %q", paths)
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// endless writes until the client goes away: what is read of it must be capped.
func endless(code int, prefix string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/proxy/") {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, prefix)
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for i := 0; i < 1<<14; i++ { // 1 GiB at most
			if _, err := w.Write(chunk); err != nil {
				return true
			}
		}
		return true
	}
}

func onProxy(code int, contentType, body string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/proxy/") {
			return false
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
		return true
	}
}

func statusJSON(code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) string {
	b, _ := json.Marshal(&metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code), Details: details})
	return string(b)
}

// snapshotJSON is a real snapshot, edited.
func snapshotJSON(t *testing.T, edit func(*api.Snapshot)) string {
	t.Helper()
	s, err := probestest.NewProbe(t0, now, "istio", "istio-proxy", istioTraffic(3)).Snapshot(spec("1m"))
	if err != nil {
		t.Fatal(err)
	}
	edit(&s)
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFetchErrors(t *testing.T) {
	cases := []struct {
		name     string
		override func(w http.ResponseWriter, r *http.Request) bool
		window   string
		pod      func(*corev1.Pod)
		kind     error
		want     string
		// noRequest: the pod's status says it all; nothing is asked.
		noRequest bool
		// timeout replaces RequestTimeout.
		timeout time.Duration
	}{
		{name: "forbidden", kind: ErrForbidden, want: "needs get pods/proxy in namespace shop",
			override: onProxy(403, "application/json", statusJSON(403, metav1.StatusReasonForbidden,
				`pods "echo-1" is forbidden: User "dev" cannot get resource "pods/proxy" in API group "" in the namespace "shop"`, nil))},
		{name: "unauthorized", kind: ErrForbidden, want: "credentials",
			override: onProxy(401, "application/json", statusJSON(401, metav1.StatusReasonUnauthorized, "Unauthorized", nil))},
		{name: "pod deleted", kind: ErrPodGone, want: "deleted since it was listed",
			override: onProxy(404, "application/json", statusJSON(404, metav1.StatusReasonNotFound, `pods "echo-1" not found`,
				&metav1.StatusDetails{Name: "echo-1", Kind: "pods"}))},
		{name: "not a probe", kind: ErrBadAnswer, want: "answered 404 for /v1/snapshot: not a mesh-probe",
			override: onProxy(404, "text/plain", "404 page not found\n")},
		{name: "nothing listening", kind: ErrUnreachable, want: "connection refused",
			override: onProxy(503, "application/json", statusJSON(503, metav1.StatusReasonServiceUnavailable,
				"error trying to reach service: dial tcp 10.244.0.10:9464: connect: connection refused", nil))},
		{name: "bad gateway, no body", kind: ErrUnreachable, want: "Bad Gateway",
			override: onProxy(502, "text/plain", "")},
		{name: "throttled", kind: ErrUnreachable, want: "429",
			override: onProxy(429, "application/json", statusJSON(429, metav1.StatusReasonTooManyRequests, "too many requests", nil))},
		{name: "probe refuses the window", kind: ErrBadAnswer, want: `refused the request (an older probe version?): unknown window "5m"`,
			window: "5m"},
		{name: "probe fails", kind: ErrBadAnswer, want: "the probe failed (HTTP 500): boom",
			override: onProxy(500, "application/json", `{"apiVersion":"kubectl-mesh.io/v1alpha1","kind":"Status","code":500,"message":"boom\nsecond line"}`)},
		{name: "teapot", kind: ErrBadAnswer, want: "HTTP 418: I'm a teapot",
			override: onProxy(418, "text/plain", "")},
		{name: "timeout", kind: ErrUnreachable, want: "no answer within 300ms", timeout: 300 * time.Millisecond,
			override: func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/proxy/") {
					return false
				}
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return true
			}},
		{name: "malformed JSON", kind: ErrBadAnswer, want: "not a snapshot document",
			override: onProxy(200, "application/json", `{"apiVersion": "kubectl-mesh.io/v1alpha1", "kind": `)},
		{name: "not JSON", kind: ErrBadAnswer, want: "not a snapshot document",
			override: onProxy(200, "text/html", "<html>hello</html>")},
		{name: "another kind", kind: ErrBadAnswer, want: "v1 Pod is not a kubectl-mesh.io/v1alpha1 ProbeSnapshot",
			override: onProxy(200, "application/json", `{"apiVersion":"v1","kind":"Pod"}`)},
		{name: "oversized", kind: ErrBadAnswer, want: "larger than 4 MiB",
			override: endless(200, `{"apiVersion":"kubectl-mesh.io/v1alpha1","kind":"ProbeSnapshot","notes":[`)},
		{name: "oversized error", kind: ErrBadAnswer, want: "HTTP 500",
			override: endless(500, `oops`)},
		{name: "corrupt histogram", kind: ErrBadAnswer, want: "histogram proxyAdded",
			override: onProxy(200, "application/json", snapshotJSON(t, func(s *api.Snapshot) { s.Histograms.ProxyAdded.Count++ }))},
		{name: "histogram disagrees", kind: ErrBadAnswer, want: "histogram edge holds",
			override: onProxy(200, "application/json", snapshotJSON(t, func(s *api.Snapshot) { s.Edge.Count++ }))},
		{name: "unordered percentiles", kind: ErrBadAnswer, want: "out of order",
			override: onProxy(200, "application/json", snapshotJSON(t, func(s *api.Snapshot) { s.ProxyAdded.P50 = s.ProxyAdded.Max + 1 }))},
		{name: "negative CPU", kind: ErrBadAnswer, want: "negative CPU",
			override: onProxy(200, "application/json", snapshotJSON(t, func(s *api.Snapshot) { s.CPU[0].Millicores = -1 }))},
		{name: "other window", kind: ErrBadAnswer, want: `window "1m" asked, "10s" answered`,
			override: onProxy(200, "application/json", snapshotJSON(t, func(s *api.Snapshot) { s.Window = "10s" }))},
		{name: "crash loop", kind: ErrNotRunning, want: "keeps crashing: no BTF ... (kubectl -n shop logs echo-1 -c mesh-probe --previous)", noRequest: true,
			pod: func(p *corev1.Pod) {
				st := &p.Status.InitContainerStatuses[0]
				st.Ready = false
				st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
				st.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Message: "no BTF\nmore"}
			}},
		{name: "image pull", kind: ErrNotRunning, want: "cannot pull image", noRequest: true,
			pod: func(p *corev1.Pod) {
				p.Status.InitContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}
			}},
		{name: "exited", kind: ErrNotRunning, want: "exited with code 2 (Error): missing CAP_BPF", noRequest: true,
			pod: func(p *corev1.Pod) {
				p.Status.InitContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 2, Reason: "Error", Message: "missing CAP_BPF"}}
			}},
		{name: "pod finished", kind: ErrNotRunning, want: "pod has finished (phase Succeeded)", noRequest: true,
			pod: func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }},
		{name: "unscheduled", kind: ErrNotRunning, want: "pod not scheduled: 0/3 nodes are available", noRequest: true,
			pod: func(p *corev1.Pod) {
				p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
					Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/3 nodes are available"}}}
			}},
		{name: "not ready and silent", kind: ErrUnreachable, want: "container mesh-probe is not ready",
			override: onProxy(503, "application/json", statusJSON(503, metav1.StatusReasonServiceUnavailable, "error trying to reach service: EOF", nil)),
			pod:      func(p *corev1.Pod) { p.Status.InitContainerStatuses[0].Ready = false }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.timeout > 0 {
				old := requestTimeout
				requestTimeout = c.timeout
				t.Cleanup(func() { requestTimeout = old })
			}
			srv, pods, _ := cluster(t)
			pod := pods[0]
			if c.pod != nil {
				c.pod(&pod)
			}
			srv.SetOverride(c.override)
			w := c.window
			if w == "" {
				w = "1m"
			}
			before := srv.Requests()
			start := time.Now()
			got := Fetch(context.Background(), srv.Clientset(), []corev1.Pod{pod}, w, 4)[0]
			if time.Since(start) > requestTimeout+time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			if got.Snapshot != nil || got.Err == nil {
				t.Fatalf("snapshot %v, err %v", got.Snapshot != nil, got.Err)
			}
			if !errors.Is(got.Err, c.kind) || !strings.Contains(got.Err.Error(), c.want) {
				t.Errorf("err %q\nwant kind %q containing %q", got.Err, c.kind, c.want)
			}
			if msg := got.Err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 400 {
				t.Errorf("not one short line: %q", msg)
			}
			if asked := srv.Requests() - before; c.noRequest != (asked == 0) {
				t.Errorf("%d requests made", asked)
			}
		})
	}
}

func TestFetchCancelled(t *testing.T) {
	srv, pods, _ := cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := Fetch(ctx, srv.Clientset(), pods, "1m", 2)
	if got[0].Err == nil || !errors.Is(got[0].Err, context.Canceled) || !got[0].Probed {
		t.Errorf("cancelled: %+v", got[0])
	}
	if got[1].Probed || got[1].Err != nil {
		t.Errorf("unprobed pod: %+v", got[1])
	}
}

// At most parallel reads are in flight, and they do overlap.
func TestFetchParallelism(t *testing.T) {
	srv := probestest.NewAPIServer()
	defer srv.Close()
	handler := probestest.NewProbe(t0, now, "istio", "istio-proxy", istioTraffic(4)).Handler()
	var pods []corev1.Pod
	for i := range 40 {
		p := probestest.Pod("load", fmt.Sprintf("echo-%02d", i), "istio-proxy", true)
		srv.AddPod(p, handler)
		pods = append(pods, p)
	}
	var inFlight, peak atomic.Int32
	srv.SetOverride(func(http.ResponseWriter, *http.Request) bool {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return false
	})
	got := Fetch(context.Background(), srv.Clientset(), pods, "10s", 5)
	for i, ps := range got {
		if ps.Err != nil || ps.Pod.Name != pods[i].Name {
			t.Fatalf("%d: %s %v", i, ps.Pod.Name, ps.Err)
		}
	}
	if p := peak.Load(); p > 5 || p < 2 {
		t.Errorf("peak in flight %d, want 2..5", p)
	}
}

// A fake clientset has no HTTP client: Fetch goes through ProxyGet, whose answers a test
// provides with a proxy reactor.
type fakeWrapper struct {
	body []byte
	err  error
}

func (f fakeWrapper) DoRaw(context.Context) ([]byte, error) { return f.body, f.err }
func (f fakeWrapper) Stream(context.Context) (io.ReadCloser, error) {
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(bytes.NewReader(f.body)), nil
}

func TestFetchWithFakeClientset(t *testing.T) {
	pods := []corev1.Pod{probestest.Pod("shop", "echo-1", "istio-proxy", true), probestest.Pod("shop", "echo-2", "istio-proxy", true)}
	good := snapshotJSON(t, func(*api.Snapshot) {})
	cs := fake.NewClientset()
	var asked []string
	var mu sync.Mutex
	cs.PrependProxyReactor("pods", func(a k8stesting.Action) (bool, rest.ResponseWrapper, error) {
		pa := a.(k8stesting.ProxyGetAction)
		mu.Lock()
		asked = append(asked, pa.GetName()+":"+pa.GetPort()+"/"+pa.GetPath()+"?window="+pa.GetParams()["window"])
		mu.Unlock()
		if pa.GetName() == "echo-2" {
			return true, fakeWrapper{err: &statusError{metav1.Status{Code: 403, Reason: metav1.StatusReasonForbidden, Message: "forbidden"}}}, nil
		}
		return true, fakeWrapper{body: []byte(good)}, nil
	})
	got := Fetch(context.Background(), cs, pods, "1m", 2)
	if got[0].Err != nil || got[0].Snapshot == nil || got[0].Snapshot.Kind != api.KindSnapshot {
		t.Errorf("echo-1: %+v", got[0])
	}
	if !errors.Is(got[1].Err, ErrForbidden) {
		t.Errorf("echo-2: %v", got[1].Err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range asked {
		if !strings.HasSuffix(a, ":9464/v1/snapshot?window=1m") {
			t.Errorf("asked %q", a)
		}
	}
	// Without a reactor: an error, not a panic.
	got = Fetch(context.Background(), fake.NewClientset(), pods[:1], "1m", 1)
	if !errors.Is(got[0].Err, ErrUnreachable) {
		t.Errorf("no reactor: %v", got[0].Err)
	}
}

// statusError is an API error as client-go returns it.
type statusError struct{ s metav1.Status }

func (e *statusError) Error() string         { return e.s.Message }
func (e *statusError) Status() metav1.Status { return e.s }
