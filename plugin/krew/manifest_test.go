package krew

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The repository's root, from this package's directory.
var root = filepath.Join("..", "..")

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// (a) The checked-in template passes our rules, placeholders included.
func TestRepoManifest(t *testing.T) {
	m, err := Parse(readFile(t, filepath.Join(root, "krew.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check(PluginName); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRejects(t *testing.T) {
	good := string(readFile(t, filepath.Join(root, "krew.yaml")))
	zeros := `"` + strings.Repeat("0", 64) + `"`
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unquoted all-digit sha256", "sha256: " + zeros, "sha256: " + strings.Repeat("1", 64), "not quoted"},
		{"unquoted hex sha256", "sha256: " + zeros, "sha256: a" + strings.Repeat("0", 63), "not quoted"},
		{"uppercase sha256", "sha256: " + zeros, `sha256: "A` + strings.Repeat("0", 63) + `"`, "does not match"},
		{"short sha256", "sha256: " + zeros, `sha256: "abc"`, "does not match"},
		{"api version", "v1alpha2", "v1alpha1", "apiVersion"},
		{"kind", "kind: Plugin", "kind: Plugins", "kind"},
		{"name", "name: mesh", "name: kubectl-mesh", "metadata.name"},
		{"version without v", "version: v0.1.0", "version: 0.1.0", "no v prefix"},
		{"version not semver", "version: v0.1.0", "version: v0.1", "not a semantic version"},
		{"short description with a newline", "shortDescription: Measure the latency and CPU a service mesh adds, per pod", `shortDescription: "two\nlines"`, "line break"},
		{"homepage", "homepage: https://", "homepage: http://", "https URL"},
		{"selector key", "        arch: amd64\n    uri: https://github.com/kubectl-mesh/kubectl-mesh/releases/download/v0.1.0/kubectl-mesh_v0.1.0_linux_amd64",
			"        arch: amd64\n        distro: debian\n    uri: https://github.com/kubectl-mesh/kubectl-mesh/releases/download/v0.1.0/kubectl-mesh_v0.1.0_linux_amd64", `key "distro"`},
		{"duplicate platform", "os: darwin\n        arch: amd64", "os: linux\n        arch: amd64", "as spec.platforms[0] does"},
		{"windows bin", "bin: kubectl-mesh.exe", "bin: kubectl-mesh", `bin "kubectl-mesh" is not "kubectl-mesh.exe"`},
		{"uri of another version", "download/v0.1.0/kubectl-mesh_v0.1.0_linux_arm64", "download/v0.0.9/kubectl-mesh_v0.0.9_linux_arm64", "does not end in"},
		{"no LICENSE", "    - from: LICENSE\n      to: .\n    bin: kubectl-mesh.exe", "    bin: kubectl-mesh.exe", "does not copy LICENSE"},
		{"unknown field", "    bin: kubectl-mesh\n", "    bin: kubectl-mesh\n    binary: x\n", "field binary not found"},
	} {
		if !strings.Contains(good, tc.old) {
			t.Fatalf("%s: %q is not in krew.yaml", tc.name, tc.old)
		}
		bad := strings.Replace(good, tc.old, tc.new, 1)
		m, err := Parse([]byte(bad))
		if err == nil {
			err = m.Check(PluginName)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}

	m, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	m.Spec.ShortDescription = "two\nlines"
	m.Spec.Platforms = m.Spec.Platforms[1:]
	err = m.Check("mesh")
	for _, want := range []string{"line break", "no entry for linux/amd64"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if err := m.Check("mesh.yaml"); err == nil || !strings.Contains(err.Error(), "plugin name") {
		t.Errorf("a name with a dot: %v", err)
	}
}

// (b) krew's own validator, run as a separate tool (importing krew would break our go.mod).
func TestKrewValidatorAcceptsTemplate(t *testing.T) {
	out := runKrewValidator(t, readFile(t, filepath.Join(root, "krew.yaml")))
	for _, step := range []string{"structural validation OK", "all spec.platform[] items are used", "no overlapping spec.platform[].selector"} {
		if !strings.Contains(out, step) {
			t.Errorf("validator output lacks %q:\n%s", step, out)
		}
	}
}

// The reason sha256 values are quoted, shown by krew itself: an all-digit hash becomes +Inf.
func TestKrewValidatorRejectsUnquotedDigits(t *testing.T) {
	good := string(readFile(t, filepath.Join(root, "krew.yaml")))
	bad := strings.Replace(good, `sha256: "`+strings.Repeat("0", 64)+`"`, "sha256: "+strings.Repeat("1", 64), 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := validatorCmd(dir, path).CombinedOutput()
	skipIfProxyUnreachable(t, out)
	if err == nil || !strings.Contains(string(out), "is not valid, must match pattern") {
		t.Fatalf("krew's validator accepted an unquoted all-digit sha256 (err %v):\n%s", err, out)
	}
}

// scripts/dist.sh's pack and manifest steps on stand-in binaries (cross-building kubectl-mesh
// six times is `make dist`'s job, not a unit test's): the archives hold what krew needs, and
// the manifest it renders names them with their real sha256 and passes both checks.
func TestDistManifest(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is needed for scripts/dist.sh")
	}
	dist := t.TempDir()
	for _, tg := range Targets {
		bin := binName(tg)
		dir := filepath.Join(dist, "bin", tg.OS+"_"+tg.Arch)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, bin), []byte("stand-in for "+tg.String()), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const base = "https://downloads.example.test/kubectl-mesh/v1.2.3"
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "dist.sh"), "pack", "manifest")
	cmd.Env = append(os.Environ(), "DIST_DIR="+dist, "VERSION=v1.2.3", "DIST_URI_BASE="+base+"/", "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dist.sh: %v\n%s", err, out)
	}

	rendered := readFile(t, filepath.Join(dist, "mesh.yaml"))
	if bytes.Contains(rendered, []byte("TEMPLATE")) {
		t.Errorf("the template's comments were not dropped")
	}
	m, err := Parse(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check(PluginName); err != nil {
		t.Fatal(err)
	}
	if m.Spec.Version != "v1.2.3" {
		t.Errorf("version %q", m.Spec.Version)
	}
	license := readFile(t, filepath.Join(root, "LICENSE"))
	helper := readFile(t, filepath.Join(root, "scripts", "kubectl_complete-mesh"))
	for _, p := range m.Spec.Platforms {
		tg, _ := p.Selector.target()
		name := filepath.Base(p.URI)
		if p.URI != base+"/"+name {
			t.Errorf("%s: uri %s is not under %s", tg, p.URI, base)
		}
		archive := readFile(t, filepath.Join(dist, name))
		sum := sha256.Sum256(archive)
		if p.Sha256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: manifest sha256 %s, archive's %x", tg, p.Sha256, sum)
		}
		files := archiveFiles(t, name, archive)
		want := map[string]string{binName(tg): "stand-in for " + tg.String(), "LICENSE": string(license)}
		if tg.OS != "windows" {
			want["kubectl_complete-mesh"] = string(helper)
		}
		if len(files) != len(want) {
			t.Errorf("%s: archive holds %d files, want %d", name, len(files), len(want))
		}
		for f, content := range want {
			got, ok := files[f]
			if !ok || got.content != content {
				t.Errorf("%s: %s missing or different", name, f)
			}
			if f != "LICENSE" && got.mode&0o111 == 0 {
				t.Errorf("%s: %s is not executable (mode %o)", name, f, got.mode)
			}
		}
	}
	runKrewValidator(t, rendered)
}

// The completion helper hands kubectl's completion request to the plugin's cobra __complete.
func TestCompletionHelper(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the helper is a POSIX shell script")
	}
	if testing.Short() {
		t.Skip("builds kubectl-mesh")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-mesh"), "./cmd/kubectl-mesh")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "kubectl_complete-mesh"), "")
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl_complete-mesh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// cobra prints one candidate per line (name<TAB>description), then :<directive>.
	if !strings.HasPrefix(lines[len(lines)-1], ":") || !strings.Contains(string(out), "version\t") {
		t.Errorf("completion output:\n%s", out)
	}
}

func binName(t Target) string {
	if t.OS == "windows" {
		return "kubectl-mesh.exe"
	}
	return "kubectl-mesh"
}

type archived struct {
	content string
	mode    os.FileMode
}

func archiveFiles(t *testing.T, name string, data []byte) map[string]archived {
	t.Helper()
	files := map[string]archived{}
	if strings.HasSuffix(name, ".zip") {
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			files[f.Name] = archived{string(b), f.Mode()}
		}
		return files
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = archived{string(b), h.FileInfo().Mode()}
	}
}

