package pairing

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The queue against a sorted slice: random inserts (nearly in order, as
// exchanges arrive) and cuts of random decided nodes from a random front
// part, through every path of makeRoom and the shrink after a burst.
func TestQueueKeepsStartOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	var q queue
	var model []uint64 // starts, sorted
	clock := uint64(0)
	grown, shrunk := 0, 0
	for step := 0; step < 20000; step++ {
		// Bursts of inserts now and then, so that the array grows past
		// retain and later shrinks.
		inserts := rng.IntN(8)
		if step%5000 == 0 {
			inserts = 3 * retain
		}
		for range inserts {
			clock += uint64(rng.IntN(10))
			start := clock - min(clock, uint64(rng.IntN(50))) // up to 50 back
			q.insert(&node{x: Exchange{RequestStart: start}})
			i, _ := slices.BinarySearchFunc(model, start, func(a, b uint64) int {
				if a <= b {
					return -1
				}
				return 1
			})
			model = slices.Insert(model, i, start)
		}
		// Decide random nodes of a random front part.
		front := rng.IntN(q.len() + 1)
		if step%5000 == 2500 {
			front = q.len() // after the burst: almost everything goes
		}
		done := make([]bool, front)
		var kept []uint64
		for i := range done {
			done[i] = rng.IntN(4) != 0
			if !done[i] {
				kept = append(kept, model[i])
			}
		}
		q.cut(done)
		model = append(kept, model[front:]...)

		got := make([]uint64, 0, q.len())
		for _, n := range q.pending() {
			got = append(got, n.x.RequestStart)
		}
		if !slices.Equal(got, model) {
			t.Fatalf("step %d: queue %v\nwant %v", step, got, model)
		}
		if cap(q.buf) > retain && cap(q.buf) > 8*q.len() {
			t.Fatalf("step %d: an array of %d nodes kept for %d pending", step, cap(q.buf), q.len())
		}
		if cap(q.buf) < grown {
			shrunk++
		}
		grown = cap(q.buf)
	}
	if shrunk == 0 {
		t.Error("the array never shrank after a burst")
	}
}
