package histogram

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameHistogram compares everything a Histogram exposes, bucket by bucket.
func sameHistogram(t *testing.T, name string, got, want *Histogram) {
	t.Helper()
	if got.Count() != want.Count() || got.Min() != want.Min() || got.Max() != want.Max() ||
		got.Sum() != want.Sum() || got.Mean() != want.Mean() ||
		got.Underflow != want.Underflow || got.Overflow != want.Overflow {
		t.Fatalf("%s: got count %d min %v max %v sum %v under %d over %d, want %d %v %v %v %d %d", name,
			got.Count(), got.Min(), got.Max(), got.Sum(), got.Underflow, got.Overflow,
			want.Count(), want.Min(), want.Max(), want.Sum(), want.Underflow, want.Overflow)
	}
	for i := 0; i < NumBuckets && want.counts != nil; i++ {
		if got.counts[i] != want.counts[i] {
			t.Fatalf("%s: bucket %d holds %d, want %d", name, i, got.counts[i], want.counts[i])
		}
	}
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		if got.Quantile(q) != want.Quantile(q) {
			t.Fatalf("%s: q%v = %v, want %v", name, q, got.Quantile(q), want.Quantile(q))
		}
	}
}

// roundTrip goes through Sparse, JSON and FromSparse.
func roundTrip(t *testing.T, h *Histogram) *Histogram {
	t.Helper()
	b, err := json.Marshal(h.Sparse())
	if err != nil {
		t.Fatal(err)
	}
	var s Sparse
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	back, err := FromSparse(s)
	if err != nil {
		t.Fatalf("FromSparse of an exported histogram: %v\n%s", err, b)
	}
	return back
}

func TestSparseRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := map[string][]time.Duration{
		"empty":        nil,
		"one value":    {1234567},
		"zero":         {0, 0, 0},
		"small exact":  {1, 2, 3, 255, 256, 257},
		"negative":     {-5, -1, 10},
		"all negative": {-5, -7},
		"overflow":     {time.Second, 2 * time.Minute, 3 * time.Minute},
		"all overflow": {2 * time.Minute, 5 * time.Minute},
		"both ends":    {-3, 5 * time.Millisecond, 10 * time.Minute},
		"max int":      {math.MaxInt64, math.MinInt64 + 1},
	}
	logn := make([]time.Duration, 100_000)
	for i := range logn {
		logn[i] = time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(300*time.Microsecond))
	}
	cases["lognormal"] = logn
	for name, vals := range cases {
		var h Histogram
		for _, v := range vals {
			h.Record(v)
		}
		sameHistogram(t, name, roundTrip(t, &h), &h)
	}
}

// A histogram that was reset still exports as empty.
func TestSparseAfterReset(t *testing.T) {
	var h Histogram
	h.Record(time.Millisecond)
	h.Reset()
	s := h.Sparse()
	if s.Count != 0 || len(s.Buckets) != 0 {
		t.Fatalf("reset histogram exports %+v", s)
	}
	if _, err := FromSparse(s); err != nil {
		t.Fatal(err)
	}
}

// Merging imported histograms is merging the originals: what the plugin
// does to aggregate a namespace.
func TestSparseMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var all Histogram
	var merged Histogram
	for pod := 0; pod < 20; pod++ {
		var h Histogram
		scale := float64(time.Duration(100+pod*50) * time.Microsecond)
		for i := 0; i < 1000+pod*100; i++ {
			v := time.Duration(rng.ExpFloat64() * scale)
			h.Record(v)
			all.Record(v)
		}
		merged.Merge(roundTrip(t, &h))
	}
	if merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Fatalf("merged %d/%v/%v, direct %d/%v/%v", merged.Count(), merged.Min(), merged.Max(), all.Count(), all.Min(), all.Max())
	}
	for _, q := range quantiles {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v: merged %v, direct %v", q, merged.Quantile(q), all.Quantile(q))
		}
	}
	// The sums differ only by float64 rounding of the order of addition.
	if d := math.Abs(float64(merged.Sum() - all.Sum())); d > 1e-9*float64(all.Sum()) {
		t.Errorf("sum %v, direct %v", merged.Sum(), all.Sum())
	}
}

