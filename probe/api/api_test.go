package api

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]string{"": "1m", "10s": "10s", "1m": "1m", "10m": "10m"} {
		s, err := ParseWindow(in)
		if err != nil || s.Name != want {
			t.Errorf("%q: %+v %v", in, s, err)
		}
	}
	for _, in := range []string{"1h", "10S", " 10s", "60s", "1m0s", "-1"} {
		if _, err := ParseWindow(in); err == nil || !strings.Contains(err.Error(), "10s, 1m, 10m") {
			t.Errorf("%q accepted or unclear: %v", in, err)
		}
	}
}

// The window parameter comes from the network: never panic, accept only
// the three names, keep the error message short whatever the input.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"", "10s", "1m", "10m", "1h", strings.Repeat("x", 5000), "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseWindow(s)
		if err != nil {
			if len(err.Error()) > 120 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		if s != "" && spec.Name != s {
			t.Fatalf("%q accepted as %q", s, spec.Name)
		}
		if !utf8.ValidString(spec.Name) || spec.Length <= 0 {
			t.Fatalf("bad spec %+v", spec)
		}
	})
}
