// Package krew reads kubectl-mesh's krew plugin manifest (krew.yaml, and the dist/mesh.yaml
// that scripts/dist.sh renders from it) and checks it against krew's rules and ours.
//
// krew's own validator (sigs.k8s.io/krew/cmd/validate-krew-manifest) cannot be imported: the
// krew module requires client-go v11 and would break this module's build. The tests run it as
// a separate tool; Check holds the same rules, plus those krew leaves to its index reviewers
// (every platform we release, https URIs, LICENSE in the files) and one YAML-level rule krew
// cannot see once the file is decoded: sha256 values must be quoted.
package krew

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/version"
)

// Values krew requires.
const (
	APIVersion = "krew.googlecontainertools.github.com/v1alpha2"
	Kind       = "Plugin"
	// PluginName is kubectl-mesh's name in krew's index: `kubectl krew install mesh`.
	PluginName = "mesh"
)

// Manifest is a krew Plugin manifest (krew's pkg/index types, YAML form).
type Manifest struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`
}

// Metadata is the manifest's object metadata; krew reads only the name.
type Metadata struct {
	Name string `yaml:"name"`
}

// Spec is the plugin's description and its downloads.
type Spec struct {
	Version          string     `yaml:"version"`
	Homepage         string     `yaml:"homepage"`
	ShortDescription string     `yaml:"shortDescription"`
	Description      string     `yaml:"description"`
	Caveats          string     `yaml:"caveats"`
	Platforms        []Platform `yaml:"platforms"`
}

// Platform is one download: the archive for the os/arch its selector matches.
type Platform struct {
	Selector Selector `yaml:"selector"`
	URI      string   `yaml:"uri"`
	Sha256   string   `yaml:"sha256"`
	// Files are copied out of the archive; krew copies everything when absent.
	Files []FileOperation `yaml:"files"`
	// Bin is the executable krew links as kubectl-<name>.
	Bin string `yaml:"bin"`
}

// Selector is a label selector over the keys "os" and "arch".
type Selector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

// FileOperation copies From (a glob in the archive) to To (in the install directory).
type FileOperation struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// Target is an os/arch pair.
type Target struct{ OS, Arch string }

func (t Target) String() string { return t.OS + "/" + t.Arch }

// Targets are the platforms kubectl-mesh is released for; scripts/dist.sh builds the same.
var Targets = []Target{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

var (
	sha256Pattern = regexp.MustCompile(`^[a-f0-9]{64}$`) // krew's own pattern
	safeName      = regexp.MustCompile(`^[\w-]+$`)       // krew's IsSafePluginName
)

// Parse decodes a manifest strictly (unknown fields are errors: a misspelt key would
// otherwise be silently ignored) and checks that every sha256 is a quoted string.
func Parse(data []byte) (*Manifest, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	if err := checkShaQuoting(&root); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkShaQuoting finds every sha256 key and requires its value to be a quoted scalar. An
// unquoted hash of digits only is a YAML number: a decoder may turn it into a float (losing
// digits) or, as sigs.k8s.io/yaml does for a string field, silently accept it; quoting all of
// them keeps the one-in-a-billion all-digit hash from breaking a release.
func checkShaQuoting(n *yaml.Node) error {
	var errs []error
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Value == "sha256" && (v.Kind != yaml.ScalarNode || v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0) {
					errs = append(errs, fmt.Errorf("line %d: sha256 %s is not quoted", v.Line, v.Value))
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return errors.Join(errs...)
}

// Check reports every way m breaks krew's rules or kubectl-mesh's release rules. name is the
// plugin name the manifest's file is named after (mesh for mesh.yaml): krew requires
// metadata.name to match it.
func (m *Manifest) Check(name string) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if m.APIVersion != APIVersion {
		add("apiVersion %q is not %q", m.APIVersion, APIVersion)
	}
	if m.Kind != Kind {
		add("kind %q is not %q", m.Kind, Kind)
	}
	if !safeName.MatchString(name) {
		add("plugin name %q does not match %s", name, safeName)
	}
	if m.Metadata.Name != name {
		add("metadata.name %q is not the file's name %q", m.Metadata.Name, name)
	}
	s := m.Spec
	if !strings.HasPrefix(s.Version, "v") {
		add("spec.version %q has no v prefix", s.Version)
	} else if _, err := version.ParseSemantic(s.Version); err != nil {
		add("spec.version %q is not a semantic version: %v", s.Version, err)
	}
	if u, err := url.Parse(s.Homepage); err != nil || u.Scheme != "https" || u.Host == "" {
		add("spec.homepage %q is not an https URL", s.Homepage)
	}
	if s.ShortDescription == "" {
		add("spec.shortDescription is empty")
	}
	if strings.ContainsAny(s.ShortDescription, "\r\n") {
		add("spec.shortDescription contains a line break")
	}
	if strings.TrimSpace(s.Description) == "" {
		add("spec.description is empty")
	}
	if strings.TrimSpace(s.Caveats) == "" {
		add("spec.caveats is empty")
	}

	seen := map[Target]int{}
	for i, p := range s.Platforms {
		pp := fmt.Sprintf("spec.platforms[%d]", i)
		t, err := p.Selector.target()
		if err != nil {
			add("%s.selector: %v", pp, err)
			continue
		}
		if j, dup := seen[t]; dup {
			add("%s selects %s, as spec.platforms[%d] does", pp, t, j)
		}
		seen[t] = i
		for _, err := range p.check(t, s.Version) {
			add("%s (%s): %v", pp, t, err)
		}
	}
	for _, t := range Targets {
		if _, ok := seen[t]; !ok {
			add("spec.platforms has no entry for %s", t)
		}
	}
	return errors.Join(errs...)
}

// target is the os/arch the selector matches. krew allows matchExpressions and any subset of
// the two keys; a release manifest names exactly one os and one arch per platform.
func (s Selector) target() (Target, error) {
	if len(s.MatchExpressions) > 0 {
		return Target{}, errors.New("matchExpressions: each platform must name one os and one arch in matchLabels")
	}
	var t Target
	for k, v := range s.MatchLabels {
		switch k {
		case "os":
			t.OS = v
		case "arch":
			t.Arch = v
		default:
			return Target{}, fmt.Errorf("key %q: krew supports only os and arch", k)
		}
	}
	for _, known := range Targets {
		if t == known {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("matchLabels %v is not one of the released platforms", s.MatchLabels)
}

func (p Platform) check(t Target, version string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if !sha256Pattern.MatchString(p.Sha256) {
		add("sha256 %q does not match %s", p.Sha256, sha256Pattern)
	}
	ext, bin := ".tar.gz", "kubectl-mesh"
	if t.OS == "windows" {
		ext, bin = ".zip", "kubectl-mesh.exe"
	}
	if p.Bin != bin {
		add("bin %q is not %q", p.Bin, bin)
	}
	u, err := url.Parse(p.URI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		add("uri %q is not an https URL", p.URI)
	} else if want := fmt.Sprintf("kubectl-mesh_%s_%s_%s%s", version, t.OS, t.Arch, ext); path.Base(u.Path) != want {
		add("uri %q does not end in %s", p.URI, want)
	}
	if p.Files != nil {
		if len(p.Files) == 0 {
			add("files is empty (krew: unspecified or non-empty)")
		}
		from := map[string]bool{}
		for i, f := range p.Files {
			if f.From == "" || f.To == "" {
				add("files[%d] needs from and to", i)
			}
			from[f.From] = true
		}
		want := []string{bin, "LICENSE"}
		if t.OS != "windows" { // the completion helper is a POSIX shell script
			want = append(want, "kubectl_complete-mesh")
		}
		for _, f := range want {
			if !from[f] {
				add("files does not copy %s", f)
			}
		}
	}
	return errs
}
