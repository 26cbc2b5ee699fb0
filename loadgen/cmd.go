package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"fortio.org/log"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit codes of mesh-loadgen, for the Job's pod status.
const (
	// ExitOK: the run completed and the result was written.
	ExitOK = 0
	// ExitError: no result: the load could not start, or the result could
	// not be written. The cause is the last line on stderr.
	ExitError = 1
	// ExitUsage: bad flags.
	ExitUsage = 2
	// ExitPartial: stopped early (SIGTERM, SIGINT); the partial result was
	// written.
	ExitPartial = 3
)

// ErrPartial is returned (wrapped) by Options.Run when the run was stopped
// early and the partial result was written.
var ErrPartial = errors.New("stopped early; the partial result was written")

// usageError marks errors in the command line, for ExitCode.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// ExitCode maps Options.Run's error to the documented exit code.
func ExitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &u):
		return ExitUsage
	case errors.Is(err, ErrPartial):
		return ExitPartial
	default:
		return ExitError
	}
}

// Options are mesh-loadgen's flags.
type Options struct {
	Config
	// Output is the result file, or "-" for stdout (one line of JSON).
	Output string
	// LogLevel is fortio's log level; its messages go to stderr as JSON lines
	// with a "level" key, beside our "kind" lines.
	LogLevel string
	genericiooptions.IOStreams
}

// NewOptions returns Options with the defaults of the flags.
func NewOptions(streams genericiooptions.IOStreams) *Options {
	return &Options{
		Config: Config{
			Protocol:         HTTP,
			QPS:              1000,
			Connections:      16,
			Duration:         30 * time.Second,
			ProgressInterval: 2 * time.Second,
			ReadyTimeout:     30 * time.Second,
		},
		Output:    "-",
		LogLevel:  "warning",
		IOStreams: streams,
	}
}

// NewCmd is the mesh-loadgen command.
func NewCmd(streams genericiooptions.IOStreams) *cobra.Command {
	o := NewOptions(streams)
	var protocol string
	cmd := &cobra.Command{
		Use:   "mesh-loadgen --url URL [--qps N] [--connections N] [--duration D] [flags]",
		Short: "Generate HTTP, HTTP/2 or gRPC load at a constant rate and write the latency histogram as JSON",
		Long: `mesh-loadgen is the load generator of kubectl mesh perf run. It runs fortio's library the way
Istio's benchmark harness runs fortio (uniform, jitter, no catch-up, keep-alive), reports progress
as JSON lines on stderr and writes the result (latencies in milliseconds) as JSON.

Exit codes: 0 completed; 1 could not run or write the result; 2 bad flags; 3 stopped early by
SIGTERM or SIGINT, partial result written.`,
		Example: `  mesh-loadgen --url http://echo.demo.svc:8080/ --qps 1000 --connections 16 --duration 30s
  mesh-loadgen --url http://echo:8080/ --qps 0 --duration 10s --protocol http2 --output result.json
  mesh-loadgen --url grpc://echo:9090 --protocol grpc --grpc-ping --payload-size 1024`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected arguments %q: the target is given with --url", args)}
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Protocol = Protocol(protocol)
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "target URL: http(s)://host:port/path; for --protocol grpc also grpc://host:port")
	f.StringVar(&protocol, "protocol", string(o.Protocol), "protocol: "+protocolList()+" (http2 is h2c on http:// URLs)")
	f.Float64Var(&o.QPS, "qps", o.QPS, "requested rate over all connections, requests per second; 0 for as fast as possible")
	f.IntVarP(&o.Connections, "connections", "c", o.Connections, "concurrent connections")
	f.DurationVarP(&o.Duration, "duration", "t", o.Duration, "length of the measured phase")
	f.Int64VarP(&o.Requests, "requests", "n", 0, "plan exactly this many requests instead of running for --duration (all are sent with --qps 0; at a fixed rate no catch-up may skip some)")
	f.DurationVar(&o.Warmup, "warmup", 0, "unmeasured phase at the same rate before the measured one")
	f.IntVar(&o.PayloadSize, "payload-size", 0, "request body size in bytes (HTTP: a POST; gRPC: needs --grpc-ping)")
	f.DurationVar(&o.Timeout, "timeout", 0, "per-request timeout (0: fortio's default, 3s)")
	f.DurationVar(&o.ReadyTimeout, "ready-timeout", o.ReadyTimeout, "how long to wait for the target to accept connections before the first phase (0: do not wait)")
	f.BoolVar(&o.GRPCPing, "grpc-ping", false, "gRPC: call fortio's Ping service instead of grpc.health.v1 Check")
	f.StringVar(&o.GRPCService, "grpc-service", "", "gRPC: service name for the health check (default: the server's overall health)")
	f.StringVarP(&o.Output, "output", "o", o.Output, "result file, or - for stdout")
	f.DurationVar(&o.ProgressInterval, "progress-interval", o.ProgressInterval, "how often to write a progress line to stderr; 0 for only at the end of each phase")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "fortio's log level: debug, verbose, info, warning, error, critical")
	return cmd
}

