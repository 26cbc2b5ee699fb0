package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// The ring's default share per CPU keeps the whole ring within its budget
// on large nodes, and never below the floor the loop's pacing needs.
func TestDefaultSlotsPerCPU(t *testing.T) {
	for _, c := range []struct {
		cpus int
		want uint32
	}{
		{1, 8192}, {2, 8192}, {8, 8192}, {9, 4096}, {16, 4096}, {17, 2048}, {32, 2048}, {33, 1024}, {64, 1024}, {256, 1024},
	} {
		if got := DefaultSlotsPerCPU(c.cpus); got != c.want {
			t.Errorf("%d CPUs: %d slots per CPU, want %d", c.cpus, got, c.want)
		}
	}
}

// The loader sizes the ring by the node's possible CPUs when not told.
func TestSegmentRingDefaultSize(t *testing.T) {
	_, rd := loadSegmentProbe(t, SegmentOptions{}, nil)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rd.Slots(), int(DefaultSlotsPerCPU(cpus)); got != want {
		t.Errorf("%d slots per CPU on %d possible CPUs, want %d", got, cpus, want)
	}
}

// A share that is not a power of two is refused before anything is loaded.
func TestSegmentRingSizeRefused(t *testing.T) {
	requireRoot(t)
	if p, err := LoadSegmentProbe(SegmentOptions{SlotsPerCPU: 3000}); err == nil {
		_ = p.Close()
		t.Fatal("3000 slots per CPU accepted")
	}
}
