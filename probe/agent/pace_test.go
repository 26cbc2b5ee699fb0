package agent

import (
	"cmp"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/probe/flowtrack"
)

// The loop sleeps until records at the last drain's rate would fill an
// eighth of the ring, never less than minDrainInterval, and as long as it
// likes when nothing arrived. The ring here is the kernel source's, 1 MiB
// of exchange records.
func TestDrainPace(t *testing.T) {
	const ring = (1 << 20) / recordBytes
	fill := func(recordsPerSecond float64) time.Duration {
		return time.Duration(float64(ring/8) / recordsPerSecond * float64(time.Second))
	}
	for _, c := range []struct {
		name  string
		read  int
		since time.Duration
		want  time.Duration
	}{
		{"nothing read", 0, 100 * time.Millisecond, math.MaxInt64},
		{"first drain", 10, 0, math.MaxInt64},
		// 2000 requests/s, two records each: 4000 x 176 B/s fill 128 KiB
		// in ~186 ms, longer than the scan interval.
		{"2000 rps", 400, 100 * time.Millisecond, fill(4000)},
		// 10k requests/s: ~37 ms.
		{"10k rps", 2000, 100 * time.Millisecond, fill(20000)},
		{"a flood", 5000, time.Millisecond, minDrainInterval},
	} {
		got := drainPace(c.read, c.since, ring)
		if d := got - c.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%s: drainPace(%d, %v) = %v, want %v", c.name, c.read, c.since, got, c.want)
		}
	}
	if got := drainPace(2000, 100*time.Millisecond, ring); got < 30*time.Millisecond || got > 45*time.Millisecond {
		t.Errorf("10k rps: %v, want about 37ms", got)
	}
}

// While quiet the loop sleeps three scan intervals, never more than half
// the pairing's horizon (an exchange must reach the pairing within it) and
// never less than one scan interval.
func TestQuietInterval(t *testing.T) {
	for _, c := range []struct {
		name          string
		scan, horizon time.Duration
		want          time.Duration
	}{
		{"defaults", 100 * time.Millisecond, time.Second, 300 * time.Millisecond},
		{"short horizon", 100 * time.Millisecond, 400 * time.Millisecond, 200 * time.Millisecond},
		{"horizon below two scans", 100 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond},
		{"slow scans", time.Second, 10 * time.Second, 3 * time.Second},
	} {
		o := Options{ScanInterval: c.scan, Horizon: c.horizon}
		o.defaults()
		if got := (&Agent{opts: o}).quietInterval(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The loop's schedule: scans every scan interval while there is traffic,
// every quiet interval while the pod is quiet, and the resolves go on in
// both, following the quiet scans so that a quiet loop wakes once per
// quiet interval.
func TestScheduleResolvesWhileQuiet(t *testing.T) {
	const scanEvery, quietEvery, resolveEvery = 100 * time.Millisecond, 300 * time.Millisecond, 100 * time.Millisecond
	start := time.Unix(1000, 0)
	s := newSchedule(start, scanEvery, quietEvery, resolveEvery)
	quiet := true
	var wakeups int
	var scans, resolves []time.Time
	run := func(until time.Time) {
		for now := start; now.Before(until); {
			now = s.nextScan
			if s.nextResolve.Before(now) {
				now = s.nextResolve
			}
			wakeups++
			s.tick(now, func() bool { scans = append(scans, now); return quiet }, func() { resolves = append(resolves, now) })
			start = now
		}
	}
	gaps := func(ts []time.Time) (lo, hi time.Duration) {
		lo = time.Hour
		for i := 1; i < len(ts); i++ {
			d := ts[i].Sub(ts[i-1])
			lo, hi = min(lo, d), max(hi, d)
		}
		return lo, hi
	}

	// Quiet for 3 s: a scan and a resolve every quiet interval, one
	// wakeup for both.
	run(start.Add(3 * time.Second))
	if lo, hi := gaps(resolves); len(resolves) < 9 || hi > quietEvery {
		t.Errorf("quiet: %d resolves in 3 s, gaps %v-%v; want one every %v at most", len(resolves), lo, hi, quietEvery)
	}
	if lo, hi := gaps(scans); lo < quietEvery-scanEvery || hi > quietEvery {
		t.Errorf("quiet: scans %v-%v apart, want %v", lo, hi, quietEvery)
	}
	if wakeups > len(scans)+1 {
		t.Errorf("quiet: %d wakeups for %d scans", wakeups, len(scans))
	}

	// Traffic: back to a scan and a resolve every 100 ms from the first
	// scan that sees it.
	quiet = false
	scans, resolves = scans[:0], resolves[:0]
	run(start.Add(time.Second))
	if lo, hi := gaps(scans); lo != scanEvery || hi != scanEvery {
		t.Errorf("traffic: scans %v-%v apart, want %v", lo, hi, scanEvery)
	}
	if _, hi := gaps(resolves[1:]); hi != resolveEvery {
		t.Errorf("traffic: resolves up to %v apart, want %v", hi, resolveEvery)
	}
}

// mergeRuns orders the segments held back and each CPU's run by time,
// stably (equal times keep the order they came in).
func TestMergeRuns(t *testing.T) {
	seg := func(time uint64, seq uint32) flowtrack.Segment { return flowtrack.Segment{Time: time, Seq: seq} }
	for _, c := range []struct {
		name string
		in   []flowtrack.Segment
	}{
		{"empty", nil},
		{"one run", []flowtrack.Segment{seg(1, 0), seg(2, 1), seg(2, 2), seg(5, 3)}},
		{"held back, then two CPUs", []flowtrack.Segment{seg(3, 0), seg(9, 1), seg(1, 2), seg(4, 3), seg(9, 4), seg(2, 5), seg(3, 6), seg(10, 7)}},
		{"many runs", []flowtrack.Segment{seg(5, 0), seg(4, 1), seg(3, 2), seg(3, 3), seg(2, 4), seg(1, 5), seg(7, 6)}},
	} {
		want := slices.Clone(c.in)
		slices.SortStableFunc(want, func(a, b flowtrack.Segment) int { return cmp.Compare(a.Time, b.Time) })
		got, _ := mergeRuns(slices.Clone(c.in), nil)
		if !slices.EqualFunc(got, want, func(a, b flowtrack.Segment) bool { return a.Time == b.Time && a.Seq == b.Seq }) {
			t.Errorf("%s: %v, want %v", c.name, got, want)
		}
	}
}
