// Package probestest stands in for a cluster in the plugin's tests and benchmarks: an HTTP
// server answering like the API server for what `kubectl mesh overhead` and probes.Fetch use
// (GET /version, pod lists, and the pod proxy to port 9464), with each pod's probe a real
// probe/server.Handler over a real probe/recorder fed with synthetic requests. kubectl-mesh
// itself never uses it.
package probestest

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/recorder"
	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Traffic is what a synthetic probe saw: requests at a steady rate whose proxy and application
// times are lognormal around their medians.
type Traffic struct {
	RPS float64
	// ProxyAdded and App are median times per request; Sigma the lognormal spread (0: 0.5).
	ProxyAdded, App time.Duration
	Sigma           float64
	// NoProxy: a pod without proxy (every request timed at the edge only).
	NoProxy bool
	// ProxyCPUPerRequest is the proxy's CPU time per request; AppCPUPerRequest the app's.
	ProxyCPUPerRequest, AppCPUPerRequest time.Duration
	// Ambiguous is the share of requests that overlapped too much to be paired one by one
	// but were settled in total; Unmatched the share of edge exchanges with no partner.
	Ambiguous, Unmatched float64
	// Losses are added over the run.
	Losses api.Losses
	Seed   uint64
	// Outbound, when set, are the application's calls out through the proxy; without it the
	// probe does not measure outbound calls (no outbound port).
	Outbound *OutboundTraffic
}

// OutboundTraffic are outbound calls at a steady rate, every one paired: the proxy adds
// ProxyAdded and the upstream takes Upstream (medians, lognormal like Traffic's).
type OutboundTraffic struct {
	RPS                  float64
	ProxyAdded, Upstream time.Duration
}

// Cgroup ids of the synthetic pod's containers.
const (
	CgroupProxy = 11
	CgroupApp   = 12
	CgroupProbe = 13
)

// Probe is a probe whose clock stopped at Now: its snapshots do not change, which keeps
// golden files stable.
type Probe struct {
	Rec *recorder.Recorder
	Now time.Time
	Ctx recorder.Context
}

