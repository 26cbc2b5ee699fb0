package smps

import (
	"fmt"
	"math"
	"mime"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"fortio.org/duration"
	"golang.org/x/net/http/httpguts"
)

// FieldError is one problem in a document, located by a path of JSON keys
// such as "result.latencies_ms.p90" or "test.clients[0].endpoint_urls[1]".
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// ValidationError lists every problem Validate found, in document order, so
// one run shows them all instead of one per fix-and-retry cycle.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Error()
	}
	return strings.Join(msgs, "; ")
}

// validator accumulates FieldErrors.
type validator struct {
	errs []FieldError
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.errs}
}

func field(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

func key(parent, k string) string { return fmt.Sprintf("%s[%q]", parent, k) }

// sortedKeys gives map checks a stable order, so the same document always
// yields the same error text.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtNum prints a number for a message: shortest exact form, with ".0" added
// to whole numbers so a latency reads "17.0", not "17".
func fmtNum(x float64) string {
	s := strconv.FormatFloat(x, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") { // not already fractional, exponent, NaN or Inf
		s += ".0"
	}
	return s
}

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

func (v *validator) smpVersion(path, s string) {
	switch {
	case strings.TrimSpace(s) == "":
		v.add(path, "required (this package writes %s)", Version)
	case !versionRE.MatchString(s):
		// Meshery has been seen writing placeholders here; a version that does
		// not look like one is almost certainly not a version.
		v.add(path, "%q is not a version of the form vMAJOR.MINOR.PATCH (this package writes %s)", s, Version)
	}
}

func (v *validator) required(path, s string) {
	if strings.TrimSpace(s) == "" {
		v.add(path, "required")
	}
}

func (v *validator) nonNegative(path string, n int64) {
	if n < 0 {
		v.add(path, "%d is negative", n)
	}
}

// finite reports NaN and ±Inf, which JSON cannot even represent; it returns
// false when it did.
func (v *validator) finite(path string, x float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		v.add(path, "%s is not a finite number", fmtNum(x))
		return false
	}
	return true
}

// finiteNonNegative returns false when it reported a problem.
func (v *validator) finiteNonNegative(path string, x float64) bool {
	if !v.finite(path, x) {
		return false
	}
	if x < 0 {
		v.add(path, "%s is negative", fmtNum(x))
		return false
	}
	return true
}

type namedValue struct {
	name string
	x    float64
}

// ordered checks a chain of statistics that must not decrease, e.g. min <= p50
// <= p90 <= p99 <= max. Comparing neighbours is enough to catch every
// inversion and names the pair that is out of order.
func (v *validator) ordered(parent string, chain []namedValue) {
	for i := 1; i < len(chain); i++ {
		if chain[i].x < chain[i-1].x {
			v.add(field(parent, chain[i].name), "%s is less than %s %s",
				fmtNum(chain[i].x), chain[i-1].name, fmtNum(chain[i-1].x))
		}
	}
}

// allFiniteNonNegative checks every value and reports whether all are fine, so
// order checks run only on numbers that mean something.
func (v *validator) allFiniteNonNegative(parent string, vals []namedValue) bool {
	ok := true
	for _, nv := range vals {
		if !v.finiteNonNegative(field(parent, nv.name), nv.x) {
			ok = false
		}
	}
	return ok
}

func (v *validator) absoluteURL(path, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		v.add(path, "%q is not a URL: %v", truncate(s, 80), unwrapURLError(err))
	case u.Scheme == "" || u.Host == "":
		v.add(path, "%q is not an absolute URL (scheme://host[:port]/...)", truncate(s, 80))
	}
}

func (v *validator) uriReference(path, s string) {
	if _, err := url.Parse(s); err != nil {
		v.add(path, "%q is not a URI reference: %v", truncate(s, 80), unwrapURLError(err))
	}
}

// unwrapURLError drops url.Error's "parse <input>:" prefix, which would repeat
// the input the message already quotes.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (v *validator) uuid(path, s string) {
	if s != "" && !uuidRE.MatchString(s) {
		v.add(path, "%q is not a UUID (8-4-4-4-12 hex digits)", truncate(s, 80))
	}
}

func (v *validator) timestamp(path string, ts *Timestamp) bool {
	if ts == nil {
		return false
	}
	if msg := ts.check(); msg != "" {
		v.add(path, "%s", msg)
		return false
	}
	return true
}

func (v *validator) document(path string, isNil bool) bool {
	if isNil {
		v.add(path, "document is nil")
		return false
	}
	return true
}

// Validate checks a PerformanceTestConfig. Paths start with "test", the key
// the Meshery test-config document uses for it.
func (c *PerformanceTestConfig) Validate() error {
	var v validator
	v.testConfig("test", c)
	return v.err()
}