// Complete normalises what the flags leave open.
func (o *Options) Complete() error {
	o.Protocol = Protocol(strings.ToLower(string(o.Protocol)))
	o.LogLevel = strings.ToLower(o.LogLevel)
	return nil
}

// Validate rejects bad flags before any connection is made.
func (o *Options) Validate() error {
	errs := []error{o.Config.Validate()}
	if o.Output == "" {
		errs = append(errs, errors.New("--output is empty (use - for stdout)"))
	}
	if _, err := log.ValidateLevel(o.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	return errors.Join(errs...)
}

// Run runs the load and writes the result.
func (o *Options) Run(ctx context.Context) error {
	// fortio's log lines and our progress lines share stderr: one lock keeps
	// each line whole.
	errOut := &lockedWriter{w: o.ErrOut}
	lvl, _ := log.ValidateLevel(o.LogLevel)
	log.SetOutput(errOut)
	log.SetLogLevelQuiet(lvl)

	// Open the output before the run, so a bad path fails in a second, not
	// after the whole duration.
	out, err := openOutput(o.Output, o.Out)
	if err != nil {
		return err
	}
	defer out.abort()

	emit := func(p Progress) {
		b, err := json.Marshal(p)
		if err != nil {
			return // progress is best effort; the result is what counts
		}
		_, _ = errOut.Write(append(b, '\n'))
	}
	res, err := Run(ctx, o.Config, emit)
	if err != nil {
		return err
	}
	if err := out.commit(res); err != nil {
		return err
	}
	if res.Partial {
		return fmt.Errorf("%s after %d requests: %w", res.PartialReason, res.Requests, ErrPartial)
	}
	return nil
}

// output is the result's destination: stdout, or a file that appears under
// its name only once complete (written beside it, then renamed), so that a
// reader never sees half a result.
type output struct {
	w    io.Writer
	tmp  *os.File
	path string
}

func openOutput(path string, stdout io.Writer) (*output, error) {
	if path == "-" {
		return &output{w: stdout}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("cannot write the result beside %s: %w", path, err)
	}
	return &output{w: tmp, tmp: tmp, path: path}, nil
}

func (o *output) commit(r *Result) error {
	if o.tmp == nil {
		// One line, so that a reader of the pod's log finds it whole.
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.w, "%s\n", b)
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if _, err := o.tmp.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", o.path, err)
	}
	// CreateTemp makes the file private; the result is not a secret, and the
	// pod's user may not be the one who reads the file.
	if err := o.tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", o.path, err)
	}
	if err := o.tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", o.path, err)
	}
	if err := os.Rename(o.tmp.Name(), o.path); err != nil {
		return fmt.Errorf("writing %s: %w", o.path, err)
	}
	o.tmp = nil
	return nil
}

// abort removes the temporary file of a result that was not committed.
func (o *output) abort() {
	if o.tmp != nil {
		_ = o.tmp.Close()
		_ = os.Remove(o.tmp.Name())
	}
}

// lockedWriter serialises writes, each of which is one whole line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
