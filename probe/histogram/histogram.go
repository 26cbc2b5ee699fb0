// Package histogram is a log-linear (HDR-style) histogram of durations:
// bounded memory, mergeable, with a fixed relative error.
//
// Values are non-negative nanoseconds. Below 256 ns every nanosecond has its
// own bucket. Above, each power-of-two range [2^k, 2^(k+1)) is split into
// 128 equal buckets, so a bucket is at most 1/128 of its lower bound wide. A
// quantile is reported as the middle of the bucket that holds it, which is
// within half a bucket width of the true sample: at most 1/256 (0.39%) of
// the value, and exact below 256 ns. The maximum is tracked exactly, and
// quantiles are clamped to [min, max]. (0.39% keeps a 5 ms quantile within
// 20 us, below the 50 us the probe is tested to.)
//
// The range is 0 to 2^36 ns (68.7 s) in 3840 buckets of 32-bit counts
// (15 KiB, allocated on the first Record); larger values land in the last
// bucket and are counted in Overflow, with Max still exact. A bucket holds
// up to 2^32-1 values: a 10-minute window at 7 million requests per second.
package histogram

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits  = 8
	subCount = 1 << subBits // exact buckets below this value
	half     = subCount / 2 // buckets per power of two above it
	// maxBits bounds the tracked range: values below 2^maxBits ns.
	maxBits = 36
	// NumBuckets is the number of buckets of every histogram.
	NumBuckets = subCount + (maxBits-subBits)*half
	// MaxTrackable is the largest value with its own bucket (~68.7 s).
	MaxTrackable = time.Duration(1<<maxBits - 1)
	// RelativeError bounds |reported - true| / true for a quantile above
	// 256 ns; below, quantiles are exact.
	RelativeError = 1.0 / (2 * half)
)

// Histogram counts durations. The zero value is empty and ready to use. It
// is not safe for concurrent use.
type Histogram struct {
	counts   []uint32 // nil until the first Record
	count    uint64
	sum      float64 // ns; float so that long windows cannot overflow
	min, max time.Duration
	// Underflow counts negative values (recorded as 0); Overflow values
	// beyond MaxTrackable (recorded in the last bucket).
	Underflow, Overflow uint64
}

// index returns the bucket of a value in [0, MaxTrackable].
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1: the bucket width is 2^e
	return subCount + (e-1)*half + int(v>>e) - half
}

// bounds returns the lowest value of bucket i and its width.
func bounds(i int) (lo, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	e := (i-subCount)/half + 1
	return uint64((i-subCount)%half+half) << e, 1 << e
}

// Record adds one value.
func (h *Histogram) Record(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint32, NumBuckets)
	}
	v := d
	switch {
	case v < 0:
		h.Underflow++
		v = 0
	case v > MaxTrackable:
		h.Overflow++
	}
	if h.count == 0 || d < h.min {
		h.min = d
	}
	if h.count == 0 || d > h.max {
		h.max = d
	}
	h.count++
	h.sum += float64(d)
	h.counts[index(uint64(min(v, MaxTrackable)))]++
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, NumBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.count == 0 || o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
	h.Underflow += o.Underflow
	h.Overflow += o.Overflow
}

// Reset empties the histogram, keeping its buckets' memory.
func (h *Histogram) Reset() {
	clear(h.counts)
	*h = Histogram{counts: h.counts}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Min and Max are exact; 0 when empty.
func (h *Histogram) Min() time.Duration { return h.min }

// Max is the largest value recorded, exact.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the exact mean (up to float64 rounding); 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.count)))
}

// Sum is the total of the values recorded.
func (h *Histogram) Sum() time.Duration { return time.Duration(h.sum) }

// Quantile returns the value at rank ceil(q*count) (the nearest-rank
// definition: the smallest value such that at least q of the values are
// at or below it), within RelativeError. q is clamped to [0, 1]; q = 1 is
// Max. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	if !(q > 0) { // also NaN
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			lo, w := bounds(i)
			v := time.Duration(lo + w/2)
			if w == 1 {
				v = time.Duration(lo)
			}
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