func (v *validator) testConfig(p string, c *PerformanceTestConfig) {
	if !v.document(p, c == nil) {
		return
	}
	v.smpVersion(field(p, "smp_version"), c.SMPVersion)
	v.required(field(p, "id"), c.ID)
	for i := range c.Clients {
		v.client(index(field(p, "clients"), i), &c.Clients[i])
	}
	if c.Duration != "" {
		d, err := duration.Parse(c.Duration)
		switch {
		case err != nil:
			v.add(field(p, "duration"), "%q is not a duration such as \"30s\" or \"5m\": %v", truncate(c.Duration, 40), err)
		case d < 0:
			v.add(field(p, "duration"), "%q is negative", c.Duration)
		}
	}
}

func (v *validator) client(p string, c *Client) {
	if !c.Protocol.IsKnown() {
		v.add(field(p, "protocol"), "%d is not a known Protocol (0..%d)", int32(c.Protocol), len(protocolNames)-1)
	}
	v.nonNegative(field(p, "connections"), int64(c.Connections))
	v.nonNegative(field(p, "rps"), c.RPS)
	for _, k := range sortedKeys(c.Headers) {
		hp := key(field(p, "headers"), k)
		if !httpguts.ValidHeaderFieldName(k) {
			v.add(hp, "not a valid HTTP header name")
		}
		if !httpguts.ValidHeaderFieldValue(c.Headers[k]) {
			v.add(hp, "value contains characters not allowed in an HTTP header (CR, LF or other controls)")
		}
	}
	for _, k := range sortedKeys(c.Cookies) {
		cp := key(field(p, "cookies"), k)
		if !httpguts.ValidHeaderFieldName(k) { // cookie-name is an RFC 7230 token, as a header name
			v.add(cp, "not a valid cookie name")
		}
		if !validCookieValue(c.Cookies[k]) {
			v.add(cp, "value contains characters RFC 6265 does not allow in a cookie")
		}
	}
	if c.ContentType != "" {
		if _, _, err := mime.ParseMediaType(c.ContentType); err != nil {
			v.add(field(p, "content_type"), "%q is not a media type: %v", truncate(c.ContentType, 80), err)
		}
	}
	for i, u := range c.EndpointURLs {
		v.absoluteURL(index(field(p, "endpoint_urls"), i), u)
	}
}

