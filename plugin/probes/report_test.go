package probes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/probes/probestest"
	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/recorder"
	"github.com/kubectl-mesh/kubectl-mesh/probe/server"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// valuesSnapshot is the 1m snapshot of a real recorder that decided one request per given proxy
// time (application time 2 ms, a third of the proxy time on the way in), spread over the
// window, with cpuPerRequest of proxy CPU each.
func valuesSnapshot(t *testing.T, added []time.Duration, cpuPerRequest time.Duration) *api.Snapshot {
	t.Helper()
	rec := recorder.New(t0)
	var counts pairing.Counts
	cpu := time.Duration(0)
	// The 1m window at now (t0+90s) covers [t0+30s, t0+90s).
	for i, a := range added {
		at := t0.Add(31*time.Second + time.Duration(i)*58*time.Second/time.Duration(len(added)))
		app := 2 * time.Millisecond
		res := pairing.Result{Method: pairing.ByContainment, EdgeDuration: app + a, AppDuration: app,
			ProxyAdded: a, RequestPath: a / 3, ResponsePath: a - a/3}
		counts.Edge++
		counts.App++
		counts.Paired++
		cpu += cpuPerRequest
		rec.Record(at, []pairing.Result{res}, recorder.Totals{Counts: counts, CPU: map[uint64]time.Duration{probestest.CgroupProxy: cpu}})
	}
	s, err := rec.Snapshot(now, spec("1m"), recorder.Context{Mesh: "istio", ProxyDetected: true,
		Containers: map[uint64]api.ContainerCPU{probestest.CgroupProxy: {Name: "istio-proxy", Role: "proxy"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func probeSnapshot(t *testing.T, mesh, proxy string, tr probestest.Traffic, windowName string) *api.Snapshot {
	t.Helper()
	s, err := probestest.NewProbe(t0, now, mesh, proxy, tr).Snapshot(spec(windowName))
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func exactQuantile(sorted []time.Duration, q float64) float64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return api.Millis(sorted[max(rank, 1)-1])
}

// withinBound: a merged-histogram quantile against the exact one, in ms: the histogram's
// relative error plus the microsecond rounding.
func withinBound(got, exact float64) bool {
	return math.Abs(got-exact) <= exact*histogram.RelativeError+0.0005+1e-9
}

func podByName(r *smps.OverheadReport, name string) *smps.PodOverhead {
	for i := range r.Pods {
		if r.Pods[i].Name == name {
			return &r.Pods[i]
		}
	}
	return nil
}

func nsByName(r *smps.OverheadReport, name string) *smps.NamespaceOverhead {
	for i := range r.Namespaces {
		if r.Namespaces[i].Namespace == name {
			return &r.Namespaces[i]
		}
	}
	return nil
}

func TestReport(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	// Two pods with different distributions: fast and many, slow and few. The namespace's
	// percentiles are those of all their requests together, which averaging the pods'
	// percentiles would miss by far.
	var a, b []time.Duration
	for range 3000 {
		a = append(a, time.Duration(rng.ExpFloat64()*float64(300*time.Microsecond)))
	}
	for range 600 {
		b = append(b, 2*time.Millisecond+time.Duration(rng.ExpFloat64()*float64(3*time.Millisecond)))
	}
	snapA := valuesSnapshot(t, a, 200*time.Microsecond)
	snapB := valuesSnapshot(t, b, 500*time.Microsecond)
	snapPlain := probeSnapshot(t, "none", "", probestest.Traffic{RPS: 20, App: time.Millisecond, NoProxy: true, Seed: 5}, "1m")
	snapLk := probeSnapshot(t, "linkerd", "linkerd-proxy", probestest.Traffic{RPS: 40, ProxyAdded: 150 * time.Microsecond, App: time.Millisecond,
		ProxyCPUPerRequest: 100 * time.Microsecond, Losses: api.Losses{RingBufferFull: 17, IdleLate: 2}, Seed: 6}, "1m")

	pods := []corev1.Pod{
		probestest.Pod("shop", "echo-a", "istio-proxy", true),
		probestest.Pod("shop", "echo-b", "istio-proxy", true),
		probestest.Pod("shop", "plain-1", "", true),
		probestest.Pod("shop", "down-1", "istio-proxy", true),
		probestest.Pod("shop", "unprobed-1", "istio-proxy", false),
		probestest.Pod("web", "lk-1", "linkerd-proxy", true),
	}
	snaps := []PodSnapshot{
		{Pod: &pods[0], Probed: true, Snapshot: snapA},
		{Pod: &pods[1], Probed: true, Snapshot: snapB},
		{Pod: &pods[2], Probed: true, Snapshot: snapPlain},
		{Pod: &pods[3], Probed: true, Err: fmt.Errorf("%w from port 9464: error trying to reach service: EOF", ErrUnreachable)},
		{Pod: &pods[4]},
		{Pod: &pods[5], Probed: true, Snapshot: snapLk},
	}
	r := Report("overhead-1", snapA.Start, snapA.End, snaps)
	if err := r.Validate(); err != nil {
		t.Fatalf("invalid report: %v", err)
	}
	var buf bytes.Buffer
	if err := smps.Encode(&buf, r, smps.YAML); err != nil {
		t.Fatal(err)
	}
	if len(r.Pods) != 5 || podByName(r, "unprobed-1") != nil {
		t.Fatalf("pods %+v: want one per probed pod", r.Pods)
	}
	if len(r.Namespaces) != 2 || r.Namespaces[0].Namespace != "shop" || r.Namespaces[1].Namespace != "web" {
		t.Fatalf("namespaces %+v", r.Namespaces)
	}

	pa := podByName(r, "echo-a")
	if pa.ProxyContainer != "istio-proxy" || pa.Probe.Status != smps.ProbeOK || pa.Requests != 3000 || pa.Note != "" {
		t.Errorf("echo-a: %+v", pa)
	}
	if pa.RPS != 50 { // 3000 requests over the 60 s window
		t.Errorf("echo-a rps %v", pa.RPS)
	}
	if *pa.ProxyAddedLatencyMs != (smps.TailLatencyMs{P50: snapA.ProxyAdded.P50, P90: snapA.ProxyAdded.P90, P99: snapA.ProxyAdded.P99,
		P999: snapA.ProxyAdded.P999, Max: snapA.ProxyAdded.Max}) {
		t.Errorf("echo-a proxy added %+v, the probe said %+v", *pa.ProxyAddedLatencyMs, snapA.ProxyAdded)
	}
	// 200 us of CPU per request: 3000 requests in 60 s is 10 millicores, 200 CPU ms per 1000.
	if math.Abs(*pa.ProxyCPUMillicores-10) > 0.01 || math.Abs(*pa.ProxyCPUMsPer1000Requests-200) > 0.1 {
		t.Errorf("echo-a cpu %v m, %v ms/1000", *pa.ProxyCPUMillicores, *pa.ProxyCPUMsPer1000Requests)
	}

	pp := podByName(r, "plain-1")
	if pp.ProxyContainer != NoProxyContainer || pp.Note != "no proxy in the pod: overhead none" || pp.Probe.Status != smps.ProbeOK {
		t.Errorf("plain-1: %+v", pp)
	}
	if pp.ProxyAddedLatencyMs != nil || pp.RequestPathMs != nil || pp.AppMs != nil || pp.ProxyCPUMillicores != nil || pp.EdgeMs == nil || pp.Requests == 0 {
		t.Errorf("plain-1 figures: %+v", pp.OverheadStats)
	}

	pd := podByName(r, "down-1")
	if pd.Probe.Status != smps.ProbeFailed || !strings.Contains(pd.Probe.Message, "no answer from port 9464") || pd.ProxyContainer != "istio-proxy" || pd.Requests != 0 {
		t.Errorf("down-1: %+v", pd)
	}

	pl := podByName(r, "lk-1")
	// The synthetic losses spread over the probe's 90 s; the window holds its share.
	lost := snapLk.Losses.RingBufferFull
	if pl.ProxyContainer != "linkerd-proxy" || pl.Probe.Status != smps.ProbeDegraded || lost == 0 || pl.Probe.LostEvents != int64(lost) ||
		!strings.Contains(pl.Probe.Message, fmt.Sprintf("%d exchanges lost (ring buffer full)", lost)) || !strings.Contains(pl.Probe.Message, "response segments too late") {
		t.Errorf("lk-1: %+v", pl)
	}

	shop := nsByName(r, "shop")
	if shop.Pods != 4 || shop.Requests != pa.Requests+podByName(r, "echo-b").Requests+pp.Requests {
		t.Errorf("shop: %d pods, %d requests", shop.Pods, shop.Requests)
	}
	all := slices.Concat(a, b)
	slices.Sort(all)
	got := shop.ProxyAddedLatencyMs
	pb := podByName(r, "echo-b")
	for _, q := range []struct {
		name string
		q    float64
		got  float64
		avg  float64
	}{
		{"p50", 0.5, got.P50, (pa.ProxyAddedLatencyMs.P50 + pb.ProxyAddedLatencyMs.P50) / 2},
		{"p90", 0.9, got.P90, (pa.ProxyAddedLatencyMs.P90 + pb.ProxyAddedLatencyMs.P90) / 2},
		{"p99", 0.99, got.P99, (pa.ProxyAddedLatencyMs.P99 + pb.ProxyAddedLatencyMs.P99) / 2},
		{"p999", 0.999, got.P999, (pa.ProxyAddedLatencyMs.P999 + pb.ProxyAddedLatencyMs.P999) / 2},
	} {
		exact := exactQuantile(all, q.q)
		if !withinBound(q.got, exact) {
			t.Errorf("shop proxy added %s = %v ms, exact over both pods' requests %v ms", q.name, q.got, exact)
		}
		// The test means something: the average of the pods' figures is far off.
		if withinBound(q.avg, exact) {
			t.Errorf("%s: the average of pod percentiles (%v) is as good as merging: pick other distributions", q.name, q.avg)
		}
	}
	if got.Max != api.Millis(all[len(all)-1].Round(time.Microsecond)) {
		t.Errorf("shop max %v, want %v", got.Max, all[len(all)-1])
	}
	// The edge series includes the pod without proxy; the proxy series do not.
	if shop.EdgeMs == nil || shop.AppMs == nil || shop.RequestPathMs == nil || shop.ResponsePathMs == nil {
		t.Errorf("shop series %+v", shop.OverheadStats)
	}
	wantMc := *pa.ProxyCPUMillicores + *pb.ProxyCPUMillicores
	if math.Abs(*shop.ProxyCPUMillicores-wantMc) > 0.002 {
		t.Errorf("shop cpu %v, want %v", *shop.ProxyCPUMillicores, wantMc)
	}
	wantPer1000 := wantMc * 60 / float64(shop.Requests) * 1000
	if math.Abs(*shop.ProxyCPUMsPer1000Requests-wantPer1000) > 0.01 {
		t.Errorf("shop cpu per 1000 %v, want %v", *shop.ProxyCPUMsPer1000Requests, wantPer1000)
	}
	if math.Abs(shop.RPS-(pa.RPS+pb.RPS+pp.RPS)) > 0.002 {
		t.Errorf("shop rps %v", shop.RPS)
	}

	// A namespace of one pod shows that pod's figures: the merge computes as the probe does.
	web := nsByName(r, "web")
	if web.Pods != 1 || *web.ProxyAddedLatencyMs != *pl.ProxyAddedLatencyMs || *web.EdgeMs != *pl.EdgeMs ||
		*web.RequestPathMs != *pl.RequestPathMs || *web.ProxyCPUMillicores != *pl.ProxyCPUMillicores || web.RPS != pl.RPS {
		t.Errorf("web %+v\npod %+v", web.OverheadStats, pl.OverheadStats)
	}
}

func TestReportHealth(t *testing.T) {
	meanOnly := probeSnapshot(t, "istio", "istio-proxy", probestest.Traffic{RPS: 30, ProxyAdded: time.Millisecond, App: time.Millisecond,
		ProxyCPUPerRequest: 100 * time.Microsecond, Ambiguous: 1, Seed: 7}, "1m")
	partly := probeSnapshot(t, "istio", "istio-proxy", probestest.Traffic{RPS: 100, ProxyAdded: time.Millisecond, App: time.Millisecond,
		ProxyCPUPerRequest: 100 * time.Microsecond, Ambiguous: 0.3, Unmatched: 0.01, Seed: 8}, "1m")
	short := probeSnapshot(t, "istio", "istio-proxy", istioTraffic(9), "10m")
	idle := probeSnapshot(t, "istio", "istio-proxy", probestest.Traffic{Seed: 10}, "1m")
	notReady := probeSnapshot(t, "istio", "istio-proxy", istioTraffic(11), "1m")
	bad := probeSnapshot(t, "istio", "istio-proxy", istioTraffic(12), "1m")
	bad.Edge.P90 = bad.Edge.P50 / 2
	unused := probeSnapshot(t, "istio", "istio-proxy", probestest.Traffic{RPS: 10, App: time.Millisecond, NoProxy: true, Seed: 13}, "1m")

	names := []string{"mean-only", "partly", "short", "idle", "not-ready", "bad", "nil-snapshot", "unused"}
	pods := make([]corev1.Pod, len(names))
	for i, n := range names {
		pods[i] = probestest.Pod("h", n, "istio-proxy", true)
	}
	pods[4].Status.InitContainerStatuses[0].Ready = false
	snaps := []PodSnapshot{
		{Pod: &pods[0], Probed: true, Snapshot: meanOnly},
		{Pod: &pods[1], Probed: true, Snapshot: partly},
		{Pod: &pods[2], Probed: true, Snapshot: short},
		{Pod: &pods[3], Probed: true, Snapshot: idle},
		{Pod: &pods[4], Probed: true, Snapshot: notReady},
		{Pod: &pods[5], Probed: true, Snapshot: bad},
		{Pod: &pods[6], Probed: true},
		{Pod: &pods[7], Probed: true, Snapshot: unused},
		{Pod: &pods[0], Probed: true, Snapshot: meanOnly}, // twice: once in the report
	}
	r := Report("overhead-2", t0, now, snaps)
	if err := r.Validate(); err != nil {
		t.Fatalf("invalid report: %v", err)
	}
	if len(r.Pods) != len(names) {
		t.Fatalf("%d pods", len(r.Pods))
	}
	for _, c := range []struct {
		pod    string
		status smps.ProbeStatus
		msg    string
		note   string
	}{
		{"mean-only", smps.ProbeDegraded, "only the mean proxy-added time is known, 1.", ""},
		{"partly", smps.ProbeOK, "", "percentiles cover"},
		{"short", smps.ProbeDegraded, "covers 1m0s of the 10m window", ""},
		{"idle", smps.ProbeOK, "", "no traffic in the window"},
		{"not-ready", smps.ProbeDegraded, "container mesh-probe is not ready", ""},
		{"bad", smps.ProbeFailed, "bad answer: edge: percentiles negative or out of order", ""},
		{"nil-snapshot", smps.ProbeFailed, "bad answer: no snapshot", ""},
		{"unused", smps.ProbeOK, "", "no request went through the proxy (istio-proxy) since the probe started: overhead none"},
	} {
		p := podByName(r, c.pod)
		if p.Probe.Status != c.status || !strings.Contains(p.Probe.Message, c.msg) || !strings.Contains(p.Note, c.note) {
			t.Errorf("%s: %+v / note %q\nwant %s %q, note %q", c.pod, p.Probe, p.Note, c.status, c.msg, c.note)
		}
	}
	mo := podByName(r, "mean-only")
	if mo.Requests == 0 || mo.ProxyAddedLatencyMs != nil || mo.ProxyCPUMsPer1000Requests == nil || mo.RPS == 0 {
		t.Errorf("mean-only figures %+v", mo.OverheadStats)
	}
	pt := podByName(r, "partly")
	if uint64(pt.Requests) != partly.Measured+partly.Pairing.AmbiguousSettled || pt.Unmatched.Edge != int64(partly.Pairing.UnmatchedEdge) {
		t.Errorf("partly: requests %d unmatched %+v, snapshot %+v", pt.Requests, pt.Unmatched, partly.Pairing)
	}
}

// A probe predating histograms still gets its pod figures, but its namespace has no merged
// percentiles rather than wrong ones.
func TestReportWithoutHistograms(t *testing.T) {
	old := probeSnapshot(t, "istio", "istio-proxy", istioTraffic(20), "1m")
	old.Histograms = nil
	cur := probeSnapshot(t, "istio", "istio-proxy", istioTraffic(21), "1m")
	pods := []corev1.Pod{probestest.Pod("ns", "old-1", "istio-proxy", true), probestest.Pod("ns", "new-1", "istio-proxy", true)}
	r := Report("overhead-3", t0, now, []PodSnapshot{
		{Pod: &pods[0], Probed: true, Snapshot: old}, {Pod: &pods[1], Probed: true, Snapshot: cur},
	})
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Pods[0].ProxyAddedLatencyMs == nil || r.Pods[0].Probe.Status != smps.ProbeOK {
		t.Errorf("old probe's pod: %+v", r.Pods[0])
	}
	ns := r.Namespaces[0]
	if ns.ProxyAddedLatencyMs != nil || ns.EdgeMs != nil || ns.Requests != r.Pods[0].Requests+r.Pods[1].Requests || ns.ProxyCPUMillicores == nil {
		t.Errorf("namespace %+v", ns.OverheadStats)
	}
}

func TestReportEmpty(t *testing.T) {
	r := Report("overhead-4", t0, now, nil)
	if err := r.Validate(); err != nil || len(r.Pods) != 0 || len(r.Namespaces) != 0 {
		t.Errorf("%+v %v", r, err)
	}
}

func TestProxyContainer(t *testing.T) {
	p := probestest.Pod("ns", "a", "istio-proxy", true)
	if got := proxyContainer(&p, nil); got != "istio-proxy" {
		t.Errorf("from the probe's configuration: %q", got)
	}
	p.Spec.InitContainers[0].Env = nil
	if got := proxyContainer(&p, nil); got != "istio-proxy" {
		t.Errorf("from the pod's containers: %q", got)
	}
	custom := &api.Snapshot{CPU: []api.ContainerCPU{{Role: "proxy", Name: "envoy", Millicores: 3}, {Role: "app", Name: "x"}}}
	if got := proxyContainer(&p, custom); got != "envoy" {
		t.Errorf("from the snapshot: %q", got)
	}
	plain := probestest.Pod("ns", "b", "", true)
	if got := proxyContainer(&plain, &api.Snapshot{Mesh: "linkerd"}); got != "linkerd-proxy" {
		t.Errorf("from the mesh: %q", got)
	}
	if got := proxyContainer(&plain, &api.Snapshot{Mesh: "none"}); got != NoProxyContainer {
		t.Errorf("none: %q", got)
	}
}

// MaxSnapshotBytes holds the largest snapshot a probe can serve: every bucket of the five
// histograms filled with the largest counts, the kernel's 1024 cgroups with long paths.
func TestMaxSnapshotBytesHoldsTheLargestSnapshot(t *testing.T) {
	full := histogram.Sparse{Count: 0, MinNs: 0, MaxNs: math.MaxInt64, Overflow: 1}
	for i := range histogram.NumBuckets {
		full.Buckets = append(full.Buckets, [2]uint64{uint64(i), math.MaxUint32})
		full.Count += math.MaxUint32
	}
	full.SumNs = float64(full.Count) * 1e9
	if err := full.Validate(); err != nil {
		t.Fatal(err)
	}
	big := api.Percentiles{Count: full.Count, P50: 12345.678, P90: 23456.789, P99: 34567.891, P999: 45678.912, Max: 9223372036854.775}
	s := api.Snapshot{
		APIVersion: api.APIVersion, Kind: api.KindSnapshot, Window: "10m", Start: t0, End: now, DurationSeconds: 600,
		Mesh: "linkerd", ProxyDetected: true, Status: api.StatusMeanOnly,
		Notes:    []string{"outbound calls are not measured: no proxy outbound port is configured", strings.Repeat("x", 300)},
		Requests: math.MaxUint64, Measured: math.MaxUint64, RPS: 1e12,
		Edge: big, App: big, ProxyAdded: big, RequestPath: big, ResponsePath: big,
		ProxyAddedMean: api.MeanOnly{Count: math.MaxUint64, Mean: 1e6},
		Histograms:     &api.Histograms{ProxyAdded: &full, Edge: &full, App: &full, RequestPath: &full, ResponsePath: &full},
		Pairing:        api.Pairing{UnmatchedEdge: math.MaxUint64, UnmatchedApp: math.MaxUint64, AmbiguousEdge: math.MaxUint64},
		Losses:         api.Losses{RingBufferFull: math.MaxUint64, DecodeErrors: math.MaxUint64, Overload: math.MaxUint64, IdleLate: math.MaxUint64},
	}
	for i := range 1024 {
		id := fmt.Sprintf("%064x", i)
		s.CPU = append(s.CPU, api.ContainerCPU{CgroupID: math.MaxUint64 - uint64(i),
			Cgroup:      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-" + id + ".scope",
			ContainerID: id, Name: "linkerd-proxy", Role: "proxy", Millicores: 123456.78, CPUMsPer1000Requests: 123456.78})
	}
	// Served exactly as the probe serves it, and indented for good measure.
	var rec *httptest.ResponseRecorder
	for _, q := range []string{"&pretty=true", ""} {
		rec = httptest.NewRecorder()
		server.Handler(fixed(s), prometheus.NewRegistry()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/snapshot?window=10m"+q, nil))
		n := rec.Body.Len()
		t.Logf("largest snapshot%s: %d bytes (%.2f MiB)", q, n, float64(n)/(1<<20))
		if rec.Code != 200 || n > MaxSnapshotBytes {
			t.Fatalf("HTTP %d, %d bytes: above MaxSnapshotBytes %d", rec.Code, n, MaxSnapshotBytes)
		}
	}
	var back api.Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if err := checkSnapshot(&back); err != nil {
		t.Fatalf("the largest snapshot does not check out: %v", err)
	}
}

type fixed api.Snapshot

func (f fixed) Snapshot(window.Spec) (api.Snapshot, error) { return api.Snapshot(f), nil }
func (f fixed) Ready() error                               { return nil }

// A sampled snapshot's requests are those the probe followed, during a
// fraction of its window: the report's rate and proxy CPU per 1000
// requests are over that time, for the pod and its namespace, and a note
// says so.
func TestReportSampled(t *testing.T) {
	added := make([]time.Duration, 100)
	for i := range added {
		added[i] = time.Millisecond
	}
	full := valuesSnapshot(t, added, time.Millisecond)
	sampled := valuesSnapshot(t, added, time.Millisecond)
	sampled.Sampling = &api.Sampling{Fraction: 0.25, AboveRPS: 5000}
	pods := []corev1.Pod{probestest.Pod("a", "full-1", "istio-proxy", true), probestest.Pod("b", "sampled-1", "istio-proxy", true)}
	r := Report("overhead-5", t0, now, []PodSnapshot{
		{Pod: &pods[0], Probed: true, Snapshot: full}, {Pod: &pods[1], Probed: true, Snapshot: sampled},
	})
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	f, s := podByName(r, "full-1"), podByName(r, "sampled-1")
	if f == nil || s == nil || f.ProxyCPUMsPer1000Requests == nil || s.ProxyCPUMsPer1000Requests == nil {
		t.Fatalf("pods %+v", r.Pods)
	}
	if s.Requests != f.Requests || math.Abs(s.RPS-4*f.RPS) > 0.01 {
		t.Errorf("sampled pod: %d requests at %v rps, want %d at 4 x %v", s.Requests, s.RPS, f.Requests, f.RPS)
	}
	if got, want := *s.ProxyCPUMsPer1000Requests, *f.ProxyCPUMsPer1000Requests/4; math.Abs(got-want) > 0.01 {
		t.Errorf("sampled proxy CPU per 1000 requests %v, want %v (a quarter of the requests followed)", got, want)
	}
	if !strings.Contains(s.Note, "sampled") || !strings.Contains(s.Note, "25% of the window") {
		t.Errorf("no sampling note: %q", s.Note)
	}
	if ns := nsByName(r, "b"); ns == nil || ns.ProxyCPUMsPer1000Requests == nil || *ns.ProxyCPUMsPer1000Requests != *s.ProxyCPUMsPer1000Requests || ns.RPS != s.RPS {
		t.Errorf("sampled pod's namespace %+v, want its pod's figures", ns)
	}
}
