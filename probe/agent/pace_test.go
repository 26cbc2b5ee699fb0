package agent

import (
	"math"
	"testing"
	"time"
)

// The loop sleeps until records at the last drain's rate would fill an
// eighth of the ring, never less than minDrainInterval, and as long as it
// likes when nothing arrived.
func TestDrainPace(t *testing.T) {
	const ring = 1 << 20
	fill := func(recordsPerSecond float64) time.Duration {
		return time.Duration(float64(ring/8) / (recordsPerSecond * recordBytes) * float64(time.Second))
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
