// Package sampler bounds the probe's cost at high request rates. Below
// Config.AboveRPS the kernel programs follow every exchange. Above it they
// follow exchanges during part of each period only, so that the probe's CPU
// grows far more slowly with the rate: per request, following costs ~3 us
// of CPU (TC programs, the agent, the scheduler hook), 4.7% of the busy
// CPU of a trivial workload at its maximum throughput, while a closed gate
// leaves the programs of lo and eth0 ingress detached and eth0 egress's
// turning each segment away after parsing (bpf.ExchangeProbe.SetGate;
// docs/benchmarks.md, sessions 14 and 15).
//
// A period with a fraction f below 1 runs through the gate's states in
// order: open for f of the period, inner-only for Settle, closed, then
// inner-only for Settle again. The first inner-only part lets the outer
// exchanges started while open end (and their inner ones be followed to
// the end); the second lets the inner connections be followed again
// before an outer exchange needs them. What the gate still cuts is counted
// by the kernel (bpf.ExchangeStats.GateCut).
//
// The rate is checked every eighth of a period while the gate is open, so
// that a step up is sampled soon: the open part it would take was most of
// what a short burst cost (docs/benchmarks.md, session 16).
//
// Rates and CPU per request are then estimates: each request followed
// stands for 1/f requests, f the share of its period the gate was open
// (Sampler.Estimated). The snapshot says so (probe/recorder).
package sampler

import (
	"fmt"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
)

// Config sets when and how much the probe samples.
type Config struct {
	// AboveRPS: the outer exchanges per second (inbound requests plus
	// outbound calls) above which the gate starts cycling; 0 follows
	// every exchange at any rate.
	AboveRPS float64
	// Period of one cycle. Default 2s: one settle time on each side of
	// the closed part is then a tenth of it (at 1s, costs at maximum
	// throughput were 5-10% higher, docs/benchmarks.md).
	Period time.Duration
	// Settle: each inner-only part. Outer exchanges longer than this at
	// rates above AboveRPS are cut when the gate closes. Default 100ms.
	Settle time.Duration
	// MinFraction: the gate is open at least this fraction of a period,
	// whatever the rate. Default 1/16.
	MinFraction float64
}

// maxCycledFraction: above this share of a period, the closed part would
// be shorter than a settle time and the cycle would save little; the gate
// stays open instead.
const maxCycledFraction = 0.7

func (c *Config) defaults() {
	if c.Period <= 0 {
		c.Period = 2 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 100 * time.Millisecond
	}
	if c.MinFraction <= 0 {
		c.MinFraction = 1.0 / 16
	}
}

// Validate reports a configuration that cannot cycle.
func (c Config) Validate() error {
	c.defaults()
	switch {
	case c.AboveRPS < 0:
		return fmt.Errorf("sampling threshold %v rps is negative: use 0 to follow every exchange", c.AboveRPS)
	case c.MinFraction > maxCycledFraction:
		return fmt.Errorf("minimum sampled fraction %v is above %v, where the gate stays open anyway", c.MinFraction, maxCycledFraction)
	case float64(c.Period)*(1-c.MinFraction) < float64(3*c.Settle):
		return fmt.Errorf("sampling period %v too short for two settle times of %v and a closed part", c.Period, c.Settle)
	}
	return nil
}

// Gate is what the sampler moves: bpf.ExchangeProbe in the probe.
type Gate interface {
	SetGate(bpf.Gate) error
}

// Sampler drives the gate from the probe's loop: Tick at or after Next.
// Not safe for concurrent use.
type Sampler struct {
	cfg  Config
	gate Gate

	state     bpf.Gate
	next      time.Time // when Tick has work next; zero: sampling off
	periodEnd time.Time
	openEnd   time.Time // while cycling: when the period's open part ends

	// The rate estimate: outer exchanges seen over the time the gate
	// was open since the previous decision.
	lastSeen  uint64
	openSince time.Duration // open time since lastSeen
	fraction  float64
	// While the gate is open, the rate is also checked over each eighth
	// of a period: the count and time of the last check.
	checkSeen uint64
	checkAt   time.Time

	// The outer exchanges the ones received stand for (Estimated): each
	// counts 1/share, share the part of the period it was followed in
	// that the gate was open (fraction, until the open part has ended).
	estimated  float64
	share      float64
	estSeen    uint64 // received exchanges already in estimated
	periodSeen uint64 // received when the current period started

	closed time.Duration // total time not open, before the current stretch
	// stretchFrom: since when the gate has been open (counted in
	// openSince up to here), or not open (not yet in closed).
	stretchFrom time.Time
}

