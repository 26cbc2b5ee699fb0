package cmd

import (
	"errors"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
)

// Exit codes of kubectl-mesh, documented in the root command's help.
const (
	// ExitOK: done.
	ExitOK = 0
	// ExitError: the command failed; the cause is the last line on stderr.
	ExitError = 1
	// ExitUsage: bad flags or arguments; nothing was changed.
	ExitUsage = 2
	// ExitInterrupted: a perf run was stopped early (Ctrl-C); its partial result was stored.
	ExitInterrupted = 3
)

// usageError marks an error in the command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// ExitCode maps a command's error to the documented exit code.
func ExitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &u):
		return ExitUsage
	case errors.Is(err, perf.ErrInterrupted):
		return ExitInterrupted
	default:
		return ExitError
	}
}
