package recorder

import (
	"encoding/binary"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/api"
	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/probe/pairing"
	"github.com/kubectl-mesh/kubectl-mesh/probe/window"
)

func spec(name string) window.Spec {
	s, ok := window.Lookup(name)
	if !ok {
		panic(name)
	}
	return s
}

// near: within the histogram's bound, plus half a microsecond of rounding
// (snapshots are in milliseconds rounded to the microsecond).
func near(got, want float64) bool {
	return math.Abs(got-want) <= want*histogram.RelativeError+0.0005+1e-9
}

// 1000 requests over 10 s whose proxy time is 1..1000 us, app time 2 ms:
// the snapshot's percentiles, counts, rate and CPU figures are the exact
// ones within the histogram's bound.
func TestSnapshotOfKnownDistribution(t *testing.T) {
	origin := time.Unix(1_700_000_000, 0)
	r := New(origin)
	var counts pairing.Counts
	cpu := map[uint64]time.Duration{}
	for i := 1; i <= 1000; i++ {
		now := origin.Add(time.Duration(i-1) * 10 * time.Millisecond) // 100 per second
		added := time.Duration(i) * time.Microsecond
		app := 2 * time.Millisecond
		res := pairing.Result{
			EdgeDuration: app + added, AppDuration: app, ProxyAdded: added,
			RequestPath: added / 4, ResponsePath: added - added/4, Method: pairing.ByContainment,
		}
		counts.Edge++
		counts.App++
		counts.Paired++
		cpu[7] += 500 * time.Microsecond // 0.5 ms per request: 50 millicores at 100 rps
		r.Record(now, []pairing.Result{res}, Totals{Counts: counts, CPU: cpu})
	}
	s, err := r.Snapshot(origin.Add(10*time.Second), spec("10s"), Context{
		Mesh: "istio", ProxyDetected: true,
		Containers: map[uint64]api.ContainerCPU{7: {Name: "istio-proxy", Role: "proxy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.APIVersion != api.APIVersion || s.Kind != api.KindSnapshot || s.Window != "10s" || s.DurationSeconds != 10 {
		t.Errorf("header %+v", s)
	}
	if s.Requests != 1000 || s.Measured != 1000 || s.RPS != 100 || s.Status != api.StatusOK {
		t.Errorf("requests %d measured %d rps %v status %q", s.Requests, s.Measured, s.RPS, s.Status)
	}
	for q, want := range map[string][2]float64{
		"p50": {s.ProxyAdded.P50, 0.5}, "p90": {s.ProxyAdded.P90, 0.9}, "p99": {s.ProxyAdded.P99, 0.99},
		"p999": {s.ProxyAdded.P999, 0.999},
	} {
		if !near(want[0], want[1]) {
			t.Errorf("proxy added %s = %v ms, want %v ms", q, want[0], want[1])
		}
	}
	// The exact mean is 500.5 us, reported rounded to the microsecond.
	if s.ProxyAdded.Max != 1 || s.ProxyAdded.Mean != 0.501 || s.ProxyAddedMean.Mean != 0.501 || s.ProxyAddedMean.Count != 1000 {
		t.Errorf("max %v mean %v / %+v", s.ProxyAdded.Max, s.ProxyAdded.Mean, s.ProxyAddedMean)
	}
	if !near(s.Edge.P50, 2.5) || !near(s.App.P99, 2) || !near(s.RequestPath.Max, 0.25) || !near(s.ResponsePath.Max, 0.75) {
		t.Errorf("edge %+v app %+v request %+v response %+v", s.Edge, s.App, s.RequestPath, s.ResponsePath)
	}
	if len(s.CPU) != 1 {
		t.Fatalf("cpu %+v", s.CPU)
	}
	c := s.CPU[0]
	if c.CgroupID != 7 || c.Name != "istio-proxy" || math.Abs(c.Millicores-50) > 1e-9 || math.Abs(c.CPUMsPer1000Requests-500) > 1e-9 {
		t.Errorf("cpu %+v, want 50 millicores and 500 ms per 1000 requests", c)
	}
}

// The snapshot carries the histograms behind its percentiles: imported
// back, they give the same figures, so a reader merging pods computes what
// the probe would have.
func TestSnapshotCarriesHistograms(t *testing.T) {
	origin := time.Unix(1_700_000_000, 0)
	r := New(origin)
	var counts pairing.Counts
	for i := 1; i <= 500; i++ {
		added := time.Duration(i*7) * time.Microsecond
		res := pairing.Result{EdgeDuration: 3*time.Millisecond + added, AppDuration: 3 * time.Millisecond,
			ProxyAdded: added, RequestPath: added / 3, ResponsePath: added - added/3, Method: pairing.ByContainment}
		counts.Edge++
		counts.Paired++
		r.Record(origin.Add(time.Duration(i)*10*time.Millisecond), []pairing.Result{res}, Totals{Counts: counts})
	}
	s, err := r.Snapshot(origin.Add(10*time.Second), spec("10s"), Context{ProxyDetected: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Histograms == nil {
		t.Fatal("no histograms")
	}
	for _, c := range []struct {
		name string
		pct  api.Percentiles
		sp   *histogram.Sparse
	}{
		{"proxyAdded", s.ProxyAdded, s.Histograms.ProxyAdded}, {"edge", s.Edge, s.Histograms.Edge},
		{"app", s.App, s.Histograms.App}, {"requestPath", s.RequestPath, s.Histograms.RequestPath},
		{"responsePath", s.ResponsePath, s.Histograms.ResponsePath},
	} {
		if c.sp == nil {
			t.Fatalf("%s: histogram missing", c.name)
		}
		h, err := histogram.FromSparse(*c.sp)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := api.PercentilesOf(h); got != c.pct {
			t.Errorf("%s: from the histogram %+v, in the snapshot %+v", c.name, got, c.pct)
		}
	}
	n := 0
	s.Histograms.Each(func(string, *histogram.Sparse) { n++ })
	if n != 5 {
		t.Errorf("Each visited %d histograms", n)
	}
	// An idle window carries none.
	s, _ = New(origin).Snapshot(origin.Add(time.Minute), spec("1m"), Context{})
	if s.Histograms == nil || s.Histograms.ProxyAdded != nil || s.Histograms.Edge != nil {
		t.Errorf("idle window histograms %+v", s.Histograms)
	}
}

func TestStatus(t *testing.T) {
	origin := time.Unix(0, 0)
	later := origin.Add(time.Minute)
	if s, _ := New(origin).Snapshot(later, spec("1m"), Context{ProxyDetected: true}); s.Status != api.StatusNoTraffic {
		t.Errorf("empty: %q", s.Status)
	}
	r := New(origin)
	// No proxy: zero added time for every request.
	r.Record(origin, []pairing.Result{{EdgeDuration: time.Millisecond, AppDuration: time.Millisecond, Method: pairing.NoProxy}},
		Totals{Counts: pairing.Counts{Edge: 1, NoProxy: 1}})
	s, _ := r.Snapshot(later, spec("1m"), Context{})
	if s.Status != api.StatusNoProxy || s.ProxyAdded.P99 != 0 || s.ProxyAdded.Count != 1 || s.Edge.P50 != 1 {
		t.Errorf("no proxy: %+v", s)
	}
	// Only ambiguous requests, settled in total: mean only.
	r2 := New(origin)
	r2.Record(origin, nil, Totals{Counts: pairing.Counts{Edge: 4, App: 4, AmbiguousEdge: 4, AmbiguousApp: 4,
		AmbiguousSettled: 4, AmbiguousProxyAdded: 2 * time.Millisecond}})
	s, _ = r2.Snapshot(later, spec("1m"), Context{ProxyDetected: true})
	if s.Status != api.StatusMeanOnly || s.ProxyAddedMean.Mean != 0.5 || s.Pairing.AmbiguousEdge != 4 || s.Measured != 0 {
		t.Errorf("mean only: %+v", s)
	}
	if len(s.Notes) != 1 || !strings.HasPrefix(s.Notes[0], "100% of requests overlapped") {
		t.Errorf("notes %q", s.Notes)
	}
}

// Totals are running totals: only their growth lands in each slot.
func TestTotalsAreDifferenced(t *testing.T) {
	origin := time.Unix(0, 0)
	r := New(origin)
	r.Record(origin, nil, Totals{Counts: pairing.Counts{Edge: 10, UnmatchedEdge: 2}, Losses: api.Losses{RingBufferFull: 1},
		CPU: map[uint64]time.Duration{1: time.Second}})
	r.Record(origin.Add(5*time.Second), nil, Totals{Counts: pairing.Counts{Edge: 15, UnmatchedEdge: 3},
		Losses: api.Losses{RingBufferFull: 1}})
	r.Record(origin.Add(11*time.Second), nil, Totals{Counts: pairing.Counts{Edge: 16, UnmatchedEdge: 3},
		CPU: map[uint64]time.Duration{1: 1500 * time.Millisecond}, Losses: api.Losses{RingBufferFull: 1, DecodeErrors: 2}})
	s, _ := r.Snapshot(origin.Add(12*time.Second), spec("10s"), Context{})
	// Window [2s, 12s): the record at 5s (5 requests) and at 11s (1).
	if s.Requests != 6 || s.Pairing.UnmatchedEdge != 1 || s.Losses.DecodeErrors != 2 || s.Losses.RingBufferFull != 0 {
		t.Errorf("window [2s,12s): %+v", s)
	}
	if len(s.CPU) != 1 || math.Abs(s.CPU[0].Millicores-50) > 1e-9 {
		t.Errorf("cpu %+v, want 500ms over 10s = 50 millicores", s.CPU)
	}
}

// addCounts and subCounts name every field of pairing.Counts: a field
// added there must be added here.
func TestCountsArithmeticCoversEveryField(t *testing.T) {
	var one pairing.Counts
	v := reflect.ValueOf(&one).Elem()
	num := func(f reflect.Value) int64 {
		if f.CanInt() {
			return f.Int()
		}
		return int64(f.Uint())
	}
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.CanInt() {
			f.SetInt(1)
		} else {
			f.SetUint(1)
		}
	}
	two := addCounts(one, one)
	back := subCounts(two, one)
	tv, bv := reflect.ValueOf(two), reflect.ValueOf(back)
	for i := 0; i < v.NumField(); i++ {
		if num(tv.Field(i)) != 2 || num(bv.Field(i)) != 1 {
			t.Errorf("field %s not handled", v.Type().Field(i).Name)
		}
	}
	var l api.Losses
	lv := reflect.ValueOf(&l).Elem()
	for i := 0; i < lv.NumField(); i++ {
		lv.Field(i).SetUint(1)
	}
	if got := subLosses(addLosses(l, l), l); got != l {
		t.Errorf("losses arithmetic %+v", got)
	}
}

// BenchmarkPerEvent is the userspace cost of one request: decoding its edge
// and app exchange records, pairing them, and recording the result (the
// agent resolves every 100 ms; here every 256 requests).
func BenchmarkPerEvent(b *testing.B) {
	edge := exchange.Event{
		Leg: exchange.LegEdge, Direction: exchange.Inbound,
		Client: netip.MustParseAddrPort("10.0.0.1:40000"), Server: netip.MustParseAddrPort("10.0.0.2:8080"),
		RequestBytes: 80, ResponseBytes: 200, Requests: 1, Responses: 1,
		Head: []byte("GET /item/1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: fortio\r\n\r\n"),
	}
	app := edge
	app.Leg = exchange.LegApp
	app.Client = netip.MustParseAddrPort("127.0.0.6:50000")
	app.Server = netip.MustParseAddrPort("10.0.0.2:8080")
	pr := pairing.New(pairing.Config{Horizon: time.Second})
	rec := New(time.Now())
	// Records as the kernel writes them; only the timestamps change per
	// request (offsets 0-31 of struct exchange_event), patched in place
	// so the loop measures decoding, not encoding.
	rawEdge, rawApp := exchange.Encode(&edge), exchange.Encode(&app)
	stamp := func(raw []byte, ts ...uint64) {
		for i, v := range ts {
			binary.NativeEndian.PutUint64(raw[8*i:], v)
		}
	}
	t0 := uint64(1_000_000_000)
	var ev exchange.Event // reused, as exchange.Reader does
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		// Requests 500 us apart on one connection, 200 us of proxy time.
		start := t0 + i*500_000
		stamp(rawEdge, start, start+1_000, start+300_000, start+301_000)
		stamp(rawApp, start+100_000, start+101_000, start+200_000, start+201_000)
		for _, raw := range [][]byte{rawEdge, rawApp} {
			if err := exchange.DecodeInto(&ev, raw); err != nil {
				b.Fatal(err)
			}
			pr.Add(ev)
		}
		if i%256 == 255 {
			results := pr.Resolve(start + uint64(time.Second))
			rec.Record(time.Now(), results, Totals{Counts: pr.Counts()})
		}
		i++
	}
}

// BenchmarkAgentCadence is the per-request userspace cost at the agent's
// real cadence: 2000 requests per second over 8 keep-alive connections
// (their exchanges overlap in time), resolved every 100 ms with a 1 s
// horizon (the agent's defaults), so about 5000 exchanges wait in the
// pairing engine at any time.
func BenchmarkAgentCadence(b *testing.B) {
	const (
		rate     = 2000
		conns    = 8
		interval = 100 * time.Millisecond // the agent's ResolveInterval
		horizon  = time.Second            // and Horizon
	)
	edge := exchange.Event{
		Leg: exchange.LegEdge, Direction: exchange.Inbound,
		Server:       netip.MustParseAddrPort("10.0.0.2:8080"),
		RequestBytes: 80, ResponseBytes: 200, Requests: 1, Responses: 1,
		Head: []byte("GET /item/1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: fortio\r\n\r\n"),
	}
	app := edge
	app.Leg = exchange.LegApp
	raws := make([][2][]byte, conns)
	for c := range raws {
		edge.Client = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+c))
		app.Client = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.6"), uint16(50000+c))
		raws[c] = [2][]byte{exchange.Encode(&edge), exchange.Encode(&app)}
	}
	stamp := func(raw []byte, ts ...uint64) {
		for i, v := range ts {
			binary.NativeEndian.PutUint64(raw[8*i:], v)
		}
	}
	pr := pairing.New(pairing.Config{Horizon: horizon})
	rec := New(time.Now())
	gap := uint64(time.Second / rate)
	perTick := uint64(interval) / gap
	now := uint64(10 * time.Second)
	var ev exchange.Event // reused, as exchange.Reader does
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		start := now + i*gap
		c := i % conns
		// 1.5 ms in the app, 300 us in the proxy: requests of different
		// connections overlap.
		stamp(raws[c][0], start, start+1_000, start+1_800_000, start+1_801_000)
		stamp(raws[c][1], start+150_000, start+151_000, start+1_650_000, start+1_651_000)
		for _, raw := range raws[c] {
			if err := exchange.DecodeInto(&ev, raw); err != nil {
				b.Fatal(err)
			}
			pr.Add(ev)
		}
		if i%perTick == perTick-1 {
			results := pr.Resolve(start)
			rec.Record(time.Now(), results, Totals{Counts: pr.Counts()})
		}
		i++
	}
	e, a := pr.Pending()
	b.ReportMetric(float64(e+a), "pending")
}

