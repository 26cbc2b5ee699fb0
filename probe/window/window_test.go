package window

import (
	"testing"
	"time"
)

// counter is the simplest aggregate: a sum.
type counter struct{ n int }

func (c *counter) Merge(o *counter) { c.n += o.n }
func (c *counter) Reset()           { c.n = 0 }

func newCounter() *counter { return &counter{} }

// One value per 100ms for 15 minutes: each window holds exactly its length's
// worth of values, ends on a slot boundary and starts one length earlier.
func TestWindowsCountExactly(t *testing.T) {
	origin := time.Unix(1_000_000, 0)
	r := New(origin, newCounter)
	step := 100 * time.Millisecond
	var now time.Time
	for i := 0; i < 15*600; i++ {
		now = origin.Add(time.Duration(i) * step)
		r.Update(now, func(c *counter) { c.n++ })
	}
	// now = origin + 899.9s
	for _, s := range Specs {
		w, err := r.Snapshot(now, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		wantEnd := origin.Add(now.Sub(origin).Truncate(s.Slot))
		if !w.End.Equal(wantEnd) || w.Covered != s.Length || !w.Start.Equal(wantEnd.Add(-s.Length)) {
			t.Errorf("%s: [%v, %v] covered %v, want end %v", s.Name, w.Start, w.End, w.Covered, wantEnd)
		}
		if want := int(s.Length / step); w.Agg.n != want {
			t.Errorf("%s: %d values, want %d", s.Name, w.Agg.n, want)
		}
	}
}

// Shortly after the start a window covers only what exists.
func TestWindowShorterThanLength(t *testing.T) {
	origin := time.Unix(0, 0)
	r := New(origin, newCounter)
	r.Update(origin.Add(500*time.Millisecond), func(c *counter) { c.n += 3 })
	r.Update(origin.Add(2500*time.Millisecond), func(c *counter) { c.n += 4 })
	w, err := r.Snapshot(origin.Add(2600*time.Millisecond), "10s")
	if err != nil {
		t.Fatal(err)
	}
	// Slots 0 and 1 are complete; slot 2 (with the 4) is not.
	if w.Agg.n != 3 || w.Covered != 2*time.Second || !w.Start.Equal(origin) {
		t.Errorf("window %+v", w)
	}
	w, _ = r.Snapshot(origin.Add(3*time.Second), "10s")
	if w.Agg.n != 7 {
		t.Errorf("after slot 2 ended: %d, want 7", w.Agg.n)
	}
	// The 1m tier has no complete 10s slot yet.
	if w, _ := r.Snapshot(origin.Add(3*time.Second), "1m"); w.Agg.n != 0 || w.Covered != 0 {
		t.Errorf("1m window %+v", w)
	}
	if w, _ := r.Snapshot(origin.Add(10*time.Second), "1m"); w.Agg.n != 7 || w.Covered != 10*time.Second {
		t.Errorf("1m window after 10s: %+v", w)
	}
}

// Old values leave the window; a long gap without updates leaves nothing
// stale behind.
func TestExpiry(t *testing.T) {
	origin := time.Unix(0, 0)
	r := New(origin, newCounter)
	r.Update(origin, func(c *counter) { c.n = 5 })
	if w, _ := r.Snapshot(origin.Add(10*time.Second), "10s"); w.Agg.n != 5 {
		t.Fatalf("value missing: %d", w.Agg.n)
	}
	if w, _ := r.Snapshot(origin.Add(11*time.Second), "10s"); w.Agg.n != 0 {
		t.Errorf("expired value still in the 10s window: %d", w.Agg.n)
	}
	if w, _ := r.Snapshot(origin.Add(11*time.Second), "1m"); w.Agg.n != 5 {
		t.Errorf("1m window lost it: %d", w.Agg.n)
	}
	// An hour later, with a new value: only it.
	later := origin.Add(time.Hour)
	r.Update(later, func(c *counter) { c.n++ })
	for _, s := range Specs {
		if w, _ := r.Snapshot(later.Add(s.Length), s.Name); w.Agg.n != 1 {
			t.Errorf("%s after a gap: %d, want 1", s.Name, w.Agg.n)
		}
	}
	if _, err := r.Snapshot(later, "5m"); err == nil {
		t.Error("unknown window accepted")
	}
}

func TestLookup(t *testing.T) {
	for _, s := range Specs {
		if got, ok := Lookup(s.Name); !ok || got != s {
			t.Errorf("lookup %s: %+v %v", s.Name, got, ok)
		}
		if s.Length%s.Slot != 0 || s.Slot%Specs[0].Slot != 0 {
			t.Errorf("%s: slot %v does not tile", s.Name, s.Slot)
		}
	}
	if _, ok := Lookup("1h"); ok {
		t.Error("1h found")
	}
}
