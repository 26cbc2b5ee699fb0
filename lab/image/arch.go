package image

import "runtime"

// goarch is the architecture recorded in image configs: the binaries are built for the
// machine that runs the lab.
func goarch() string { return runtime.GOARCH }
