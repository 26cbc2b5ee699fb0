package smps

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the example documents")

func encode(t *testing.T, doc Document, f Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, doc, f); err != nil {
		t.Fatalf("Encode(%s): %v", f, err)
	}
	return buf.Bytes()
}

func decodeInto(t *testing.T, data []byte, doc Document) Document {
	t.Helper()
	if err := Decode(bytes.NewReader(data), doc); err != nil {
		t.Fatalf("Decode: %v\ninput:\n%s", err, data)
	}
	return doc
}

// TestGolden pins the exact bytes Encode writes for the example set. A golden
// file that no longer matches fails; `go test ./smps -run TestGolden -update`
// rewrites them, and the diff then shows in review.
func TestGolden(t *testing.T) {
	known := map[string]bool{}
	for _, ex := range exampleDocs() {
		for _, f := range []Format{JSON, YAML} {
			name := ex.name + "." + string(f)
			known[name] = true
			t.Run(name, func(t *testing.T) {
				got := encode(t, ex.doc, f)
				path := filepath.Join("testdata", name)
				if *update {
					if err := os.MkdirAll("testdata", 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s is stale (run `go test ./smps -run TestGolden -update`): %s", path, firstDiff(want, got))
				}
				// The golden file must also read back as the example.
				back := decodeInto(t, want, ex.new())
				if !reflect.DeepEqual(back, ex.doc) {
					t.Errorf("%s decodes to\n%#v\nwant\n%#v", path, back, ex.doc)
				}
				if err := back.Validate(); err != nil {
					t.Errorf("%s does not validate: %v", path, err)
				}
			})
		}
	}
	// A golden file whose example was removed is stale too.
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && !known[e.Name()] {
			t.Errorf("testdata/%s belongs to no example document; delete it", e.Name())
		}
	}
}

func firstDiff(want, got []byte) string {
	wl := strings.Split(string(want), "\n")
	gl := strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d: golden %q, encoded %q", i+1, w, g)
		}
	}
	return "no line differs (line endings?)"
}

// TestRoundTrip checks struct -> JSON -> struct, struct -> YAML -> struct, and
// that converting between the formats through the struct is lossless.
func TestRoundTrip(t *testing.T) {
	for _, ex := range exampleDocs() {
		t.Run(ex.name, func(t *testing.T) {
			j := encode(t, ex.doc, JSON)
			y := encode(t, ex.doc, YAML)
			fromJSON := decodeInto(t, j, ex.new())
			fromYAML := decodeInto(t, y, ex.new())
			if !reflect.DeepEqual(fromJSON, ex.doc) {
				t.Errorf("JSON round trip:\n got %#v\nwant %#v", fromJSON, ex.doc)
			}
			if !reflect.DeepEqual(fromYAML, ex.doc) {
				t.Errorf("YAML round trip:\n got %#v\nwant %#v", fromYAML, ex.doc)
			}
			if got := encode(t, fromJSON, YAML); !bytes.Equal(got, y) {
				t.Errorf("JSON -> struct -> YAML differs from direct YAML: %s", firstDiff(y, got))
			}
			if got := encode(t, fromYAML, JSON); !bytes.Equal(got, j) {
				t.Errorf("YAML -> struct -> JSON differs from direct JSON: %s", firstDiff(j, got))
			}
		})
	}
}

