package histogram

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"
)

// Sparse is a histogram in a compact, serialisable form: only the buckets
// that hold values. The probe's snapshot carries it so that the plugin can
// merge the exchanges of many pods and take percentiles over all of them
// (averaging pods' percentiles would be wrong). A latency distribution
// rarely spans more than a few hundred buckets, against 3840 in memory.
//
// A Sparse read from the network must go through FromSparse (or Validate)
// before use: it checks that the document could have come from a
// Histogram.
type Sparse struct {
	// Buckets are [index, count] pairs, indexes strictly increasing, in
	// [0, NumBuckets), counts from 1 to 2^32-1.
	Buckets SparseBuckets `json:"buckets"`
	// Count is the sum of the bucket counts.
	Count uint64 `json:"count"`
	// SumNs is the exact total of the values, in nanoseconds.
	SumNs float64 `json:"sumNs"`
	// MinNs and MaxNs are the exact extremes, in nanoseconds (0 when
	// empty); they may lie outside the tracked range (see Underflow and
	// Overflow).
	MinNs int64 `json:"minNs"`
	MaxNs int64 `json:"maxNs"`
	// Underflow counts negative values (in bucket 0), Overflow values
	// beyond MaxTrackable (in the last bucket).
	Underflow uint64 `json:"underflow,omitempty"`
	Overflow  uint64 `json:"overflow,omitempty"`
}

// SparseBuckets are a histogram's non-empty buckets as [index, count]
// pairs. In JSON they are an array of two-element arrays.
type SparseBuckets [][2]uint64

// UnmarshalJSON reads the pairs without reflection: a snapshot carries
// thousands of them and the plugin reads hundreds of snapshots at once,
// where encoding/json's generic decoding spent a millisecond per snapshot.
// It is stricter than encoding/json (which pads or truncates arrays to the
// Go array's length): every element must be a pair of unsigned integers,
// and there can be at most NumBuckets of them.
func (b *SparseBuckets) UnmarshalJSON(data []byte) error {
	p := pairParser{data: data}
	p.space()
	if p.literal("null") {
		p.space()
		if !p.done() {
			return p.fail("trailing data")
		}
		*b = nil
		return nil
	}
	if !p.take('[') {
		return p.fail("want an array of [index, count] pairs")
	}
	// Each pair opens one bracket: allocate once, and at most what is
	// accepted.
	out := make(SparseBuckets, 0, min(bytes.Count(data[p.i:], []byte{'['}), NumBuckets))
	p.space()
	if !p.take(']') {
		for {
			if len(out) == NumBuckets {
				return p.fail(fmt.Sprintf("more than %d buckets", NumBuckets))
			}
			var pair [2]uint64
			p.space()
			if !p.take('[') {
				return p.fail("want an [index, count] pair")
			}
			for k := range pair {
				p.space()
				v, ok := p.uint()
				if !ok {
					return p.fail("want an unsigned integer below 2^64")
				}
				pair[k] = v
				p.space()
				if k == 0 && !p.take(',') {
					return p.fail("want [index, count]")
				}
			}
			if !p.take(']') {
				return p.fail("want [index, count]")
			}
			out = append(out, pair)
			p.space()
			if p.take(']') {
				break
			}
			if !p.take(',') {
				return p.fail("want ',' or ']'")
			}
		}
	}
	p.space()
	if !p.done() {
		return p.fail("trailing data")
	}
	*b = out
	return nil
}

// pairParser scans the JSON of SparseBuckets.
type pairParser struct {
	data []byte
	i    int
}

func (p *pairParser) done() bool { return p.i == len(p.data) }

