package pairing

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func monotonic(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// Now agrees with the kernel's CLOCK_MONOTONIC, the events' clock, within
// its calibration's uncertainty, and does not drift from it.
func TestNowIsTheKernelsMonotonicClock(t *testing.T) {
	tolerance := uint64(monoSpread/2 + time.Microsecond)
	for i := range 5 {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		before := monotonic(t)
		now := Now()
		after := monotonic(t)
		if now+tolerance < before || now > after+tolerance {
			t.Errorf("Now() %d outside the kernel's [%d, %d] by more than %d ns (calibration bracket %v)", now, before, after, tolerance, monoSpread)
		}
	}
}
