package bpf

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const staleHint = "the generated BPF objects are stale: run `go generate ./bpf/...` (needs clang and llvm-strip)"

// TestGeneratedObjectsUpToDate fails when a C source, a header or a
// go:generate directive changed after the objects were last generated: the
// last go:generate directive records their hashes in sources.sha256.
// Needs no compiler.
func TestGeneratedObjectsUpToDate(t *testing.T) {
	recorded := map[string]string{}
	f, err := os.Open("sources.sha256")
	if err != nil {
		t.Fatalf("%v: %s", err, staleHint)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("malformed line %q in sources.sha256", sc.Text())
		}
		recorded[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	current := []string{"gen.go"}
	for _, pattern := range []string{"c/*.h", "c/*.c"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		current = append(current, m...)
	}
	sort.Strings(current)
	for _, name := range current {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		want, ok := recorded[name]
		switch {
		case !ok:
			t.Errorf("%s is new since the last generation; %s", name, staleHint)
		case want != hex.EncodeToString(sum[:]):
			t.Errorf("%s changed since the last generation; %s", name, staleHint)
		}
		delete(recorded, name)
	}
	for name := range recorded {
		t.Errorf("%s was removed since the last generation; %s", name, staleHint)
	}
}

// TestGeneratedObjectsReproduce recompiles every bpf2go directive of gen.go
// into a temporary directory and compares the objects with the committed
// ones, and the Go bindings with theirs, byte for byte (clang output is
// deterministic for the same inputs).
func TestGeneratedObjectsReproduce(t *testing.T) {
	if testing.Short() {
		t.Skip("recompiles the BPF objects; skipped in -short")
	}
	for _, tool := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: cannot rebuild the BPF objects here (TestGeneratedObjectsUpToDate still checks the sources)", tool)
		}
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	n := 0
	for _, line := range strings.Split(string(src), "\n") {
		args, ok := strings.CutPrefix(line, "//go:generate go run github.com/cilium/ebpf/cmd/bpf2go ")
		if !ok {
			continue
		}
		n++
		argv := append([]string{"run", "github.com/cilium/ebpf/cmd/bpf2go", "-output-dir", out}, splitQuoted(args)...)
		cmd := exec.Command("go", argv...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %s: %v\n%s", args, err, msg)
		}
	}
	if n == 0 {
		t.Fatal("no bpf2go directive in gen.go")
	}
	objs, err := filepath.Glob(filepath.Join(out, "*.o"))
	if err != nil || len(objs) != n {
		t.Fatalf("built %d objects for %d directives: %v", len(objs), n, err)
	}
	bindings, err := filepath.Glob(filepath.Join(out, "*.go"))
	if err != nil || len(bindings) != n {
		t.Fatalf("built %d Go bindings for %d directives: %v", len(bindings), n, err)
	}
	built := append(objs, bindings...)
	for _, path := range built {
		fresh, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Base(path))
		if err != nil {
			t.Fatalf("%v: %s", err, staleHint)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build; %s", filepath.Base(path), staleHint)
		}
	}
}

// splitQuoted splits a go:generate argument list on spaces, keeping
// double-quoted arguments whole (as go generate does).
func splitQuoted(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case r == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}
