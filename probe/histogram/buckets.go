package histogram

import "time"

// Bucket is one non-empty bucket: Count values in [Lo, Hi).
type Bucket struct {
	Lo, Hi time.Duration
	Count  uint64
}

// Buckets lists the non-empty buckets in increasing order, for drawing the distribution (the
// plugin's HTML report). Values beyond the tracked range are in the last bucket.
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		lo, w := bounds(i)
		out = append(out, Bucket{Lo: time.Duration(lo), Hi: time.Duration(lo + w), Count: uint64(c)})
	}
	return out
}
