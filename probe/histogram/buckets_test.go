package histogram

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{5, 5, 300, time.Millisecond, time.Millisecond + 1} {
		h.Record(d)
	}
	bs := h.Buckets()
	var n uint64
	for i, b := range bs {
		n += b.Count
		if b.Hi <= b.Lo || (i > 0 && b.Lo < bs[i-1].Hi) {
			t.Errorf("bucket %d %+v: empty or overlapping", i, b)
		}
	}
	if n != h.Count() || len(bs) != 3 || bs[0].Count != 2 || bs[0].Lo != 5 || bs[2].Count != 2 {
		t.Errorf("Buckets = %+v", bs)
	}
	for _, b := range bs {
		if b.Lo > time.Millisecond || b.Hi <= time.Millisecond {
			continue
		}
		if b.Count != 2 {
			t.Errorf("1 ms and 1 ms + 1 ns share a bucket: %+v", b)
		}
	}
}
