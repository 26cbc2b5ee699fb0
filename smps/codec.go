package smps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// Format is a serialisation format for Encode.
type Format string

// Supported formats. YAML is produced from the JSON form (see yamlemit.go),
// so keys are the same in both formats and in the same order.
const (
	JSON Format = "json"
	YAML Format = "yaml"
)

// ParseFormat accepts "json", "yaml" or "yml" in any case (for -o flags).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "json":
		return JSON, nil
	case "yaml", "yml":
		return YAML, nil
	}
	return "", fmt.Errorf("unknown format %q (json or yaml)", s)
}

// Document is implemented by the document types of this package:
// *PerformanceTestConfig, *PerformanceTestResult, *ServiceMeshConfig,
// *EnvironmentConfig, *ServiceMesh, *MesheryTestConfig and *OverheadReport.
// The unexported method keeps it closed: Decode's normalisation has to know
// the type.
type Document interface {
	Validate() error
	normalize()
}

// Encode validates doc and writes it to w in the given format. It refuses to
// write an invalid document: kubectl-mesh's output must be strictly valid
// SMPS, and catching a bad value here names the field while the cause is
// still at hand. JSON is indented by two spaces without HTML escaping (URLs
// with '&' stay readable); both formats end with a newline.
func Encode(w io.Writer, doc Document, format Format) error {
	if isNilDocument(doc) {
		return errors.New("smps: encode: nil document")
	}
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("smps: refusing to encode invalid %s: %w", docName(doc), err)
	}
	b, err := marshal(doc, format)
	if err != nil {
		return fmt.Errorf("smps: encode %s: %w", docName(doc), err)
	}
	_, err = w.Write(b)
	return err
}

func marshal(doc Document, format Format) ([]byte, error) {
	switch format {
	case JSON:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case YAML:
		j, err := json.Marshal(doc)
		if err != nil {
			return nil, err
		}
		return jsonToYAML(j)
	}
	return nil, fmt.Errorf("unknown format %q (json or yaml)", format)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Decode reads one document from r into doc, which it resets first. JSON and
// YAML are both accepted (input whose first character is '{' and that is valid
// JSON is read as JSON, anything else as YAML). Decoding is strict, because a
// misspelt key silently dropped would make a test config run the wrong test:
// unknown fields, duplicate keys and a second YAML document are errors.
// Enums may be given as numbers or names ("mesh: {type: istio}") and
// timestamps as {seconds, nanos} or RFC 3339; Encode writes the canonical
// forms.
//
// Decode does not validate; call doc.Validate(). Empty maps and lists are
// turned into nil, because proto3 cannot tell them from absent ones and
// Encode omits both: that way a decoded document equals its re-decoded
// encoding.
func Decode(r io.Reader, doc Document) error {
	if isNilDocument(doc) {
		return errors.New("smps: decode: nil document")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("smps: decode %s: %w", docName(doc), err)
	}
	reflect.ValueOf(doc).Elem().SetZero()
	data = bytes.TrimPrefix(data, utf8BOM)
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		err = decodeJSON(trimmed, doc)
	} else {
		err = decodeYAML(data, doc)
	}
	if err != nil {
		reflect.ValueOf(doc).Elem().SetZero() // no half-filled result
		return fmt.Errorf("smps: decode %s: %w", docName(doc), err)
	}
	doc.normalize()
	return nil
}

func decodeJSON(data []byte, doc Document) error {
	if err := checkDuplicateKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(doc)
}

// checkDuplicateKeys rejects an object with the same key twice, which
// encoding/json would resolve silently by keeping the last; the YAML path
// rejects it too, so both formats agree. data is known to be valid JSON.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		// expectKey is true in an object when the next string is a key.
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true // this value completes a key/value pair
				}
				stack = append(stack, &frame{object: t == '{', keys: map[string]bool{}, expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.object {
				if top.expectKey {
					k := t.(string)
					if top.keys[k] {
						return fmt.Errorf("duplicate key %q", truncate(k, 80))
					}
					top.keys[k] = true
					top.expectKey = false
				} else {
					top.expectKey = true
				}
			}
		}
	}
}

func decodeYAML(data []byte, doc Document) error {
	// sigs.k8s.io/yaml reads only the first document of a stream; a second
	// one would be dropped without a word, so count them first.
	dec := yamlv2.NewDecoder(bytes.NewReader(data))
	var first any
	if err := dec.Decode(&first); err != nil {
		if err == io.EOF {
			return errors.New("empty input: no document")
		}
		return err
	}
	if first == nil {
		return errors.New("empty document")
	}
	var second any
	if err := dec.Decode(&second); err != io.EOF {
		if err != nil {
			return err
		}
		return errors.New("more than one YAML document: give one document per input")
	}
	return yaml.UnmarshalStrict(data, doc)
}

func isNilDocument(doc Document) bool {
	if doc == nil {
		return true
	}
	v := reflect.ValueOf(doc)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func docName(doc Document) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", doc), "*smps.")
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func (c *PerformanceTestConfig) normalize() {
	c.Labels = nilIfEmptyMap(c.Labels)
	c.Clients = nilIfEmpty(c.Clients)
	for i := range c.Clients {
		cl := &c.Clients[i]
		cl.Headers = nilIfEmptyMap(cl.Headers)
		cl.Cookies = nilIfEmptyMap(cl.Cookies)
		cl.EndpointURLs = nilIfEmpty(cl.EndpointURLs)
	}
}

func (r *PerformanceTestResult) normalize() { r.Labels = nilIfEmptyMap(r.Labels) }

func (m *ServiceMeshConfig) normalize() { m.Labels = nilIfEmptyMap(m.Labels) }

func (e *EnvironmentConfig) normalize() {
	e.Labels = nilIfEmptyMap(e.Labels)
	e.Nodes = nilIfEmpty(e.Nodes)
	e.IndividualWorkloads = nilIfEmpty(e.IndividualWorkloads)
}

func (s *ServiceMesh) normalize() {
	s.Labels = nilIfEmptyMap(s.Labels)
	s.Annotations = nilIfEmptyMap(s.Annotations)
}

func (m *MesheryTestConfig) normalize() {
	if m.Test != nil {
		m.Test.normalize()
	}
	if m.Mesh != nil {
		m.Mesh.normalize()
	}
}

func (r *OverheadReport) normalize() {
	// Times are written in UTC; decoding "…+02:00" keeps the offset, so
	// convert to compare equal with the re-decoded UTC form.
	r.Window.Start = r.Window.Start.UTC()
	r.Window.End = r.Window.End.UTC()
	r.Pods = nilIfEmpty(r.Pods)
	r.Namespaces = nilIfEmpty(r.Namespaces)
}
