// Package window keeps rolling windows (10 s, 1 min, 10 min) of mergeable
// aggregates in bounded memory.
//
// Time is cut into slots from an origin (the probe's start), measured on
// the monotonic clock so that wall-clock steps cannot reorder slots. Each
// window is a tier of slots: 10 s of 1 s slots, 1 min of 10 s slots, 10 min
// of 1 min slots. Values go into the current 1 s slot only; when a 1 s slot
// ends it is merged into the current slot of the coarser tiers. A window is
// reported over complete slots only, so its length is exact and a rate is
// count / length; it ends at the start of the current slot of its tier.
//
// Memory: 11 + 7 + 11 aggregates, whatever the traffic.
package window

import (
	"fmt"
	"sync"
	"time"
)

// Aggregate is what a slot holds. T is the aggregate's own (pointer)
// type: Merge adds another aggregate into the receiver, Reset empties it.
type Aggregate[T any] interface {
	Merge(other T)
	Reset()
}

// Spec describes one window.
type Spec struct {
	Name   string        // "10s", "1m", "10m": the snapshot API's names
	Length time.Duration // the window
	Slot   time.Duration // its resolution: the window ends on a slot boundary
}

// Specs are the windows the probe keeps. The first one's Slot is the base
// slot; every Slot is a multiple of it and divides its Length.
var Specs = []Spec{
	{Name: "10s", Length: 10 * time.Second, Slot: time.Second},
	{Name: "1m", Length: time.Minute, Slot: 10 * time.Second},
	{Name: "10m", Length: 10 * time.Minute, Slot: time.Minute},
}

// Names lists the window names in order, for error messages.
func Names() []string {
	names := make([]string, len(Specs))
	for i, s := range Specs {
		names[i] = s.Name
	}
	return names
}

// Lookup returns the spec called name.
func Lookup(name string) (Spec, bool) {
	for _, s := range Specs {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

type slot[T any] struct {
	index int64 // slot number since the origin; -1 when unused
	agg   T
}

type tier[T Aggregate[T]] struct {
	spec  Spec
	slots []slot[T] // ring indexed by index % len
}

// Rolling holds the tiers. It is safe for concurrent use.
type Rolling[T Aggregate[T]] struct {
	mu     sync.Mutex
	origin time.Time
	newT   func() T
	tiers  []tier[T]
	// closed is the base slot index up to which (exclusive) base slots
	// have been merged into the coarser tiers.
	closed int64
}

// New starts the windows at origin. newT returns an empty aggregate.
func New[T Aggregate[T]](origin time.Time, newT func() T) *Rolling[T] {
	r := &Rolling[T]{origin: origin, newT: newT}
	for _, s := range Specs {
		// Length/Slot complete slots plus the one being filled.
		n := int(s.Length/s.Slot) + 1
		t := tier[T]{spec: s, slots: make([]slot[T], n)}
		for i := range t.slots {
			t.slots[i] = slot[T]{index: -1, agg: newT()}
		}
		r.tiers = append(r.tiers, t)
	}
	return r
}

func (r *Rolling[T]) indexAt(now time.Time, slotLen time.Duration) int64 {
	d := now.Sub(r.origin)
	if d < 0 {
		return 0
	}
	return int64(d / slotLen)
}

// get returns tier t's slot number idx, recycling the ring entry.
func (t *tier[T]) get(idx int64) T {
	s := &t.slots[idx%int64(len(t.slots))]
	if s.index != idx {
		s.agg.Reset()
		s.index = idx
	}
	return s.agg
}

// advance merges every base slot that ended by now into the coarser tiers.
// It visits the ring rather than the slot numbers: after a long pause the
// ring still holds the slots recorded before it, and those must not be
// skipped.
func (r *Rolling[T]) advance(now time.Time) {
	base := &r.tiers[0]
	cur := r.indexAt(now, base.spec.Slot)
	if cur <= r.closed {
		return
	}
	for i := range base.slots {
		s := &base.slots[i]
		if s.index < r.closed || s.index >= cur {
			continue // merged already, unused (-1), or still being filled
		}
		start := time.Duration(s.index) * base.spec.Slot
		for j := 1; j < len(r.tiers); j++ {
			t := &r.tiers[j]
			idx := int64(start / t.spec.Slot)
			// A coarse slot already recycled for a later time cannot
			// take it: that part of the window has expired anyway.
			if cs := &t.slots[idx%int64(len(t.slots))]; cs.index > idx {
				continue
			}
			t.get(idx).Merge(s.agg)
		}
	}
	r.closed = cur
}

// Update calls fn with the current base slot's aggregate. now should not
// go backwards; a time before a slot already closed counts in the oldest
// open slot, so nothing is lost.
func (r *Rolling[T]) Update(now time.Time, fn func(T)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	fn(r.tiers[0].get(max(r.indexAt(now, r.tiers[0].spec.Slot), r.closed)))
}

// Window is a merged window.
type Window[T any] struct {
	Spec       Spec
	Start, End time.Time
	// Covered is End - Start: less than Spec.Length while the probe has
	// run for less than the window.
	Covered time.Duration
	Agg     T
}

// Snapshot merges the complete slots of the window called name into a new
// aggregate: the window ends at the start of the current slot of its tier.
func (r *Rolling[T]) Snapshot(now time.Time, name string) (Window[T], error) {
	ti := -1
	for i := range r.tiers {
		if r.tiers[i].spec.Name == name {
			ti = i
		}
	}
	if ti < 0 {
		return Window[T]{}, fmt.Errorf("unknown window %q", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	t := &r.tiers[ti]
	end := r.indexAt(now, t.spec.Slot) // exclusive
	n := int64(t.spec.Length / t.spec.Slot)
	first := max(end-n, 0)
	out := r.newT()
	for idx := first; idx < end; idx++ {
		if s := &t.slots[idx%int64(len(t.slots))]; s.index == idx {
			out.Merge(s.agg)
		}
	}
	w := Window[T]{
		Spec:  t.spec,
		Start: r.origin.Add(time.Duration(first) * t.spec.Slot),
		End:   r.origin.Add(time.Duration(end) * t.spec.Slot),
		Agg:   out,
	}
	w.Covered = w.End.Sub(w.Start)
	return w, nil
}