// TestMesheryWireShape checks the details Meshery's generated structs depend
// on: snake_case keys, integer enums, Timestamp as {seconds, nanos}.
func TestMesheryWireShape(t *testing.T) {
	var result map[string]any
	if err := json.Unmarshal(encode(t, exampleResult(), JSON), &result); err != nil {
		t.Fatal(err)
	}
	start, ok := result["start_time"].(map[string]any)
	if !ok {
		t.Fatalf("start_time = %#v, want an object", result["start_time"])
	}
	if start["seconds"] != float64(exampleStart.Unix()) || start["nanos"] != float64(125000000) {
		t.Errorf("start_time = %v, want seconds %d nanos 125000000", start, exampleStart.Unix())
	}
	for _, k := range []string{"smp_version", "latencies_ms", "actual_qps", "details_uri", "test_id", "mesh_config_id", "env_id"} {
		if _, ok := result[k]; !ok {
			t.Errorf("key %q missing from %v", k, result)
		}
	}

	var mesh map[string]any
	if err := json.Unmarshal(encode(t, exampleMesheryTestConfig(), JSON), &mesh); err != nil {
		t.Fatal(err)
	}
	if got := mesh["mesh"].(map[string]any)["type"]; got != float64(3) {
		t.Errorf("mesh.type = %#v, want the number 3", got)
	}
	client := mesh["test"].(map[string]any)["clients"].([]any)[0].(map[string]any)
	if got := client["protocol"]; got != float64(1) {
		t.Errorf("protocol = %#v, want the number 1", got)
	}

	// proto3 omits zero values, and so must we.
	var empty map[string]any
	if err := json.Unmarshal(mustMarshal(t, &PerformanceTestResult{}), &empty); err != nil {
		t.Fatal(err)
	}
	if len(empty) != 0 {
		t.Errorf("zero PerformanceTestResult marshals to %v, want {}", empty)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeAcceptsMesheryInput(t *testing.T) {
	// The shape of Meshery's sample test configuration, with a name for the
	// mesh type instead of the number, and the protocol as a name.
	in := `
test:
  smp_version: v0.6.1
  id: sample
  name: Load Test
  labels: {}
  clients:
  - internal: false
    load_generator: fortio
    protocol: http
    connections: 2
    rps: 10
    headers: {}
    cookies: {}
    body: ""
    content_type: ""
    endpoint_urls:
    - http://localhost:2323/productpage
  duration: "30m"
mesh:
  type: Istio
`
	var m MesheryTestConfig
	decodeInto(t, []byte(in), &m)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.Mesh.Type != MeshTypeIstio || m.Test.Clients[0].Protocol != ProtocolHTTP {
		t.Errorf("mesh.type = %v, protocol = %v", m.Mesh.Type, m.Test.Clients[0].Protocol)
	}
	if m.Test.Labels != nil || m.Test.Clients[0].Headers != nil {
		t.Errorf("empty maps were not normalised to nil: %#v", m.Test)
	}
	// Encoding writes the integer again.
	if !strings.Contains(string(encode(t, &m, YAML)), "type: 3\n") {
		t.Errorf("mesh type not written as 3:\n%s", encode(t, &m, YAML))
	}
}

func TestDecodeTimestampForms(t *testing.T) {
	want := Timestamp{Seconds: 1748779200, Nanos: 125000000}
	for _, in := range []string{
		`{"smp_version":"v0.6.1","id":"r","start_time":{"seconds":1748779200,"nanos":125000000}}`,
		`{"smp_version":"v0.6.1","id":"r","start_time":"2025-06-01T12:00:00.125Z"}`,
		`{"smp_version":"v0.6.1","id":"r","start_time":"2025-06-01T14:00:00.125+02:00"}`,
		"smp_version: v0.6.1\nid: r\nstart_time: {seconds: 1748779200, nanos: 125000000}\n",
		"smp_version: v0.6.1\nid: r\nstart_time: \"2025-06-01T12:00:00.125Z\"\n",
	} {
		var r PerformanceTestResult
		decodeInto(t, []byte(in), &r)
		if r.StartTime == nil || *r.StartTime != want {
			t.Errorf("%s: start_time = %v, want %v", in, r.StartTime, want)
		}
	}
	if got := want.Time(); !got.Equal(time.Date(2025, 6, 1, 12, 0, 0, 125000000, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("Time() = %v", got)
	}
	if got := NewTimestamp(time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC)); *got != (Timestamp{Seconds: -1, Nanos: 500000000}) {
		t.Errorf("pre-epoch NewTimestamp = %+v, want seconds -1 nanos 5e8", *got)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string
		doc  Document
		want string
	}{
		{"empty", "", new(PerformanceTestResult), "empty input"},
		{"only a comment", "# nothing here\n", new(PerformanceTestResult), "empty input"},
		{"null document", "null\n", new(PerformanceTestResult), "empty document"},
		{"unknown JSON field", `{"smp_version":"v0.6.1","latency_ms":{}}`, new(PerformanceTestResult), `unknown field "latency_ms"`},
		{"unknown YAML field", "smp_version: v0.6.1\nlatency_ms: {}\n", new(PerformanceTestResult), `unknown field "latency_ms"`},
		{"unknown nested field", "test:\n  clients:\n  - endpoint_url: [x]\n", new(MesheryTestConfig), `unknown field "endpoint_url"`},
		{"unknown timestamp field", `{"start_time":{"seconds":1,"nano":2}}`, new(PerformanceTestResult), `unknown field "nano"`},
		{"duplicate JSON key", `{"id":"a","labels":{"x":"1","x":"2"}}`, new(PerformanceTestResult), `duplicate key "x"`},
		{"duplicate YAML key", "id: a\nid: b\n", new(PerformanceTestResult), `already set`},
		{"two YAML documents", "id: a\n---\nid: b\n", new(PerformanceTestResult), "more than one YAML document"},
		{"wrong type", `{"actual_qps":"fast"}`, new(PerformanceTestResult), "cannot unmarshal"},
		{"enum name", `{"mesh_type":"mesh-of-the-month"}`, new(ServiceMeshConfig), `"mesh-of-the-month" is not a known ServiceMesh.Type`},
		{"enum float", `{"mesh_type":1.5}`, new(ServiceMeshConfig), "must be an int32 number"},
		{"enum bool", "mesh_type: true\n", new(ServiceMeshConfig), "must be an int32 number"},
		{"bad timestamp string", `{"end_time":"yesterday"}`, new(PerformanceTestResult), "neither {seconds, nanos} nor RFC 3339"},
		{"yaml NaN", "actual_qps: .nan\n", new(PerformanceTestResult), "NaN"},
		{"yaml list", "- a\n- b\n", new(PerformanceTestResult), "cannot unmarshal array"},
		{"bad report time", `{"window":{"start":"noon"}}`, new(OverheadReport), "cannot parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Decode(strings.NewReader(c.in), c.doc)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Decode(%q) error = %v, want one containing %q", c.in, err, c.want)
			}
			if !reflect.ValueOf(c.doc).Elem().IsZero() {
				t.Errorf("failed Decode left data behind: %#v", c.doc)
			}
		})
	}
}