// The snapshot says up to when everything was decided: the latest cutoff
// recorded in its window's complete slots, not one recorded later.
func TestSnapshotDecidedThrough(t *testing.T) {
	origin := time.Unix(0, 0)
	r := New(origin)
	if s, _ := r.Snapshot(origin.Add(time.Second), spec("10s"), Context{}); s.DecidedThrough != nil {
		t.Errorf("nothing recorded yet, decidedThrough %v", s.DecidedThrough)
	}
	r.Record(origin.Add(3*time.Second), nil, Totals{DecidedThrough: origin.Add(2 * time.Second)})
	r.Record(origin.Add(4*time.Second), nil, Totals{DecidedThrough: origin.Add(3 * time.Second)})
	r.Record(origin.Add(5*time.Second), nil, Totals{}) // a record that knows no cutoff keeps the last one
	r.Record(origin.Add(9*time.Second), nil, Totals{DecidedThrough: origin.Add(8 * time.Second)})
	s, _ := r.Snapshot(origin.Add(9500*time.Millisecond), spec("10s"), Context{})
	// Complete slots end at 9s: the cutoff recorded at 9s is in the open slot.
	if want := origin.Add(3 * time.Second).UTC(); s.DecidedThrough == nil || !s.DecidedThrough.Equal(want) {
		t.Errorf("decidedThrough %v, want %v", s.DecidedThrough, want)
	}
	s, _ = r.Snapshot(origin.Add(10*time.Second), spec("10s"), Context{})
	if want := origin.Add(8 * time.Second).UTC(); s.DecidedThrough == nil || !s.DecidedThrough.Equal(want) {
		t.Errorf("decidedThrough %v, want %v", s.DecidedThrough, want)
	}
}

