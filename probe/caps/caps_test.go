package caps

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissing(t *testing.T) {
	all := uint64(1)<<unix.CAP_BPF | 1<<unix.CAP_PERFMON | 1<<unix.CAP_NET_ADMIN
	if m := missing(all); len(m) != 0 {
		t.Errorf("all present, missing %v", m)
	}
	if m := missing(1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_NET_ADMIN); len(m) != 0 {
		t.Errorf("CAP_SYS_ADMIN stands in for BPF and PERFMON: missing %v", m)
	}
	m := missing(1 << unix.CAP_NET_ADMIN)
	if len(m) != 2 || m[0].Name != "CAP_BPF" || m[1].Name != "CAP_PERFMON" {
		t.Fatalf("missing %v", m)
	}
	msg := (&MissingError{Missing: m}).Error()
	for _, want := range []string{"CAP_BPF (needed to load", "CAP_PERFMON (needed to", "capabilities.add: [BPF, PERFMON]", "privileged"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "CAP_NET_ADMIN") {
		t.Errorf("message names a capability that is present: %q", msg)
	}
}

func TestCheckAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the effective set of an unprivileged user lacks the capabilities")
	}
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	if err := CheckKernel(); err != nil {
		t.Fatal(err)
	}
}

func TestMissingFeatureError(t *testing.T) {
	inner := errors.New("not supported")
	err := error(&MissingFeatureError{Feature: Features[0], Err: inner})
	if !errors.Is(err, inner) || !strings.Contains(err.Error(), "kernel BTF") || !strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF") {
		t.Errorf("error %q", err)
	}
}

// An unprivileged process is told every missing capability by name.
func TestCheckUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as an unprivileged user (root holds every capability)")
	}
	var m *MissingError
	if err := Check(); !errors.As(err, &m) || len(m.Missing) != 3 {
		t.Fatalf("Check() = %v, want all three capabilities missing", err)
	}
	for _, name := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"} {
		if !strings.Contains(m.Error(), name) {
			t.Errorf("%q does not name %s", m.Error(), name)
		}
	}
}