// validCookieValue follows RFC 6265 section 4.1.1: cookie-octets, optionally
// in double quotes.
func validCookieValue(s string) bool {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == ',' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// Validate checks a PerformanceTestResult. Paths start with "result".
func (r *PerformanceTestResult) Validate() error {
	var v validator
	v.result("result", r)
	return v.err()
}

func (v *validator) result(p string, r *PerformanceTestResult) {
	if !v.document(p, r == nil) {
		return
	}
	v.smpVersion(field(p, "smp_version"), r.SMPVersion)
	v.required(field(p, "id"), r.ID)
	startOK := v.timestamp(field(p, "start_time"), r.StartTime)
	endOK := v.timestamp(field(p, "end_time"), r.EndTime)
	if startOK && endOK && r.EndTime.Before(*r.StartTime) {
		v.add(field(p, "end_time"), "%s is before start_time %s", r.EndTime, r.StartTime)
	}
	if r.LatenciesMs != nil {
		v.latency(field(p, "latencies_ms"), r.LatenciesMs)
	}
	v.finiteNonNegative(field(p, "actual_qps"), r.ActualQPS)
	if r.DetailsURI != "" {
		v.uriReference(field(p, "details_uri"), r.DetailsURI)
	}
}

func (v *validator) latency(p string, l *Latency) {
	vals := []namedValue{{"min", l.Min}, {"average", l.Average}, {"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"max", l.Max}}
	if !v.allFiniteNonNegative(p, vals) {
		return
	}
	v.ordered(p, []namedValue{{"min", l.Min}, {"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"max", l.Max}})
	// With min > max the range is meaningless and already reported.
	if l.Min <= l.Max && (l.Average < l.Min || l.Average > l.Max) {
		v.add(field(p, "average"), "%s is outside [min %s, max %s]", fmtNum(l.Average), fmtNum(l.Min), fmtNum(l.Max))
	}
}

// Validate checks a ServiceMeshConfig. Paths start with "mesh_config".
func (m *ServiceMeshConfig) Validate() error {
	var v validator
	v.meshConfig("mesh_config", m)
	return v.err()
}

func (v *validator) meshConfig(p string, m *ServiceMeshConfig) {
	if !v.document(p, m == nil) {
		return
	}
	v.smpVersion(field(p, "smp_version"), m.SMPVersion)
	v.required(field(p, "id"), m.ID)
	if g := m.IngressGateway; g != nil {
		gp := field(p, "ingress_gateway")
		v.nonNegatives(gp, []namedInt{{"count", g.Count}, {"cpu_mcores", g.CPUMcores}, {"mem_mb", g.MemMB}, {"rps", g.RPS}, {"bps", g.BPS}})
	}
	if s := m.Sidecar; s != nil {
		sp := field(p, "sidecar")
		v.nonNegatives(sp, []namedInt{{"count", s.Count}, {"cpu_mcores", s.CPUMcores}, {"mem_mb", s.MemMB}, {"rps", s.RPS}, {"bps", s.BPS}})
	}
	if t := m.MeshTelemetry; t != nil {
		tp := field(p, "mesh_telemetry")
		v.nonNegatives(tp, []namedInt{{"count", t.Count}, {"cpu_mcores", t.CPUMcores}, {"mem_mb", t.MemMB}, {"rps", t.RPS}})
	}
	if pol := m.MeshPolicy; pol != nil {
		pp := field(p, "mesh_policy")
		v.nonNegatives(pp, []namedInt{{"count", pol.Count}, {"cpu_mcores", pol.CPUMcores}, {"mem_mb", pol.MemMB}, {"rps", pol.RPS}})
		if pol.CacheHitRate < 0 || pol.CacheHitRate > 100 {
			v.add(field(pp, "cache_hit_rate"), "%d is outside 0..100 (percent)", pol.CacheHitRate)
		}
	}
	if c := m.MeshControlPlane; c != nil {
		cp := field(p, "mesh_control_plane")
		v.nonNegatives(cp, []namedInt{
			{"count", c.Count}, {"cpu_mcores", c.CPUMcores}, {"mem_mb", c.MemMB}, {"endpoints", c.Endpoints},
			{"services", c.Services}, {"sidecars", c.Sidecars}, {"virtual_services", c.VirtualServices},
			{"destination_rules", c.DestinationRules}, {"lds_latency_ms", c.LDSLatencyMs}, {"cds_latency_ms", c.CDSLatencyMs},
		})
	}
	v.nonNegative(field(p, "proxy_concurrency"), int64(m.ProxyConcurrency))
	v.uuid(field(p, "exp_group_uuid"), m.ExpGroupUUID)
	v.uuid(field(p, "exp_uuid"), m.ExpUUID)
	if !m.MeshType.IsKnown() {
		v.add(field(p, "mesh_type"), "%d is not a known ServiceMesh.Type (0..%d)", int32(m.MeshType), len(meshTypeNames)-1)
	}
	if a := m.ApplicationMetadata; a != nil && !a.ApplicationProtocol.IsKnown() {
		v.add(field(field(p, "application_metadata"), "application_protocol"),
			"%d is not a known ApplicationProtocol (0..%d)", int32(a.ApplicationProtocol), len(applicationProtocolNames)-1)
	}
}

type namedInt struct {
	name string
	n    int32
}

func (v *validator) nonNegatives(parent string, vals []namedInt) {
	for _, ni := range vals {
		v.nonNegative(field(parent, ni.name), int64(ni.n))
	}
}

// Validate checks an EnvironmentConfig. Paths start with "environment".
func (e *EnvironmentConfig) Validate() error {
	var v validator
	v.environment("environment", e)
	return v.err()
}

func (v *validator) environment(p string, e *EnvironmentConfig) {
	if !v.document(p, e == nil) {
		return
	}
	v.smpVersion(field(p, "smp_version"), e.SMPVersion)
	v.required(field(p, "id"), e.ID)
	for i, n := range e.Nodes {
		np := index(field(p, "nodes"), i)
		v.nonNegative(field(np, "cores"), int64(n.Cores))
		v.nonNegative(field(np, "mem_mb"), n.MemMB)
	}
	for i, w := range e.IndividualWorkloads {
		wp := index(field(p, "individual_workloads"), i)
		v.nonNegatives(wp, []namedInt{{"count", w.Count}, {"cpu_mcores", w.CPUMcores}, {"mem_mb", w.MemMB}})
	}
	if t := e.TrafficMetadata; t != nil {
		tp := field(p, "traffic_metadata")
		if t.LoadBalanceIP != "" {
			if _, err := netip.ParseAddr(t.LoadBalanceIP); err != nil {
				v.add(field(tp, "load_balance_ip"), "%q is not an IP address", truncate(t.LoadBalanceIP, 80))
			}
		}
		if t.PrometheusURL != "" {
			v.absoluteURL(field(tp, "prometheus_url"), t.PrometheusURL)
		}
	}
}

// Validate checks a ServiceMesh. Paths start with "mesh", its key in the
// Meshery test-config document.
func (s *ServiceMesh) Validate() error {
	var v validator
	v.serviceMesh("mesh", s)
	return v.err()
}

func (v *validator) serviceMesh(p string, s *ServiceMesh) {
	if !v.document(p, s == nil) {
		return
	}
	if !s.Type.IsKnown() {
		v.add(field(p, "type"), "%d is not a known ServiceMesh.Type (0..%d)", int32(s.Type), len(meshTypeNames)-1)
	}
}

// Validate checks a Meshery test-config document: `test` is required (a file
// without it describes no test), `mesh` is optional (a run without a mesh is
// the baseline).
func (m *MesheryTestConfig) Validate() error {
	var v validator
	if !v.document("meshery_test_config", m == nil) {
		return v.err()
	}
	if m.Test == nil {
		v.add("test", "required")
	} else {
		v.testConfig("test", m.Test)
	}
	if m.Mesh != nil {
		v.serviceMesh("mesh", m.Mesh)
	}
	return v.err()
}