// Outbound results and counts go to the snapshot's outbound section, apart
// from the inbound figures, and the section exists only when the probe
// measures outbound calls.
func TestOutboundKeptApart(t *testing.T) {
	origin := time.Unix(1_700_000_000, 0)
	r := New(origin)
	var in, out pairing.Counts
	for i := 1; i <= 100; i++ {
		now := origin.Add(time.Duration(i-1) * 50 * time.Millisecond)
		inbound := pairing.Result{Edge: pairing.Exchange{Direction: exchange.Inbound}, Method: pairing.ByContainment,
			EdgeDuration: 3 * time.Millisecond, AppDuration: 2 * time.Millisecond, ProxyAdded: time.Millisecond,
			RequestPath: 400 * time.Microsecond, ResponsePath: 600 * time.Microsecond}
		call := pairing.Result{Edge: pairing.Exchange{Direction: exchange.Outbound}, Method: pairing.ByContainment,
			EdgeDuration: 5 * time.Millisecond, AppDuration: 5*time.Millisecond + 300*time.Microsecond, ProxyAdded: 300 * time.Microsecond,
			RequestPath: 100 * time.Microsecond, ResponsePath: 200 * time.Microsecond}
		in.Edge, in.App, in.Paired = in.Edge+1, in.App+1, in.Paired+1
		out.Edge, out.App, out.Paired = out.Edge+1, out.App+1, out.Paired+1
		if i%10 == 0 {
			out.App++ // a call the proxy answered itself
			out.UnmatchedApp++
		}
		r.Record(now, []pairing.Result{inbound, call}, Totals{Counts: in, OutboundCounts: out})
	}
	end := origin.Add(10 * time.Second)
	s, err := r.Snapshot(end, spec("10s"), Context{Mesh: "istio", ProxyDetected: true, Outbound: true, OutboundProxyDetected: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 100 || s.Measured != 100 || !near(s.ProxyAdded.P50, 1) || !near(s.Edge.P50, 3) {
		t.Errorf("inbound %+v", s)
	}
	o := s.Outbound
	if o == nil {
		t.Fatal("no outbound section")
	}
	if o.Requests != 110 || o.Measured != 100 || o.Pairing.UnmatchedApp != 10 || o.Status != api.StatusOK ||
		!near(o.ProxyAdded.P50, 0.3) || !near(o.Edge.P50, 5) || !near(o.App.P50, 5.3) || !near(o.RequestPath.P50, 0.1) {
		t.Errorf("outbound %+v", o)
	}
	if o.Histograms == nil || o.Histograms.ProxyAdded == nil || o.Histograms.ProxyAdded.Count != 100 {
		t.Errorf("outbound histograms %+v", o.Histograms)
	}
	s, err = r.Snapshot(end, spec("10s"), Context{Mesh: "istio", ProxyDetected: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Outbound != nil {
		t.Errorf("outbound section without outbound measurement: %+v", s.Outbound)
	}
}

// Sampled: over 10 s the gate was open a quarter of each second, during
// which 400 requests were followed (160 rps while followed). The snapshot
// says so, and estimates the rate and the CPU per 1000 requests over the
// time followed, while the millicores stay the measured ones.
func TestSnapshotSampled(t *testing.T) {
	origin := time.Unix(1_700_000_000, 0)
	r := New(origin)
	var counts pairing.Counts
	cpu := map[uint64]time.Duration{}
	var notOpen time.Duration
	for sec := range 10 {
		for i := range 40 {
			now := origin.Add(time.Duration(sec)*time.Second + time.Duration(i)*250*time.Millisecond/40)
			counts.Edge++
			counts.App++
			counts.Paired++
			r.Record(now, []pairing.Result{{EdgeDuration: 3 * time.Millisecond, AppDuration: 2 * time.Millisecond,
				ProxyAdded: time.Millisecond, Method: pairing.ByContainment}}, Totals{Counts: counts, NotOpen: notOpen})
		}
		notOpen += 750 * time.Millisecond
		cpu[7] += 800 * time.Millisecond // 160 rps at 5 ms each, all second long
		r.Record(origin.Add(time.Duration(sec)*time.Second+999*time.Millisecond), nil,
			Totals{Counts: counts, CPU: cpu, NotOpen: notOpen})
	}
	s, err := r.Snapshot(origin.Add(10*time.Second), spec("10s"), Context{
		Mesh: "istio", ProxyDetected: true, SampleAboveRPS: 400,
		Containers: map[uint64]api.ContainerCPU{7: {Name: "istio-proxy", Role: "proxy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Sampling == nil || s.Sampling.Fraction != 0.25 || s.Sampling.AboveRPS != 400 {
		t.Fatalf("sampling %+v, want a quarter above 400 rps", s.Sampling)
	}
	if s.Requests != 400 || s.RPS != 160 {
		t.Errorf("%d requests at %v rps, want 400 followed, 160 rps (over the 2.5 s followed)", s.Requests, s.RPS)
	}
	if len(s.CPU) != 1 || s.CPU[0].Millicores != 800 || s.CPU[0].CPUMsPer1000Requests != 5000 {
		t.Errorf("cpu %+v, want 800 millicores, 5000 ms per 1000 requests (of the 1600 estimated)", s.CPU)
	}
	if !strings.Contains(strings.Join(s.Notes, "\n"), "25% of this window") {
		t.Errorf("notes %q do not say the window was sampled", s.Notes)
	}
}

// Sampled in part of the window: 6 s at 10 rps, the gate open all along,
// then a burst of 4 s at 4000 rps with the gate open a quarter of each
// second (1000 followed a second, standing for 4000 each: the sampler's
// estimate). The rate is the window's estimated requests over its length,
// 1606 rps; over the time the gate was open it would be 580, the quiet
// seconds counting as fully as the burst's open quarters.
func TestSnapshotSampledBurst(t *testing.T) {
	origin := time.Unix(1_700_000_000, 0)
	r := New(origin)
	var tot Totals
	tot.CPU = map[uint64]time.Duration{}
	for sec := range 10 {
		followed, estimated := 10, 10.0
		if sec >= 6 {
			followed, estimated = 1000, 4000
			tot.NotOpen += 750 * time.Millisecond
			tot.CPU[7] += 500 * time.Millisecond
		}
		tot.Counts.Edge += uint64(followed)
		tot.Followed += uint64(followed)
		tot.Estimated += estimated
		r.Record(origin.Add(time.Duration(sec)*time.Second+999*time.Millisecond), nil, tot)
	}
	s, err := r.Snapshot(origin.Add(10*time.Second), spec("10s"), Context{
		ProxyDetected: true, SampleAboveRPS: 1000,
		Containers: map[uint64]api.ContainerCPU{7: {Name: "istio-proxy", Role: "proxy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Sampling == nil || s.Sampling.Fraction != 0.253 {
		t.Errorf("sampling %+v, want 4060 of 16060 requests followed (0.253)", s.Sampling)
	}
	if s.Requests != 4060 || math.Abs(s.RPS-1606) > 1 {
		t.Errorf("%d requests at %v rps, want 4060 followed, 1606 rps estimated", s.Requests, s.RPS)
	}
	if len(s.CPU) != 1 || math.Abs(s.CPU[0].CPUMsPer1000Requests-124.53) > 0.1 {
		t.Errorf("cpu %+v, want 2000 ms over 16060 requests: 124.53 ms per 1000", s.CPU)
	}
}
