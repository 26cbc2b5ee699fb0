// Package netns runs Go code inside another network namespace. The lab's API relay, the probe
// (attaching its TC programs from outside a pod, for benchmarks) and the network-namespace test
// fixtures all need the same careful thread handling, so it lives here once.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has joined the network namespace at path. Sockets created
// inside fn belong to that namespace for their whole life; TC attachments made inside fn act on
// that namespace's interfaces.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never returned to the scheduler's pool after a setns: if switching
		// back failed it would carry the wrong namespace into unrelated goroutines. Exiting
		// the goroutine while still locked makes the runtime discard the thread.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("netns: open %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: leave %s: %w (and: %v)", path, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
