package sampler

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
)

// gateLog records the states set, with the time (ms since t0) of the tick
// that set them.
type gateLog struct {
	now   *time.Time
	t0    time.Time
	moves []string
}

func (g *gateLog) SetGate(s bpf.Gate) error {
	g.moves = append(g.moves, s.String()+"@"+g.now.Sub(g.t0).String())
	return nil
}

// newTestSampler starts a sampler at time 0 with a gate that logs its moves.
func newTestSampler(t *testing.T, cfg Config) (*Sampler, *gateLog, *time.Time) {
	t.Helper()
	now := time.Unix(0, 0)
	g := &gateLog{now: &now, t0: now}
	s, err := New(cfg, g, now)
	if err != nil {
		t.Fatal(err)
	}
	return s, g, &now
}

// run ticks every 10ms for d, with outer exchanges arriving at rate per
// second while the gate is open.
func run(t *testing.T, s *Sampler, now *time.Time, seen *uint64, d time.Duration, rate float64) {
	t.Helper()
	runTicking(t, s, now, seen, d, rate, 10*time.Millisecond)
}

// runTicking is run with ticks every step.
func runTicking(t *testing.T, s *Sampler, now *time.Time, seen *uint64, d time.Duration, rate float64, step time.Duration) {
	t.Helper()
	end := now.Add(d)
	for now.Before(end) {
		*now = now.Add(step)
		if s.state == bpf.GateOpen {
			*seen += uint64(rate * step.Seconds())
		}
		if err := s.Tick(*now, *seen); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOffNeverMoves(t *testing.T) {
	s, g, now := newTestSampler(t, Config{})
	var seen uint64
	run(t, s, now, &seen, 5*time.Second, 1e6)
	if !s.Next().IsZero() || len(g.moves) != 0 || s.NotOpen(*now) != 0 || s.Fraction() != 1 {
		t.Errorf("sampling off moved the gate: %v, not open %v", g.moves, s.NotOpen(*now))
	}
}

func TestBelowThresholdStaysOpen(t *testing.T) {
	s, g, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	// 6000 rps would sample at 0.83: above maxCycledFraction, so open.
	run(t, s, now, &seen, 5*time.Second, 6000)
	if len(g.moves) != 0 || s.Fraction() != 1 {
		t.Errorf("moves %v fraction %v, want none and 1", g.moves, s.Fraction())
	}
}

// At four times the threshold the gate is open a quarter of each period,
// passing through inner-only on both sides of the closed part. The first
// check of the rate, an eighth of a period in, starts the cycle with a
// period that began at the check window's start, the gate having been open
// since; when the rate falls the gate stays open again.
func TestCyclesAboveThreshold(t *testing.T) {
	s, g, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	run(t, s, now, &seen, 2000*time.Millisecond, 20000)
	want := []string{
		"inner-only@250ms", "closed@350ms", "inner-only@900ms", "open@1s",
		"inner-only@1.25s", "closed@1.35s", "inner-only@1.9s", "open@2s",
	}
	if !slices.Equal(g.moves, want) {
		t.Fatalf("moves %v, want %v", g.moves, want)
	}
	if d := s.NotOpen(*now); d != 1500*time.Millisecond {
		t.Errorf("not open %v over two periods, want 1.5s", d)
	}
	// The rate seen while open stays 20000/s: still a quarter.
	if s.Fraction() != 0.25 {
		t.Errorf("fraction %v, want 0.25", s.Fraction())
	}
	g.moves = nil
	run(t, s, now, &seen, 3*time.Second, 2000)
	if s.Fraction() != 1 || len(g.moves) != 4 || g.moves[3] != "open@3s" {
		t.Errorf("after the rate fell: fraction %v moves %v, want 1 and open from 3s on (the period from 2s was decided before the fall)", s.Fraction(), g.moves)
	}
}

func TestMinFraction(t *testing.T) {
	s, _, now := newTestSampler(t, Config{AboveRPS: 100, Period: time.Second})
	var seen uint64
	run(t, s, now, &seen, 1*time.Second, 1e6)
	if s.Fraction() != 1.0/16 {
		t.Errorf("fraction %v at 10000x the threshold, want the minimum 1/16", s.Fraction())
	}
}

func TestValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"negative":     {AboveRPS: -1},
		"min fraction": {AboveRPS: 1, MinFraction: 0.9},
		"short period": {AboveRPS: 1, Period: 200 * time.Millisecond, Settle: 100 * time.Millisecond},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, c)
		}
	}
	if err := (Config{AboveRPS: 5000}).Validate(); err != nil {
		t.Error(err)
	}
}