// NewProbe records traffic from start to now at the agent's cadence (every 250 ms), as the
// agent would: decided results and running totals.
func NewProbe(start, now time.Time, mesh, proxyName string, t Traffic) *Probe {
	sigma := t.Sigma
	if sigma == 0 {
		sigma = 0.5
	}
	draw := func(r *rand.Rand, median time.Duration) time.Duration {
		return time.Duration(float64(median) * math.Exp(r.NormFloat64()*sigma))
	}
	rng := rand.New(rand.NewPCG(t.Seed, t.Seed^0x9e3779b97f4a7c15))
	lognormal := func(median time.Duration) time.Duration { return draw(rng, median) }
	// Outbound calls draw from a generator of their own, so that adding them to a pod leaves
	// its inbound figures as they were.
	outRng := rand.New(rand.NewPCG(t.Seed+1, t.Seed^0x5851f42d4c957f2d))
	outCarry := 0.0
	rec := recorder.New(start)
	var totals recorder.Totals
	totals.CPU = map[uint64]time.Duration{}
	const tick = 250 * time.Millisecond
	ticks := int(now.Sub(start) / tick)
	perTick := t.RPS * tick.Seconds()
	carry := 0.0
	var results []pairing.Result
	for k := 1; k <= ticks; k++ {
		at := start.Add(time.Duration(k) * tick)
		carry += perTick
		n := int(carry)
		carry -= float64(n)
		results = results[:0]
		var cpuProxy, cpuApp time.Duration
		for range n {
			totals.Counts.Edge++
			if rng.Float64() < t.Unmatched {
				totals.Counts.UnmatchedEdge++
				continue
			}
			app := lognormal(t.App)
			if t.NoProxy {
				totals.Counts.NoProxy++
				results = append(results, pairing.Result{Method: pairing.NoProxy, EdgeDuration: app, AppDuration: app})
				cpuApp += t.AppCPUPerRequest
				continue
			}
			totals.Counts.App++
			added := lognormal(t.ProxyAdded)
			cpuProxy += t.ProxyCPUPerRequest
			cpuApp += t.AppCPUPerRequest
			if rng.Float64() < t.Ambiguous {
				totals.Counts.AmbiguousEdge++
				totals.Counts.AmbiguousApp++
				totals.Counts.AmbiguousSettled++
				totals.Counts.AmbiguousProxyAdded += added
				continue
			}
			totals.Counts.Paired++
			in := added * 2 / 5
			results = append(results, pairing.Result{
				Method: pairing.ByContainment, EdgeDuration: app + added, AppDuration: app,
				ProxyAdded: added, RequestPath: in, ResponsePath: added - in,
			})
		}
		if o := t.Outbound; o != nil {
			outCarry += o.RPS * tick.Seconds()
			m := int(outCarry)
			outCarry -= float64(m)
			for range m {
				up := draw(outRng, o.Upstream)
				added := draw(outRng, o.ProxyAdded)
				totals.OutboundCounts.App++
				totals.OutboundCounts.Edge++
				totals.OutboundCounts.Paired++
				results = append(results, pairing.Result{
					Edge:   pairing.Exchange{Direction: exchange.Outbound, Leg: exchange.LegEdge},
					Method: pairing.ByContainment, EdgeDuration: up, AppDuration: up + added,
					ProxyAdded: added, RequestPath: added / 2, ResponsePath: added - added/2,
				})
			}
		}
		if !t.NoProxy {
			totals.CPU[CgroupProxy] += cpuProxy
		}
		totals.CPU[CgroupApp] += cpuApp
		totals.CPU[CgroupProbe] += time.Duration(n) * 2 * time.Microsecond
		if ticks > 0 {
			frac := func(total uint64) uint64 { return total * uint64(k) / uint64(ticks) }
			totals.Losses = api.Losses{
				RingBufferFull: frac(t.Losses.RingBufferFull), DecodeErrors: frac(t.Losses.DecodeErrors),
				Overload: frac(t.Losses.Overload), IdleLate: frac(t.Losses.IdleLate),
			}
		}
		// The recorder keeps the CPU map it is given as the previous totals: hand it a copy.
		cpu := make(map[uint64]time.Duration, len(totals.CPU))
		for id, d := range totals.CPU {
			cpu[id] = d
		}
		rec.Record(at, results, recorder.Totals{Counts: totals.Counts, OutboundCounts: totals.OutboundCounts, CPU: cpu, Losses: totals.Losses})
	}
	p := &Probe{Rec: rec, Now: now, Ctx: recorder.Context{
		Mesh:          mesh,
		ProxyDetected: !t.NoProxy && t.RPS > 0,
		Containers: map[uint64]api.ContainerCPU{
			CgroupApp:   {},
			CgroupProbe: {Role: "probe"},
		},
	}}
	if t.Outbound != nil {
		p.Ctx.Outbound, p.Ctx.OutboundProxyDetected = true, t.Outbound.RPS > 0
	} else {
		p.Ctx.Notes = []string{"outbound calls are not measured: no proxy outbound port is configured"}
	}
	if t.NoProxy {
		p.Ctx.Containers[CgroupApp] = api.ContainerCPU{Role: "app"}
	} else {
		p.Ctx.Containers[CgroupProxy] = api.ContainerCPU{Role: "proxy", Name: proxyName}
	}
	return p
}

// Snapshot implements server.Source.
func (p *Probe) Snapshot(spec window.Spec) (api.Snapshot, error) {
	return p.Rec.Snapshot(p.Now, spec, p.Ctx)
}

// Ready implements server.Source.
func (p *Probe) Ready() error { return nil }

// Handler is the probe's real HTTP interface.
func (p *Probe) Handler() http.Handler { return server.Handler(p, prometheus.NewRegistry()) }

