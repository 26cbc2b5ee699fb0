// Package sampler bounds the probe's cost at high request rates. Below
// Config.AboveRPS the kernel programs follow every exchange. Above it they
// follow exchanges during part of each period only, so that the probe's CPU
// stops growing with the rate: per request, following costs ~3 us of CPU
// (TC programs and the agent), 4.7% of the busy CPU of a trivial workload
// at its maximum throughput (docs/benchmarks.md), while a closed gate
// turns each segment away after parsing.
//
// A period with a fraction f below 1 runs through the gate's states in
// order: open for f of the period, inner-only for Settle, closed, then
// inner-only for Settle again. The first inner-only part lets the outer
// exchanges started while open end (and their inner ones be followed to
// the end); the second lets the inner connections be followed again
// before an outer exchange needs them. What the gate still cuts is counted
// by the kernel (bpf.ExchangeStats.GateCut).
//
// Rates and CPU per request are then estimates: the requests followed,
// divided by the time the gate was open. The snapshot says so
// (probe/recorder).
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
	next      time.Time // when the state changes next; zero: no cycle
	openUntil time.Time // end of the current period's open part
	periodEnd time.Time

	// The rate estimate: outer exchanges seen over the time the gate
	// was open since the previous decision.
	lastSeen  uint64
	openSince time.Duration // open time since lastSeen
	fraction  float64

	closed     time.Duration // total time not open, up to closedAt
	closedFrom time.Time     // start of the current not-open stretch; zero while open
	openFrom   time.Time     // start of the current open stretch; zero while not open
}

// New starts with the gate open, as the kernel programs load.
func New(cfg Config, g Gate, now time.Time) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	s := &Sampler{cfg: cfg, gate: g, state: bpf.GateOpen, fraction: 1, openFrom: now}
	if cfg.AboveRPS > 0 {
		s.periodEnd = now.Add(cfg.Period)
		s.next = s.periodEnd
		s.openUntil = s.periodEnd
	}
	return s, nil
}

// Next is when Tick has work; zero when it never has (sampling off).
func (s *Sampler) Next() time.Time { return s.next }

// Fraction is the share of the current period the gate is open.
func (s *Sampler) Fraction() float64 { return s.fraction }

// NotOpen is the total time the gate has not been open (outer exchanges
// could not start) since New, up to now.
func (s *Sampler) NotOpen(now time.Time) time.Duration {
	if !s.closedFrom.IsZero() {
		return s.closed + now.Sub(s.closedFrom)
	}
	return s.closed
}

// Tick moves the gate if its time has come. outerSeen is the running count
// of outer exchanges the probe has received (inbound requests and outbound
// calls), from which the next period's fraction is decided.
func (s *Sampler) Tick(now time.Time, outerSeen uint64) error {
	if s.next.IsZero() || now.Before(s.next) {
		return nil
	}
	switch {
	case !now.Before(s.periodEnd):
		// A new period: decide its fraction from the rate while open.
		if !s.openFrom.IsZero() {
			s.openSince += now.Sub(s.openFrom)
			s.openFrom = now
		}
		s.fraction = s.decide(outerSeen)
		s.periodEnd = now.Add(s.cfg.Period)
		if s.fraction >= 1 {
			s.openUntil = s.periodEnd
			s.next = s.periodEnd
			return s.set(now, bpf.GateOpen)
		}
		s.openUntil = now.Add(time.Duration(s.fraction * float64(s.cfg.Period)))
		s.next = s.openUntil
		return s.set(now, bpf.GateOpen)
	case s.state == bpf.GateOpen:
		s.next = now.Add(s.cfg.Settle)
		return s.set(now, bpf.GateInnerOnly)
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

// decide returns the next period's open fraction: AboveRPS over the rate
// seen while the gate was open, within [MinFraction, 1], and 1 when the
// cycle would keep the gate open for most of the period anyway.
func (s *Sampler) decide(outerSeen uint64) float64 {
	seen := outerSeen - s.lastSeen
	open := s.openSince
	// Exchanges reach the probe up to a scan interval after they end,
	// so a short open time says little: keep the estimate going until
	// the gate has been open a tenth of a period.
	if open < s.cfg.Period/10 {
		return s.fraction
	}
	s.lastSeen, s.openSince = outerSeen, 0
	rate := float64(seen) / open.Seconds()
	if rate <= s.cfg.AboveRPS {
		return 1
	}
	f := max(s.cfg.AboveRPS/rate, s.cfg.MinFraction)
	if f > maxCycledFraction {
		return 1
	}
	return f
}

// set moves the gate and keeps the open and not-open time.
func (s *Sampler) set(now time.Time, g bpf.Gate) error {
	if g == s.state {
		return nil
	}
	if err := s.gate.SetGate(g); err != nil {
		return err
	}
	wasOpen, isOpen := s.state == bpf.GateOpen, g == bpf.GateOpen
	switch {
	case wasOpen && !isOpen:
		s.openSince += now.Sub(s.openFrom)
		s.openFrom, s.closedFrom = time.Time{}, now
	case !wasOpen && isOpen:
		s.closed += now.Sub(s.closedFrom)
		s.closedFrom, s.openFrom = time.Time{}, now
	}
	s.state = g
	return nil
}
