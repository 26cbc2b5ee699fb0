package histogram

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	if q >= 1 {
		return sorted[len(sorted)-1]
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

var quantiles = []float64{0.5, 0.9, 0.99, 0.999, 1}

// checkAgainst records values and compares every quantile with the exact
// one: within RelativeError (plus rounding of a nanosecond).
func checkAgainst(t *testing.T, name string, values []time.Duration) {
	t.Helper()
	var h Histogram
	for _, v := range values {
		h.Record(v)
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	for _, q := range quantiles {
		got, want := h.Quantile(q), exactQuantile(sorted, q)
		if err := math.Abs(float64(got - want)); err > float64(want)*RelativeError+1 {
			t.Errorf("%s: q%v = %v, exact %v: error %.3f%% > %.3f%%", name, q, got, want,
				100*err/float64(want), 100*RelativeError)
		}
	}
	if h.Count() != uint64(len(values)) || h.Max() != sorted[len(sorted)-1] || h.Min() != sorted[0] {
		t.Errorf("%s: count %d max %v min %v", name, h.Count(), h.Max(), h.Min())
	}
}

func TestBucketsTileTheRange(t *testing.T) {
	var next uint64
	for i := 0; i < NumBuckets; i++ {
		lo, w := bounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, next)
		}
		if index(lo) != i || index(lo+w-1) != i {
			t.Fatalf("bucket %d [%d,+%d) does not map back", i, lo, w)
		}
		if lo >= subCount && float64(w)/float64(lo) > 2*RelativeError+1e-12 {
			t.Fatalf("bucket %d too wide: %d at %d", i, w, lo)
		}
		next = lo + w
	}
	if next != uint64(MaxTrackable)+1 {
		t.Fatalf("buckets end at %d, want %d", next, uint64(MaxTrackable)+1)
	}
}

func TestUniformMicroseconds(t *testing.T) {
	// Every microsecond from 1 us to 100 ms exactly once.
	var vals []time.Duration
	for us := 1; us <= 100_000; us++ {
		vals = append(vals, time.Duration(us)*time.Microsecond)
	}
	checkAgainst(t, "uniform 1us..100ms", vals)
	var h Histogram
	for _, v := range vals {
		h.Record(v)
	}
	// Known answers: p50 = 50 ms, p99.9 = 99.9 ms, within the bound.
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.999: 99_900 * time.Microsecond} {
		got := h.Quantile(q)
		if d := math.Abs(float64(got - want)); d > float64(want)*RelativeError {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if h.Mean() != 50_000_500*time.Nanosecond {
		t.Errorf("mean %v, want 50.0005ms", h.Mean())
	}
}

func TestSmallValuesExact(t *testing.T) { // below 256 ns every value has its own bucket
	var h Histogram
	for v := 0; v < 100; v++ {
		h.Record(time.Duration(v))
	}
	if got := h.Quantile(0.5); got != 49 {
		t.Errorf("p50 of 0..99 ns = %v, want 49ns", got)
	}
	if got := h.Quantile(0.9); got != 89 {
		t.Errorf("p90 of 0..99 ns = %v, want 89ns", got)
	}
}

func TestDistributions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	exp := make([]time.Duration, 200_000)
	for i := range exp {
		exp[i] = time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond))
	}
	checkAgainst(t, "exponential mean 2ms", exp)

	logn := make([]time.Duration, 200_000)
	for i := range logn {
		logn[i] = time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(300*time.Microsecond))
	}
	checkAgainst(t, "lognormal", logn)

	// Bimodal: 99% fast, 1% at a second: p99.9 sits in the slow mode.
	bi := make([]time.Duration, 100_000)
	for i := range bi {
		bi[i] = 150*time.Microsecond + time.Duration(rng.IntN(1000))
		if i%100 == 0 {
			bi[i] = time.Second + time.Duration(rng.IntN(1_000_000))
		}
	}
	checkAgainst(t, "bimodal", bi)

	// Up to a minute.
	long := make([]time.Duration, 10_000)
	for i := range long {
		long[i] = time.Duration(rng.Int64N(int64(60 * time.Second)))
	}
	checkAgainst(t, "uniform to 60s", long)
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	for i := 0; i < 50_000; i++ {
		v := time.Duration(rng.Int64N(int64(time.Second)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{}) // merging an empty one changes nothing
	for _, q := range quantiles {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v: merged %v, direct %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() || m.Sum() != all.Sum() {
		t.Errorf("merged %d/%v/%v/%v, direct %d/%v/%v/%v", m.Count(), m.Min(), m.Max(), m.Sum(),
			all.Count(), all.Min(), all.Max(), all.Sum())
	}
	m.Reset()
	if m.Count() != 0 || m.Quantile(0.5) != 0 || m.Max() != 0 {
		t.Error("reset histogram not empty")
	}
}

func TestOutOfRange(t *testing.T) {
	var h Histogram
	h.Record(-5)
	h.Record(2 * time.Minute)
	if h.Underflow != 1 || h.Overflow != 1 || h.Max() != 2*time.Minute || h.Min() != -5 {
		t.Errorf("underflow %d overflow %d max %v min %v", h.Underflow, h.Overflow, h.Max(), h.Min())
	}
	if h.Quantile(1) != 2*time.Minute {
		t.Errorf("max quantile %v", h.Quantile(1))
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram")
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xfffff) * 97)
	}
}