// New starts with the gate open, as the kernel programs load.
func New(cfg Config, g Gate, now time.Time) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	s := &Sampler{cfg: cfg, gate: g, state: bpf.GateOpen, fraction: 1, share: 1, stretchFrom: now, checkAt: now}
	if cfg.AboveRPS > 0 {
		s.periodEnd = now.Add(cfg.Period)
		s.next = now.Add(cfg.Period / checksPerPeriod)
	}
	return s, nil
}

// AboveRPS is the threshold the sampler was made with. Safe to call from
// any goroutine: the configuration does not change.
func (s *Sampler) AboveRPS() float64 { return s.cfg.AboveRPS }

// Next is when Tick has work; zero when it never has (sampling off).
func (s *Sampler) Next() time.Time { return s.next }

// Fraction is the share of the current period the gate is open.
func (s *Sampler) Fraction() float64 { return s.fraction }

// NotOpen is the total time the gate has not been open (outer exchanges
// could not start) since New, up to now.
func (s *Sampler) NotOpen(now time.Time) time.Duration {
	if s.state != bpf.GateOpen {
		return s.closed + now.Sub(s.stretchFrom)
	}
	return s.closed
}

// checksPerPeriod: while the gate is open, the rate is checked this many
// times a period, so that a burst above the threshold starts the cycle,
// or shortens the open part of one, within an eighth of a period rather
// than at the period's end.
const checksPerPeriod = 8

// Estimated is how many outer exchanges the outerSeen received so far
// stand for: those followed while the gate was open all period count one
// each, those of a sampled period 1/f each, f the share of that period the
// gate was open. Rates estimated from it hold across a window in which
// the rate changed, such as a burst in a quiet minute; the followed
// exchanges over the time open would weigh the quiet time, when the gate
// stays open, as much as the burst's open parts.
//
// An exchange is weighed by the period it is received in: it ends up to a
// settle time after the open part in which it started, and reaches the
// probe within a scan interval, both well inside the period's closed part.
func (s *Sampler) Estimated(outerSeen uint64) float64 {
	return s.estimated + float64(outerSeen-s.estSeen)/s.share
}

// weigh adds the exchanges received since the last call to the estimate,
// at the current period's weight.
func (s *Sampler) weigh(outerSeen uint64) {
	s.estimated, s.estSeen = s.Estimated(outerSeen), outerSeen
}

// reweigh gives the exchanges received since fromSeen (already weighed)
// the weight of the share f instead of the current one, and weighs those
// to come by it.
func (s *Sampler) reweigh(fromSeen uint64, f float64) {
	s.estimated += float64(s.estSeen-fromSeen) * (1/f - 1/s.share)
	s.share = f
}

// Tick moves the gate if its time has come. outerSeen is the running count
// of outer exchanges the probe has received (inbound requests and outbound
// calls), from which the next period's fraction is decided.
func (s *Sampler) Tick(now time.Time, outerSeen uint64) error {
	s.weigh(outerSeen)
	if s.next.IsZero() || now.Before(s.next) {
		return nil
	}
	switch {
	case !now.Before(s.periodEnd):
		return s.startPeriod(now, outerSeen, now, outerSeen, s.decide(now, outerSeen))
	case s.fraction >= 1:
		// Open all period: the rate since the previous check alone,
		// not diluted by a quieter start of the period.
		if f, ok := s.fractionFor(outerSeen-s.checkSeen, now.Sub(s.checkAt)); ok && f < 1 {
			s.foldOpen(now)
			s.lastSeen, s.openSince = outerSeen, 0
			// The gate has been open at this rate since the last
			// check: that counts toward the new period's open part.
			return s.startPeriod(s.checkAt, s.checkSeen, now, outerSeen, f)
		}
		s.checkSeen, s.checkAt = outerSeen, now
		s.next = s.nextCheck(now, s.periodEnd)
		return nil
	case s.state == bpf.GateOpen && now.Before(s.openEnd):
		// A check within the open part: a rate above the one this
		// period was decided on (a step up seen first through a check
		// window that began below it) ends the part sooner, at the new
		// fraction's share of the period or now. A lower rate waits for
		// the period's end, as the closed part's floor costs little.
		if f, ok := s.fractionFor(outerSeen-s.checkSeen, now.Sub(s.checkAt)); ok && f < s.fraction {
			s.reweigh(s.periodSeen, f)
			s.fraction = f
			s.openEnd = s.openPartEnd(f)
		}
		s.checkSeen, s.checkAt = outerSeen, now
		if now.Before(s.openEnd) {
			s.next = s.nextCheck(now, s.openEnd)
			return nil
		}
		fallthrough
	case s.state == bpf.GateOpen:
		return s.endOpenPart(now)
	case s.state == bpf.GateInnerOnly && now.Before(s.periodEnd.Add(-s.cfg.Settle)):
		s.next = s.periodEnd.Add(-s.cfg.Settle)
		return s.set(now, bpf.GateClosed)
	case s.state == bpf.GateClosed:
		s.next = s.periodEnd
		return s.set(now, bpf.GateInnerOnly)
	default: // inner-only after closed: the period ends at next
		s.next = s.periodEnd
		return nil
	}
}

