// Package version carries the build's version, stamped by the Makefile with
// -ldflags "-X github.com/kubectl-mesh/kubectl-mesh/internal/version.Version=...".
package version

// Version is the release (or `git describe`) this binary was built from.
var Version = "v0.0.0-dev"
