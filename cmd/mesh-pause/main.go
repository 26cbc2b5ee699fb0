// Command mesh-pause is the lab's pod sandbox ("pause") process: it holds the pod's namespaces
// and does nothing else. Built here because the lab has no registry to pull
// registry.k8s.io/pause from. Like the upstream pause, it exits on SIGINT/SIGTERM and reaps
// zombies, since it is PID 1 of the pod when the PID namespace is shared.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
