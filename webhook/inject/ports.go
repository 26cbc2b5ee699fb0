package inject

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// portRange is an inclusive range of TCP ports; a single port has lo == hi.
type portRange struct{ lo, hi int32 }

// portSet is a canonical set of ports: sorted, non-overlapping, adjacent ranges merged. Its
// String form ("25,3306-3309") is what the probe is given, so the same set always yields the same
// environment and the same configuration hash.
type portSet []portRange

// parsePortList parses a comma-separated list of ports and ranges, the syntax of both Istio's
// traffic.sidecar.istio.io/*Ports annotations and Linkerd's config.linkerd.io/skip-*-ports (Istio
// accepts only single ports, Linkerd also ranges; accepting ranges for both is a superset).
// Blank entries are ignored. Invalid entries are dropped and returned in bad, so one typo does
// not lose the rest of the list and the user can be warned.
func parsePortList(s string) (set portSet, bad []string) {
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		lo, hi, ok := parsePortToken(tok)
		if !ok {
			bad = append(bad, tok)
			continue
		}
		set = append(set, portRange{lo, hi})
	}
	return set.normalize(), bad
}

func parsePortToken(tok string) (lo, hi int32, ok bool) {
	a, b, isRange := strings.Cut(tok, "-")
	lo, ok = parsePort(a)
	if !ok {
		return 0, 0, false
	}
	if !isRange {
		return lo, lo, true
	}
	hi, ok = parsePort(b)
	if !ok || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

func parsePort(s string) (int32, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return int32(n), true
}

// add returns the set with the given single ports added.
func (s portSet) add(ports ...int32) portSet {
	out := append(portSet(nil), s...)
	for _, p := range ports {
		if p > 0 {
			out = append(out, portRange{p, p})
		}
	}
	return out.normalize()
}

func (s portSet) contains(p int32) bool {
	for _, r := range s {
		if r.lo <= p && p <= r.hi {
			return true
		}
	}
	return false
}

func (s portSet) normalize() portSet {
	if len(s) < 2 {
		return s
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].lo != s[j].lo {
			return s[i].lo < s[j].lo
		}
		return s[i].hi < s[j].hi
	})
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s portSet) String() string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(r.lo)))
		if r.hi != r.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(r.hi)))
		}
	}
	return b.String()
}

// portListWarning words the warning for invalid entries of an annotation.
func portListWarning(source string, bad []string) string {
	shown := make([]string, 0, 3)
	for _, t := range bad[:min(len(bad), 3)] {
		shown = append(shown, truncate(t, 16))
	}
	more := ""
	if len(bad) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(bad)-len(shown))
	}
	return fmt.Sprintf("kubectl-mesh: ignored invalid ports %q%s in %s", shown, more, source)
}
