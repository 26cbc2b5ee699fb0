package pairing

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now returns CLOCK_MONOTONIC in nanoseconds, the clock of the events
// (bpf_ktime_get_ns). The agent's loop reads it several times a wakeup:
// unix.ClockGettime is a system call each time (3.6% of the probe's CPU
// at 2000 rps in a profile), while Go's monotonic reading of time.Now
// comes from the same clock through the vDSO. So the two are tied once,
// and Now adds the time elapsed since on Go's reading.
func Now() uint64 {
	return monoBase + uint64(time.Since(monoAt))
}

var monoBase, monoAt, monoSpread = calibrate()

// calibrate reads CLOCK_MONOTONIC between two of Go's readings and keeps
// the tightest of a few tries: Now is then off by at most half that
// bracket (spread), a constant, about a microsecond.
func calibrate() (base uint64, at time.Time, spread time.Duration) {
	spread = time.Duration(1<<63 - 1)
	for range 8 {
		var ts unix.Timespec
		before := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error())
		}
		after := time.Now()
		if d := after.Sub(before); d < spread {
			spread = d
			base, at = uint64(ts.Nano()), before.Add(d/2)
		}
	}
	return base, at, spread
}
