package smps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// YAML output is produced here from the JSON encoding rather than with
// sigs.k8s.io/yaml.Marshal, whose yaml.v2 emitter writes a map key "<<"
// unquoted; yaml.v2 (and so sigs.k8s.io/yaml.Unmarshal) then reads it back as
// a merge key and fails, so a label named "<<" made a valid document
// unreadable. Emitting from the JSON keeps the keys exactly the JSON names,
// as sigs.k8s.io/yaml would, and also keeps the struct's field order
// (smp_version and id first, apiVersion and kind first) instead of sorting.
//
// The emitter is deliberately conservative: a string is written plain only
// when it is a simple word that YAML 1.1 and 1.2 both read back as the same
// string, as a literal block when it is multi-line text made of characters a
// block scalar keeps verbatim, and double-quoted with escapes otherwise.

// yNode is a JSON value with object key order preserved.
type yNode struct {
	kind yKind
	text string // scalar text: number literal, true/false/null, or the string
	keys []string
	vals []*yNode // object values, parallel to keys; or array items
}

type yKind int

const (
	yScalar yKind = iota // number, bool or null, written as in JSON
	yString
	yObject
	yArray
)

func jsonToYAML(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	root, err := readYNode(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	var buf bytes.Buffer
	switch {
	case root.kind == yObject && len(root.keys) > 0:
		writeObject(&buf, root, 0, false)
	case root.kind == yObject:
		buf.WriteString("{}\n")
	default:
		return nil, fmt.Errorf("top-level JSON value is not an object")
	}
	return buf.Bytes(), nil
}

func readYNode(dec *json.Decoder) (*yNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &yNode{kind: yArray}
		if t == '{' {
			n.kind = yObject
		}
		for dec.More() {
			if n.kind == yObject {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, kt.(string))
			}
			child, err := readYNode(dec)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, child)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &yNode{kind: yString, text: t}, nil
	case json.Number:
		return &yNode{kind: yScalar, text: t.String()}, nil
	case bool:
		if t {
			return &yNode{kind: yScalar, text: "true"}, nil
		}
		return &yNode{kind: yScalar, text: "false"}, nil
	case nil:
		return &yNode{kind: yScalar, text: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func writeIndent(buf *bytes.Buffer, n int) {
	for i := 0; i < n; i++ {
		buf.WriteByte(' ')
	}
}

// writeObject writes a non-empty object as a block mapping at indent. With
// inline, the first key continues the current line (after "- ").
func writeObject(buf *bytes.Buffer, n *yNode, indent int, inline bool) {
	for i, k := range n.keys {
		if i > 0 || !inline {
			writeIndent(buf, indent)
		}
		buf.WriteString(yamlKey(k))
		buf.WriteByte(':')
		writeValue(buf, n.vals[i], indent, true)
	}
}

// writeValue writes the part after "key:" or "-": a scalar on the same line,
// or a nested collection on the following lines. inMap selects the compact
// sequence style ("- " at the key's indent), as kubectl and
// sigs.k8s.io/yaml write it.
func writeValue(buf *bytes.Buffer, v *yNode, indent int, inMap bool) {
	switch v.kind {
	case yObject:
		if len(v.keys) == 0 {
			buf.WriteString(" {}\n")
			return
		}
		if inMap {
			buf.WriteByte('\n')
			writeObject(buf, v, indent+2, false)
			return
		}
		buf.WriteByte(' ')
		writeObject(buf, v, indent+2, true)
	case yArray:
		if len(v.vals) == 0 {
			buf.WriteString(" []\n")
			return
		}
		buf.WriteByte('\n')
		itemIndent := indent
		if !inMap {
			itemIndent = indent + 2
		}
		for _, item := range v.vals {
			writeIndent(buf, itemIndent)
			buf.WriteByte('-')
			writeValue(buf, item, itemIndent, false)
		}
	case yString:
		if lines, chomp, ok := literalLines(v.text); ok {
			buf.WriteString(" |" + chomp + "\n")
			for _, l := range lines {
				if l != "" {
					writeIndent(buf, indent+2)
					buf.WriteString(l)
				}
				buf.WriteByte('\n')
			}
			return
		}
		buf.WriteByte(' ')
		buf.WriteString(yamlString(v.text))
		buf.WriteByte('\n')
	default:
		buf.WriteByte(' ')
		buf.WriteString(v.text)
		buf.WriteByte('\n')
	}
}

func yamlKey(k string) string { return yamlString(k) }

// plainRE is the shape of strings that may go unquoted: a letter, then
// letters, digits and . _ / -. Starting with a letter rules out every number
// form (YAML 1.1 octal/sexagesimal, 1.2 0o/0x, .inf, +1); what is left to
// check is words such as yes, off or null.
var plainRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._/-]*$`)

func yamlString(s string) string {
	if plainRE.MatchString(s) && readsBackAsString(s) {
		return s
	}
	return quoteYAML(s)
}

// yaml11Words are the plain scalars starting with a letter that YAML 1.1
// (yaml.v2, behind sigs.k8s.io/yaml) does not read as strings: booleans and
// null. YAML 1.2's core schema has a subset of them, so a word not listed is
// a string to both. TestYAML11Words checks the list against yaml.v2 itself.
var yaml11Words = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
	"true": true, "True": true, "TRUE": true, "false": true, "False": true, "FALSE": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
	"null": true, "Null": true, "NULL": true,
}

func readsBackAsString(s string) bool { return !yaml11Words[s] }

// yamlPrintable is YAML's c-printable minus the characters YAML 1.1 treats
// as line breaks (NEL, LS, PS), tab and the byte order mark: the characters
// that can appear verbatim in a plain or block scalar and mean themselves.
func yamlPrintable(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0x7E:
		return true
	case r >= 0xA0 && r <= 0xD7FF:
		return r != 0x2028 && r != 0x2029
	case r >= 0xE000 && r <= 0xFFFD:
		return r != 0xFEFF
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// quoteYAML writes a YAML double-quoted scalar, escaping everything outside
// yamlPrintable; the escapes used are common to YAML 1.1 and 1.2.
func quoteYAML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case yamlPrintable(r):
			b.WriteRune(r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// literalLines decides whether s can be a literal block scalar ("|" or "|-")
// and returns its lines. Only ordinary multi-line text qualifies (a PEM
// certificate, a JSON body): at least one line break, at most one at the end,
// no character that needs escaping, no trailing spaces (editors eat them),
// and a first line that does not start with a space (which would need an
// indentation indicator).
func literalLines(s string) (lines []string, chomp string, ok bool) {
	body, final := strings.CutSuffix(s, "\n")
	if !strings.Contains(body, "\n") && !final {
		return nil, "", false // single line
	}
	if body == "" || strings.HasSuffix(body, "\n") || strings.HasPrefix(body, " ") || strings.HasPrefix(body, "\n") {
		return nil, "", false
	}
	lines = strings.Split(body, "\n")
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			return nil, "", false
		}
		for _, r := range l {
			if !yamlPrintable(r) {
				return nil, "", false
			}
		}
	}
	if final {
		return lines, "", true // "|" keeps the single final line break
	}
	return lines, "-", true // "|-" strips it: there was none
}
