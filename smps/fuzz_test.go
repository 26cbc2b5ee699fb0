package smps

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode for every document type. Decode
// must never panic, and whatever decodes and validates must survive
// Encode -> Decode unchanged in both formats: Encode must not refuse or fail
// on a document Validate accepted, and nothing may be lost or altered on the
// way (the property that keeps a kubectl-mesh document stable when read and
// rewritten).
//
//	go test ./smps -run '^$' -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	// The first argument picks the document type, so each execution parses
	// the input once per format rather than once per type; on a loaded
	// machine that is the difference between a useful run and a crawl.
	types := []struct {
		golden string // golden file base name, "" if none
		new    func() Document
	}{
		{"performance-test-config", func() Document { return new(PerformanceTestConfig) }},
		{"performance-test-result", func() Document { return new(PerformanceTestResult) }},
		{"service-mesh-config", func() Document { return new(ServiceMeshConfig) }},
		{"environment-config", func() Document { return new(EnvironmentConfig) }},
		{"", func() Document { return new(ServiceMesh) }},
		{"meshery-test-config", func() Document { return new(MesheryTestConfig) }},
		{"overhead-report", func() Document { return new(OverheadReport) }},
	}

	// Seeds: the golden example set under its own type, and small inputs
	// aimed at the decoder's corners (format sniffing, enums as names,
	// timestamp forms, empty maps, YAML keywords as keys) under every type.
	for i, typ := range types {
		if typ.golden == "" {
			continue
		}
		for _, ext := range []string{".json", ".yaml"} {
			data, err := os.ReadFile(filepath.Join("testdata", typ.golden+ext))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data)
		}
	}
	for _, s := range []string{
		"",
		"{}",
		"null",
		"---\n",
		"smp_version: v0.6.1\nid: a\nlabels: {}\n",
		`{"smp_version":"v0.6.1","id":"a","start_time":"2025-06-01T12:00:00Z","end_time":{"seconds":1748779300}}`,
		"{test: {smp_version: v0.6.1, id: x, clients: [{protocol: grpc, endpoint_urls: ['tcp://h:1']}]}, mesh: {type: osm}}",
		"test: {smp_version: v0.6.1, id: x, clients: [null, {}]}\nmesh: {type: \"3\", labels: {}}\n",
		`{"apiVersion":"kubectl-mesh.io/v1alpha1","kind":"OverheadReport","runId":"r","window":{"start":"2025-06-01T12:00:00+02:00","end":"2025-06-01T12:00:01+02:00"},"pods":[]}`,
		"smp_version: v0.6.1\nid: a\nlatencies_ms: {min: -0, p50: 1e-300, max: 1.7976931348623157e308, average: 1}\n",
		"smp_version: v0.6.1\nid: a\nlabels: {\"<<\": \"x\", \"~\": yes, \"\": \"line\\nbreak\\r\\n\"}\n",
		"type: 3\nversion: 1.26\nannotations: {a: \"-----BEGIN X-----\\nAAA\\n-----END X-----\\n\", b: \" x\\n\", c: \"\\u2028\"}\n",
	} {
		for i := range types {
			f.Add(uint8(i), []byte(s))
		}
	}

	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		newDoc := types[int(kind)%len(types)].new
		first := newDoc()
		if err := Decode(bytes.NewReader(data), first); err != nil {
			return
		}
		if err := first.Validate(); err != nil {
			return
		}
		for _, format := range []Format{JSON, YAML} {
			var buf bytes.Buffer
			if err := Encode(&buf, first, format); err != nil {
				t.Fatalf("%T: valid document does not encode as %s: %v\ninput: %q", first, format, err, data)
			}
			second := newDoc()
			if err := Decode(bytes.NewReader(buf.Bytes()), second); err != nil {
				t.Fatalf("%T: own %s output does not decode: %v\ninput: %q\noutput:\n%s", first, format, err, data, buf.Bytes())
			}
			if !reflect.DeepEqual(first, second) {
				t.Fatalf("%T: %s round trip changed the document\ninput: %q\nfirst:  %#v\nsecond: %#v\noutput:\n%s",
					first, format, data, first, second, buf.Bytes())
			}
		}
	})
}