// validatorCmd runs krew's validate-krew-manifest v0.4.3 from dir, a temporary directory
// outside this module, with -mod=mod: `go run pkg@version` then resolves krew's own go.mod and
// leaves ours alone.
func validatorCmd(dir, manifest string) *exec.Cmd {
	cmd := exec.Command("go", "run", "sigs.k8s.io/krew/cmd/validate-krew-manifest@v0.4.3", "-manifest", manifest, "-skip-install")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	return cmd
}

// runKrewValidator validates manifest, written to a file named mesh.yaml (krew takes the
// plugin name from the file name), and returns the validator's output.
func runKrewValidator(t *testing.T, manifest []byte) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, PluginName+".yaml")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := validatorCmd(dir, path).CombinedOutput()
	if err != nil {
		skipIfProxyUnreachable(t, out)
		t.Fatalf("krew's validator rejected the manifest: %v\n%s", err, out)
	}
	return string(out)
}

// skipIfProxyUnreachable skips the test when go could not download krew's validator: that
// says nothing about the manifest.
func skipIfProxyUnreachable(t *testing.T, out []byte) {
	t.Helper()
	s := string(out)
	if !strings.Contains(s, "sigs.k8s.io/krew") && !strings.Contains(s, "proxy") {
		return
	}
	for _, sign := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable", "TLS handshake timeout", "server misbehaving"} {
		if strings.Contains(s, sign) {
			t.Skipf("the Go module proxy is unreachable, so krew's validator could not be fetched:\n%s", s)
		}
	}
}