// startPeriod starts a period at from, now or (the gate open since) the
// start of the check that found the rate, with the gate open for the
// fraction f of it; fromSeen exchanges had been received by then.
func (s *Sampler) startPeriod(from time.Time, fromSeen uint64, now time.Time, outerSeen uint64, f float64) error {
	s.reweigh(fromSeen, f) // those received since from belong to this period
	s.fraction, s.periodSeen = f, fromSeen
	s.periodEnd = from.Add(s.cfg.Period)
	s.checkSeen, s.checkAt = outerSeen, now
	s.openEnd = s.periodEnd
	if f < 1 {
		s.openEnd = s.openPartEnd(f)
		if !now.Before(s.openEnd) {
			return s.endOpenPart(now) // open for the period's share already
		}
	}
	s.next = s.nextCheck(now, s.openEnd)
	return s.set(now, bpf.GateOpen)
}

// endOpenPart ends the open part of the current period now, and weighs the
// period's exchanges by the share it was open: a little more than planned,
// the loop waking after openEnd (at 500 rps with a fifth open, the planned
// share overestimated the rate by 6-8%).
func (s *Sampler) endOpenPart(now time.Time) error {
	open := now.Sub(s.periodStart())
	s.reweigh(s.periodSeen, min(max(float64(open)/float64(s.cfg.Period), s.fraction), 1))
	s.next = now.Add(s.cfg.Settle)
	return s.set(now, bpf.GateInnerOnly)
}

// periodStart is when the current period began.
func (s *Sampler) periodStart() time.Time { return s.periodEnd.Add(-s.cfg.Period) }

// openPartEnd is when the current period's open part ends at the fraction f.
func (s *Sampler) openPartEnd(f float64) time.Time {
	return s.periodStart().Add(time.Duration(f * float64(s.cfg.Period)))
}

// nextCheck is the next check of the rate from now, or end if sooner.
func (s *Sampler) nextCheck(now, end time.Time) time.Time {
	if check := now.Add(s.cfg.Period / checksPerPeriod); check.Before(end) {
		return check
	}
	return end
}

// foldOpen adds the open stretch so far to openSince.
func (s *Sampler) foldOpen(now time.Time) {
	if s.state == bpf.GateOpen {
		s.openSince += now.Sub(s.stretchFrom)
		s.stretchFrom = now
	}
}

// decide returns the next period's open fraction from the rate seen while
// the gate was open since the previous decision, and starts the next
// estimate; with too little open time to tell, the fraction stays.
func (s *Sampler) decide(now time.Time, outerSeen uint64) float64 {
	s.foldOpen(now)
	f, ok := s.fractionFor(outerSeen-s.lastSeen, s.openSince)
	if !ok {
		return s.fraction
	}
	s.lastSeen, s.openSince = outerSeen, 0
	return f
}

// fractionFor is AboveRPS over the rate of seen exchanges in open time,
// within [MinFraction, 1], and 1 when the cycle would keep the gate open
// for most of the period anyway. ok is false for less than a tenth of a
// period: exchanges reach the probe up to a scan interval after they end,
// so a shorter time says little.
func (s *Sampler) fractionFor(seen uint64, open time.Duration) (f float64, ok bool) {
	if open < s.cfg.Period/10 {
		return 0, false
	}
	rate := float64(seen) / open.Seconds()
	if rate <= s.cfg.AboveRPS {
		return 1, true
	}
	f = max(s.cfg.AboveRPS/rate, s.cfg.MinFraction)
	if f > maxCycledFraction {
		return 1, true
	}
	return f, true
}

// set moves the gate and keeps the open and not-open time.
func (s *Sampler) set(now time.Time, g bpf.Gate) error {
	if g == s.state {
		return nil
	}
	if err := s.gate.SetGate(g); err != nil {
		return err
	}
	if wasOpen, isOpen := s.state == bpf.GateOpen, g == bpf.GateOpen; wasOpen != isOpen {
		if wasOpen {
			s.openSince += now.Sub(s.stretchFrom)
		} else {
			s.closed += now.Sub(s.stretchFrom)
		}
		s.stretchFrom = now
	}
	s.state = g
	return nil
}