// A step from below the threshold to four times it, in the middle of a
// period the gate spends open, starts the cycle at the next check of the
// rate (an eighth of a period later), not at the period's end. That check's
// window began below the new rate, so the period it starts is decided on a
// mixed rate; the check after, within the open part, sees the new rate alone
// and ends the open part at a quarter of the period, the new rate's
// fraction, as are the periods after.
func TestStepUpSampledAtNextCheck(t *testing.T) {
	s, g, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	run(t, s, now, &seen, 1600*time.Millisecond, 2000)
	if len(g.moves) != 0 {
		t.Fatalf("moves %v below the threshold", g.moves)
	}
	run(t, s, now, &seen, 1400*time.Millisecond, 20000)
	// The check at 1.65 s sees 2000 rps then 20000 since the one at
	// 1.52 s: a period starts at 1.52 s, open 0.56 of it (to 2.08 s); the
	// check at 1.78 s sees 20000 rps alone: open to 1.77 s, so the gate
	// leaves open at once.
	want := []string{"inner-only@1.78s", "closed@1.88s", "inner-only@2.42s", "open@2.52s", "inner-only@2.77s", "closed@2.87s"}
	if !slices.Equal(g.moves, want) || s.Fraction() != 0.25 {
		t.Errorf("moves %v fraction %v, want %v and 0.25", g.moves, s.Fraction(), want)
	}
}

// A rate that falls during the open part of a cycle does not lengthen it:
// the next period is decided on it, at the period's end.
func TestStepDownWaitsForPeriodEnd(t *testing.T) {
	s, g, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	run(t, s, now, &seen, 1050*time.Millisecond, 20000) // a period from 1 s, open a quarter
	g.moves = nil
	run(t, s, now, &seen, 1200*time.Millisecond, 2000)
	want := []string{"inner-only@1.25s", "closed@1.35s", "inner-only@1.9s", "open@2s"}
	if !slices.Equal(g.moves, want) || s.Fraction() != 1 {
		t.Errorf("moves %v fraction %v, want %v and 1", g.moves, s.Fraction(), want)
	}
}

// Estimated stands for every exchange, followed or not: at a steady rate
// the exchanges of each sampled period count 1/f each; a burst in a quiet
// time is estimated as the burst, where the followed exchanges over the
// time open would spread it over the quiet time too, when the gate stays
// open (a third of the truth here).
func TestEstimated(t *testing.T) {
	s, _, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	run(t, s, now, &seen, 10*time.Second, 20000)
	if got, want := s.Estimated(seen), 200000.0; math.Abs(got-want) > want/100 {
		t.Errorf("10 s at 20000 rps: estimated %.0f, want %.0f within 1%% (followed %d)", got, want, seen)
	}

	s, _, now = newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	seen = 0
	run(t, s, now, &seen, 5*time.Second, 0)
	run(t, s, now, &seen, 3*time.Second, 20000)
	run(t, s, now, &seen, 5*time.Second, 0)
	truth := 60000.0
	if got := s.Estimated(seen); math.Abs(got-truth) > truth/10 {
		t.Errorf("3 s at 20000 rps in 13 s: estimated %.0f, want %.0f within 10%% (followed %d)", got, truth, seen)
	}
	overOpen := float64(seen) / (13*time.Second - s.NotOpen(*now)).Seconds() * 13
	t.Logf("burst: estimated %.0f, followed %d, followed over the time open %.0f, truth %.0f", s.Estimated(seen), seen, overOpen, truth)
}

// The loop wakes a little after an open part's planned end, so the gate
// stays open a little longer than planned: the exchanges are weighed by
// the share it was actually open. Ticking every 30 ms, the open parts of
// 250 ms planned last 270 ms; weighed by the plan, the estimate came out
// 8% high.
func TestEstimatedByTheShareOpen(t *testing.T) {
	s, _, now := newTestSampler(t, Config{AboveRPS: 5000, Period: time.Second})
	var seen uint64
	runTicking(t, s, now, &seen, 9990*time.Millisecond, 20000, 30*time.Millisecond)
	truth := 20000 * now.Sub(time.Unix(0, 0)).Seconds()
	if got := s.Estimated(seen); math.Abs(got-truth) > truth/100 {
		t.Errorf("estimated %.0f, want %.0f within 1%% (followed %d)", got, truth, seen)
	}
}