func TestDecodeDetails(t *testing.T) {
	t.Run("YAML flow mapping is not mistaken for JSON", func(t *testing.T) {
		var m MesheryTestConfig
		decodeInto(t, []byte("{test: {smp_version: v0.6.1, id: x}, mesh: {type: linkerd}}"), &m)
		if m.Test.ID != "x" || m.Mesh.Type != MeshTypeLinkerd {
			t.Errorf("got %#v", m)
		}
	})
	t.Run("byte order mark", func(t *testing.T) {
		var r PerformanceTestResult
		decodeInto(t, append([]byte{0xEF, 0xBB, 0xBF}, `{"id":"a"}`...), &r)
		if r.ID != "a" {
			t.Errorf("id = %q", r.ID)
		}
	})
	t.Run("decode resets the target", func(t *testing.T) {
		r := exampleResult()
		decodeInto(t, []byte(`{"id":"other"}`), r)
		if !reflect.DeepEqual(r, &PerformanceTestResult{ID: "other"}) {
			t.Errorf("old fields survived: %#v", r)
		}
	})
	t.Run("leading document marker", func(t *testing.T) {
		var r PerformanceTestResult
		decodeInto(t, []byte("---\nid: a\n"), &r)
		if r.ID != "a" {
			t.Errorf("id = %q", r.ID)
		}
	})
	t.Run("numbers in string fields", func(t *testing.T) {
		// YAML reads 1.0 as a number; the target is a string, so keep it.
		var m ServiceMesh
		decodeInto(t, []byte("version: 1.26\n"), &m)
		if m.Version != "1.26" {
			t.Errorf("version = %q", m.Version)
		}
	})
	t.Run("unknown enum numbers decode and fail validation", func(t *testing.T) {
		var m ServiceMesh
		decodeInto(t, []byte("type: 42\n"), &m)
		if m.Type != 42 {
			t.Fatalf("type = %d", m.Type)
		}
		assertFieldErrors(t, m.Validate(), []string{"mesh.type: 42 is not a known ServiceMesh.Type (0..12)"})
	})
	t.Run("nil document", func(t *testing.T) {
		var r *PerformanceTestResult
		if err := Decode(strings.NewReader("{}"), r); err == nil {
			t.Error("Decode into a nil pointer succeeded")
		}
		if err := Encode(&bytes.Buffer{}, r, JSON); err == nil {
			t.Error("Encode of a nil pointer succeeded")
		}
	})
}

func TestEncodeRefusesInvalid(t *testing.T) {
	r := exampleResult()
	r.LatenciesMs.P90 = 0.5
	var buf bytes.Buffer
	err := Encode(&buf, r, JSON)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Encode error = %v, want a *ValidationError", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Encode wrote %d bytes of an invalid document", buf.Len())
	}
	if err := Encode(&buf, exampleResult(), Format("toml")); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("Encode(toml) error = %v", err)
	}
}

func TestEncodeDetails(t *testing.T) {
	t.Run("JSON keeps & in URLs readable", func(t *testing.T) {
		if out := encode(t, exampleTestConfig(), JSON); !bytes.Contains(out, []byte("size=1024&delay=0")) {
			t.Errorf("& was escaped:\n%s", out)
		}
	})
	t.Run("report window is written in UTC", func(t *testing.T) {
		r := exampleOverheadReport()
		zone := time.FixedZone("CEST", 2*3600)
		r.Window.Start = r.Window.Start.In(zone)
		r.Window.End = r.Window.End.In(zone)
		out := encode(t, r, JSON)
		if !bytes.Contains(out, []byte(`"start": "2025-06-01T12:00:00.125Z"`)) {
			t.Errorf("window not in UTC:\n%s", out)
		}
	})
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"json": JSON, "JSON": JSON, "yaml": YAML, " yml ": YAML} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
}

func TestDurationMs(t *testing.T) {
	if got := DurationMs(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("DurationMs(1.5ms) = %v", got)
	}
}