func (p *pairParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *pairParser) take(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *pairParser) literal(s string) bool {
	if len(p.data)-p.i >= len(s) && string(p.data[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// uint reads a JSON integer that fits a uint64: digits, no leading zero
// (as JSON requires), no sign, fraction or exponent.
func (p *pairParser) uint() (uint64, bool) {
	start := p.i
	var v uint64
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		d := uint64(p.data[p.i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
		p.i++
	}
	n := p.i - start
	if n == 0 || (n > 1 && p.data[start] == '0') {
		return 0, false
	}
	if p.i < len(p.data) {
		switch p.data[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return v, true
}

func (p *pairParser) fail(what string) error {
	return fmt.Errorf("histogram buckets: %s at offset %d", what, p.i)
}

// Sparse exports h. An empty histogram gives a Sparse with no buckets.
func (h *Histogram) Sparse() Sparse {
	s := Sparse{
		Count:     h.count,
		SumNs:     h.sum,
		MinNs:     int64(h.min),
		MaxNs:     int64(h.max),
		Underflow: h.Underflow,
		Overflow:  h.Overflow,
	}
	if h.count == 0 {
		return s
	}
	n := 0
	for _, c := range h.counts {
		if c != 0 {
			n++
		}
	}
	s.Buckets = make([][2]uint64, 0, n)
	for i, c := range h.counts {
		if c != 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), uint64(c)})
		}
	}
	return s
}

// FromSparse rebuilds the histogram s was exported from. It rejects a
// Sparse that no Histogram could have produced, so that a corrupt or
// hostile snapshot cannot yield quantiles outside [min, max], a count that
// disagrees with the buckets, or a panic.
func FromSparse(s Sparse) (*Histogram, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	h := &Histogram{
		count:     s.Count,
		sum:       s.SumNs,
		min:       time.Duration(s.MinNs),
		max:       time.Duration(s.MaxNs),
		Underflow: s.Underflow,
		Overflow:  s.Overflow,
	}
	if s.Count == 0 {
		return h, nil
	}
	h.counts = make([]uint32, NumBuckets)
	for _, b := range s.Buckets {
		h.counts[b[0]] = uint32(b[1])
	}
	return h, nil
}

// Validate reports the first inconsistency of s, if any.
func (s *Sparse) Validate() error {
	if s.Count == 0 {
		if len(s.Buckets) != 0 || s.SumNs != 0 || s.MinNs != 0 || s.MaxNs != 0 || s.Underflow != 0 || s.Overflow != 0 {
			return errors.New("empty histogram (count 0) with buckets, sum, extremes or out-of-range counts")
		}
		return nil
	}
	if len(s.Buckets) == 0 {
		return fmt.Errorf("count %d but no buckets", s.Count)
	}
	var total uint64
	for i, b := range s.Buckets {
		idx, c := b[0], b[1]
		if idx >= NumBuckets {
			return fmt.Errorf("bucket %d: index %d out of range [0, %d)", i, idx, NumBuckets)
		}
		if i > 0 && idx <= s.Buckets[i-1][0] {
			return fmt.Errorf("bucket %d: index %d does not follow %d (indexes must increase)", i, idx, s.Buckets[i-1][0])
		}
		if c == 0 || c > math.MaxUint32 {
			return fmt.Errorf("bucket %d (index %d): count %d out of range [1, 2^32-1]", i, idx, c)
		}
		// At most NumBuckets counts below 2^32: the total cannot overflow.
		total += c
	}
	if total != s.Count {
		return fmt.Errorf("count %d, but the buckets hold %d", s.Count, total)
	}
	if s.MinNs > s.MaxNs {
		return fmt.Errorf("min %d ns above max %d ns", s.MinNs, s.MaxNs)
	}
	if s.Count == 1 && s.MinNs != s.MaxNs {
		return fmt.Errorf("one value, but min %d ns and max %d ns differ", s.MinNs, s.MaxNs)
	}
	// The extremes sit in the first and last non-empty buckets, which is
	// what clamps quantiles to [min, max] correctly.
	first, last := s.Buckets[0], s.Buckets[len(s.Buckets)-1]
	if want := uint64(index(clampNs(s.MinNs))); first[0] != want {
		return fmt.Errorf("min %d ns belongs in bucket %d, but the first bucket is %d", s.MinNs, want, first[0])
	}
	if want := uint64(index(clampNs(s.MaxNs))); last[0] != want {
		return fmt.Errorf("max %d ns belongs in bucket %d, but the last bucket is %d", s.MaxNs, want, last[0])
	}
	// Out-of-range values are counted where Record puts them.
	switch {
	case s.MinNs >= 0 && s.Underflow != 0:
		return fmt.Errorf("underflow %d, but min %d ns is not negative", s.Underflow, s.MinNs)
	case s.MinNs < 0 && (s.Underflow == 0 || s.Underflow > first[1]):
		return fmt.Errorf("underflow %d, but min %d ns is negative and bucket 0 holds %d", s.Underflow, s.MinNs, first[1])
	case s.MaxNs < 0 && s.Underflow != s.Count:
		return fmt.Errorf("every value is negative but underflow is %d of %d", s.Underflow, s.Count)
	}
	switch {
	case s.MaxNs <= int64(MaxTrackable) && s.Overflow != 0:
		return fmt.Errorf("overflow %d, but max %d ns is in range", s.Overflow, s.MaxNs)
	case s.MaxNs > int64(MaxTrackable) && (s.Overflow == 0 || s.Overflow > last[1]):
		return fmt.Errorf("overflow %d, but max %d ns is out of range and the last bucket holds %d", s.Overflow, s.MaxNs, last[1])
	case s.MinNs > int64(MaxTrackable) && s.Overflow != s.Count:
		return fmt.Errorf("every value is out of range but overflow is %d of %d", s.Overflow, s.Count)
	}
	if s.Underflow > s.Count-s.Overflow {
		return fmt.Errorf("underflow %d and overflow %d exceed count %d", s.Underflow, s.Overflow, s.Count)
	}
	// The mean lies between the extremes. The slack covers float64
	// rounding of a sum accumulated one value at a time.
	if math.IsNaN(s.SumNs) || math.IsInf(s.SumNs, 0) {
		return fmt.Errorf("sum %v is not finite", s.SumNs)
	}
	mean := s.SumNs / float64(s.Count)
	slack := 1e-6*math.Max(math.Abs(float64(s.MinNs)), math.Abs(float64(s.MaxNs))) + 1
	if mean < float64(s.MinNs)-slack || mean > float64(s.MaxNs)+slack {
		return fmt.Errorf("mean %.6g ns (sum / count) outside [min %d ns, max %d ns]", mean, s.MinNs, s.MaxNs)
	}
	return nil
}

// clampNs is where Record files a value: negative ones in bucket 0, those
// beyond the range in the last bucket.
func clampNs(ns int64) uint64 {
	return uint64(min(max(ns, 0), int64(MaxTrackable)))
}