func TestFromSparseRejects(t *testing.T) {
	valid := func() Sparse {
		var h Histogram
		for _, v := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
			h.Record(v)
		}
		return h.Sparse()
	}
	if _, err := FromSparse(valid()); err != nil {
		t.Fatalf("valid: %v", err)
	}
	msB := uint64(index(uint64(time.Millisecond)))
	for name, c := range map[string]struct {
		edit func(*Sparse)
		want string
	}{
		"index out of range": {func(s *Sparse) { s.Buckets[2][0] = NumBuckets }, "out of range"},
		"huge index":         {func(s *Sparse) { s.Buckets[2][0] = math.MaxUint64 }, "out of range"},
		"unsorted":           {func(s *Sparse) { s.Buckets[0], s.Buckets[1] = s.Buckets[1], s.Buckets[0] }, "must increase"},
		"duplicate":          {func(s *Sparse) { s.Buckets[1][0] = s.Buckets[0][0] }, "must increase"},
		"zero count":         {func(s *Sparse) { s.Buckets[1][1] = 0; s.Count-- }, "out of range"},
		"count above uint32": {func(s *Sparse) { s.Buckets[1][1] = 1 << 32; s.Count += 1<<32 - 1 }, "out of range"},
		"count mismatch":     {func(s *Sparse) { s.Count = 4 }, "buckets hold 3"},
		"no buckets":         {func(s *Sparse) { s.Buckets = nil }, "no buckets"},
		"empty with data":    {func(s *Sparse) { s.Buckets, s.Count = nil, 0 }, "empty histogram"},
		"min above max":      {func(s *Sparse) { s.MinNs, s.MaxNs = s.MaxNs, s.MinNs }, "above max"},
		"min not in first":   {func(s *Sparse) { s.MinNs = int64(2 * time.Millisecond) }, "first bucket"},
		"max not in last":    {func(s *Sparse) { s.MaxNs = int64(time.Second) }, "last bucket"},
		"underflow no neg":   {func(s *Sparse) { s.Underflow = 1 }, "not negative"},
		"overflow in range":  {func(s *Sparse) { s.Overflow = 1 }, "in range"},
		"sum NaN":            {func(s *Sparse) { s.SumNs = math.NaN() }, "not finite"},
		"sum Inf":            {func(s *Sparse) { s.SumNs = math.Inf(1) }, "not finite"},
		"mean below min":     {func(s *Sparse) { s.SumNs = 0 }, "outside"},
		"mean above max":     {func(s *Sparse) { s.SumNs = 1e12 }, "outside"},
		"single min max": {func(s *Sparse) {
			*s = Sparse{Buckets: [][2]uint64{{msB, 1}}, Count: 1, SumNs: 1e6, MinNs: 1e6, MaxNs: 1e6 + 1}
		}, "differ"},
		"negative min without bucket 0": {func(s *Sparse) { s.MinNs = -1; s.Underflow = 1 }, "first bucket"},
		"underflow above bucket 0": {func(s *Sparse) {
			*s = Sparse{Buckets: [][2]uint64{{0, 1}, {msB, 1}}, Count: 2, SumNs: 1e6 - 1, MinNs: -1, MaxNs: 1e6, Underflow: 2}
		}, "underflow 2"},
		"all negative, underflow short": {func(s *Sparse) {
			*s = Sparse{Buckets: [][2]uint64{{0, 2}}, Count: 2, SumNs: -3, MinNs: -2, MaxNs: -1, Underflow: 1}
		}, "every value is negative"},
		"overflow above last bucket": {func(s *Sparse) {
			*s = Sparse{Buckets: [][2]uint64{{msB, 1}, {NumBuckets - 1, 1}}, Count: 2, SumNs: 1e11, MinNs: 1e6, MaxNs: 1e11, Overflow: 2}
		}, "overflow 2"},
	} {
		s := valid()
		c.edit(&s)
		_, err := FromSparse(s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

// FuzzFromSparse: the document comes from the network (through the API
// server's pod proxy). Whatever it holds, FromSparse never panics, and what
// it accepts behaves like a recorded histogram: it exports back to the same
// document, its quantiles are ordered within [min, max], and it merges.
func FuzzFromSparse(f *testing.F) {
	var h Histogram
	for _, v := range []time.Duration{-1, 0, 300, time.Millisecond, 3 * time.Minute} {
		h.Record(v)
	}
	seed, _ := json.Marshal(h.Sparse())
	f.Add(seed)
	f.Add([]byte(`{"buckets":[],"count":0}`))
	f.Add([]byte(`{"buckets":[[0,1]],"count":1,"sumNs":0,"minNs":0,"maxNs":0}`))
	f.Add([]byte(`{"buckets":[[3839,4294967295],[3839,1]],"count":4294967296}`))
	f.Add([]byte(`{"buckets":[[18446744073709551615,1]],"count":1}`))
	f.Add([]byte(`{"buckets":[[1,2]],"count":2,"sumNs":1e308,"minNs":1,"maxNs":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sparse
		if json.Unmarshal(b, &s) != nil {
			return
		}
		h, err := FromSparse(s)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		back := h.Sparse()
		if len(back.Buckets) == 0 && len(s.Buckets) == 0 {
			back.Buckets, s.Buckets = nil, nil
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("accepted %+v but exports %+v", s, back)
		}
		prev := time.Duration(math.MinInt64)
		for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
			v := h.Quantile(q)
			if h.Count() > 0 && (v < h.Min() || v > h.Max() || v < prev) {
				t.Fatalf("q%v = %v outside [%v, %v] or below the previous %v", q, v, h.Min(), h.Max(), prev)
			}
			prev = v
		}
		var m Histogram
		m.Merge(h)
		m.Merge(h)
		if m.Count() != 2*h.Count() {
			t.Fatalf("merged count %d, want %d", m.Count(), 2*h.Count())
		}
	})
}

func TestSparseBucketsJSON(t *testing.T) {
	for in, want := range map[string]SparseBuckets{
		`[]`:                    {},
		`null`:                  nil,
		` [ [ 1 , 2 ] ,[3,4]] `: {{1, 2}, {3, 4}},
		"[\n  [\n    0,\n    18446744073709551615\n  ]\n]": {{0, math.MaxUint64}},
	} {
		var b SparseBuckets
		if err := json.Unmarshal([]byte(in), &b); err != nil || !reflect.DeepEqual(b, want) {
			t.Errorf("%q: %v %v, want %v", in, b, err, want)
		}
	}
	for _, in := range []string{`{}`, `"x"`, `[1]`, `[[1]]`, `[[1,2,3]]`, `[[1.0,2]]`, `[[1e2,2]]`, `[[-1,2]]`,
		`[[18446744073709551616,1]]`, `[[1,2]`, `[[1,2],]`, `[[1,"2"]]`, `[null]`, `[[01,2]]`} {
		var b SparseBuckets
		if err := b.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%q accepted as %v", in, b)
		}
	}
	many := "[" + strings.Repeat("[1,1],", NumBuckets) + "[1,1]]"
	var b SparseBuckets
	if err := json.Unmarshal([]byte(many), &b); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d pairs: %v", NumBuckets+1, err)
	}
}

// FuzzSparseBucketsJSON: the hand-written decoder agrees with encoding/json on
// every valid input it accepts, and rejects everything encoding/json does.
func FuzzSparseBucketsJSON(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `[[1,2],[3,4]]`, `[[1,2,3]]`, `[[1]]`, ` [ [0 , 7 ] ] `, `[[1e2,1]]`, `[[-0,1]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return // encoding/json never passes invalid JSON to UnmarshalJSON
		}
		var mine SparseBuckets
		errMine := mine.UnmarshalJSON(data)
		var std [][2]uint64
		errStd := json.Unmarshal(data, &std)
		if errStd != nil && errMine == nil {
			t.Fatalf("%q: accepted as %v, encoding/json: %v", data, mine, errStd)
		}
		if errMine == nil && !reflect.DeepEqual([][2]uint64(mine), std) && !(len(mine) == 0 && len(std) == 0) {
			t.Fatalf("%q: %v, encoding/json %v", data, mine, std)
		}
	})
}
