package smps

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	yamlv2 "go.yaml.in/yaml/v2"
)

func yamlv2ReadsString(s string) bool {
	var v any
	if err := yamlv2.Unmarshal([]byte(s), &v); err != nil {
		return false
	}
	got, ok := v.(string)
	return ok && got == s
}

// TestYAML11Words keeps the emitter's list of non-string words honest: every
// plain-eligible word the list lets through must read back from yaml.v2 as
// itself, and every listed word must not.
func TestYAML11Words(t *testing.T) {
	for w := range yaml11Words {
		if yamlv2ReadsString(w) {
			t.Errorf("%q is listed but yaml.v2 reads it as a string", w)
		}
	}
	var candidates []string
	letters := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, a := range letters {
		candidates = append(candidates, string(a))
		for _, b := range letters {
			candidates = append(candidates, string(a)+string(b))
			for _, c := range "eElLoOsSfFnN" { // the letters of yes, null, off, ...
				candidates = append(candidates, string(a)+string(b)+string(c))
			}
		}
	}
	// Every upper/lower case mix of the keywords, and near misses.
	for _, w := range []string{"true", "false", "null", "yes", "no", "on", "off", "none", "nil", "inf", "nan", "infinity"} {
		for mask := 0; mask < 1<<len(w); mask++ {
			var b strings.Builder
			for i, r := range w {
				if mask&(1<<i) != 0 {
					b.WriteString(strings.ToUpper(string(r)))
				} else {
					b.WriteRune(r)
				}
			}
			candidates = append(candidates, b.String())
		}
	}
	candidates = append(candidates, "v0.6.1", "a/b", "a.b", "a-b", "a_b", "x1e3", "e3", "E5", "Inf", "NaN")
	for _, s := range candidates {
		if !plainRE.MatchString(s) {
			continue
		}
		if readsBackAsString(s) && !yamlv2ReadsString(s) {
			t.Errorf("%q would be written plain but yaml.v2 does not read it back as that string", s)
		}
	}
}

func TestYAMLEmitterStrings(t *testing.T) {
	tricky := []string{
		"", " ", "<<", "~", "yes", "No", "ON", "null", "0777", "0o17", "1_000", "1e3", ".inf", "-.nan", "+1", "12:30",
		"-", "- x", "a: b", "a:b", "#c", "x #y", "  lead", "trail ", "@at", "`tick", "%pct", "!tag", "&anchor", "*alias",
		"|", ">", "?", "? x", "[", "]", "{", "}", ",", "'", `"`, `\`, "key:", "v0.6.1", "1.26", "http://h:1/p?a=1&b=2",
		"multi\nline\n", "multi\nline", "multi\n\n", "\n", "\n\nx", "a\n b", "a\n\nb\n", "a \nb", "\r\n", "a\r\nb\n",
		"tab\there", "\ttab\n", "\x00", "\x1f", "\x7f", "\u0085", "a\u0085b\n", "\u00a0", "\u2028", "\u2029\n", "\ufeff",
		"\ufffe", "\uffff", "😀", "é\n", "---", "...", "a\n---\nb\n", "a\n...\n", "# comment\nline\n",
		"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
	}
	m := &ServiceMesh{Labels: map[string]string{}, Annotations: map[string]string{}}
	for i, s := range tricky {
		m.Labels[s] = s
		m.Annotations[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = s
	}
	out := encode(t, m, YAML)
	var back ServiceMesh
	decodeInto(t, out, &back)
	if !reflect.DeepEqual(&back, m) {
		for k, v := range m.Labels {
			if back.Labels[k] != v {
				t.Errorf("label %q = %q after the round trip", k, back.Labels[k])
			}
		}
		for k, v := range m.Annotations {
			if back.Annotations[k] != v {
				t.Errorf("annotation %q: %q became %q", k, v, back.Annotations[k])
			}
		}
		t.Fatalf("YAML:\n%s", out)
	}

	// Styles: plain words stay plain, keywords and specials are quoted,
	// certificates become literal blocks.
	for _, want := range []string{
		"\n  v0.6.1: v0.6.1\n",
		"\n  \"<<\": \"<<\"\n",
		"\n  \"yes\": \"yes\"\n",
		"\n  \"1.26\": \"1.26\"\n",
		": |\n    -----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIU\n    -----END CERTIFICATE-----\n",
		": |-\n    multi\n    line\n",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestYAMLEmitterShapes(t *testing.T) {
	for in, want := range map[string]string{
		`{}`:                            "{}\n",
		`{"a":{}}`:                      "a: {}\n",
		`{"a":[]}`:                      "a: []\n",
		`{"a":[1,"x",null,true]}`:       "a:\n- 1\n- x\n- null\n- true\n",
		`{"a":[{"b":1,"c":{"d":2}}]}`:   "a:\n- b: 1\n  c:\n    d: 2\n",
		`{"a":[[1,2],[]]}`:              "a:\n-\n  - 1\n  - 2\n- []\n",
		`{"a":[{}]}`:                    "a:\n- {}\n",
		`{"a":["x\ny"]}`:                "a:\n- |-\n  x\n  y\n",
		`{"z":1,"a":2}`:                 "z: 1\na: 2\n",
		`{"n":-0,"e":1e+21,"f":1.5e-7}`: "\"n\": -0\ne: 1e+21\nf: 1.5e-7\n",
	} {
		got, err := jsonToYAML([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("jsonToYAML(%s) =\n%s(err %v)\nwant\n%s", in, got, err, want)
			continue
		}
		// And yaml.v2 reads it as the same data.
		var fromJSON, fromYAML any
		if err := yamlv2.Unmarshal([]byte(in), &fromJSON); err != nil {
			t.Fatal(err)
		}
		if err := yamlv2.Unmarshal(got, &fromYAML); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if !reflect.DeepEqual(fromJSON, fromYAML) {
			t.Errorf("%s: YAML %q reads as %#v, JSON as %#v", in, got, fromYAML, fromJSON)
		}
	}
	if _, err := jsonToYAML([]byte(`[1]`)); err == nil {
		t.Error("a top-level array was accepted")
	}
}