// Pod returns a running, ready pod. proxy is the proxy container's name ("" for none); a probed
// pod carries the probe as a native sidecar, configured as the webhook configures it.
func Pod(namespace, name, proxy string, probed bool) corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": strings.SplitN(name, "-", 2)[0]}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.0.10",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
	if proxy != "" {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: proxy, Image: "example.com/proxy:1"})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: proxy, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	}
	if probed {
		mesh := string(inject.MeshNone)
		switch proxy {
		case inject.IstioProxyContainer:
			mesh = string(inject.MeshIstio)
		case inject.LinkerdProxyContainer:
			mesh = string(inject.MeshLinkerd)
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{
			Name: inject.ProbeContainerName, Image: inject.DefaultImage, RestartPolicy: &always,
			Env: []corev1.EnvVar{{Name: inject.EnvMesh, Value: mesh}, {Name: inject.EnvProxyContainer, Value: proxy}},
		})
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{
			Name: inject.ProbeContainerName, Image: inject.DefaultImage, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		})
	}
	return p
}

// APIServer answers like the API server for GET /version, pod lists (all namespaces or one,
// with a label selector) and the pod proxy to the probe's port.
type APIServer struct {
	*httptest.Server

	delay    atomic.Int64 // see SetDelay
	mu       sync.Mutex
	pods     []corev1.Pod
	probes   map[string]http.Handler // namespace/name
	override func(w http.ResponseWriter, r *http.Request) bool
	requests atomic.Int64
}

// NewAPIServer starts an empty server on loopback.
func NewAPIServer() *APIServer {
	s := &APIServer{probes: map[string]http.Handler{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2"})
	})
	mux.HandleFunc("GET /api/v1/pods", s.listPods)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods", s.listPods)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}/proxy/{rest...}", s.proxy)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		s.mu.Lock()
		o := s.override
		s.mu.Unlock()
		if o != nil && o(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	return s
}

// AddPod adds a pod; probe answers for its port 9464 (nil: nothing listens there).
func (s *APIServer) AddPod(pod corev1.Pod, probe http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods = append(s.pods, pod)
	if probe != nil {
		s.probes[pod.Namespace+"/"+pod.Name] = probe
	}
}

// SetDelay makes every request wait d before it is answered: the API server's own work and,
// for the pod proxy, its hop to the pod's network.
func (s *APIServer) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// SetOverride installs f, which answers a request itself when it returns true.
func (s *APIServer) SetOverride(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.override = f
	s.mu.Unlock()
}

// Requests counts the requests received.
func (s *APIServer) Requests() int64 { return s.requests.Load() }

// Config is a client configuration for the server, with client-go's default rate limits.
func (s *APIServer) Config() *rest.Config { return &rest.Config{Host: s.URL} }

// Clientset is a clientset for the server.
func (s *APIServer) Clientset() kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		panic(err) // a host URL and nothing else cannot be refused
	}
	return cs
}

func (s *APIServer) listPods(w http.ResponseWriter, r *http.Request) {
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		WriteStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
		return
	}
	ns := r.PathValue("ns")
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{}}
	s.mu.Lock()
	for _, p := range s.pods {
		if (ns == "" || p.Namespace == ns) && sel.Matches(labels.Set(p.Labels)) {
			list.Items = append(list.Items, p)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, &list)
}

func (s *APIServer) proxy(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	pod, port, _ := strings.Cut(name, ":")
	s.mu.Lock()
	found := false
	for _, p := range s.pods {
		found = found || (p.Namespace == ns && p.Name == pod)
	}
	h := s.probes[ns+"/"+pod]
	s.mu.Unlock()
	if !found {
		WriteStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "`+pod+`" not found`, &metav1.StatusDetails{Name: pod, Kind: "pods"})
		return
	}
	if h == nil || port != strconv.Itoa(inject.ProbePort) {
		// What the API server says when nothing listens on the pod's port.
		WriteStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"error trying to reach service: dial tcp 10.244.0.10:"+port+": connect: connection refused", nil)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + r.PathValue("rest")
	r2.URL.RawPath = ""
	h.ServeHTTP(w, r2)
}

// WriteStatus writes a Status as the API server does for a failed request.
func WriteStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) {
	writeJSON(w, code, &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Details: details, Code: int32(code),
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
