package agent

import "github.com/kubectl-mesh/kubectl-mesh/internal/netns"

// inNetns runs fn on an OS thread switched into the network namespace at
// path, or directly when path is empty (the probe runs in its pod's
// namespace). TC attach and detach act in the calling thread's namespace.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return netns.Do(path, fn)
}
