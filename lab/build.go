package lab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/image"
)

// KubeBinaries are the Kubernetes commands the lab runs (kubectl is for people and tests).
var KubeBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// EnsureKube builds the Kubernetes binaries into the version-keyed cache unless they are there.
// A cold build takes about a quarter of an hour on two cores; a warm one nothing.
func (l Layout) EnsureKube(out io.Writer) error {
	dir := l.KubeBinDir()
	if allExist(dir, KubeBinaries) {
		return nil
	}
	fmt.Fprintf(out, "building Kubernetes %s from source (cold: about 15 minutes on 2 cores; cached in %s afterwards)\n", KubeVersion, dir)
	ldflags := strings.Join([]string{"-s", "-w",
		// Without these the binaries call themselves v0.0.0-master, and version-gated
		// behaviour (and `kubectl version`) would be wrong.
		"-X k8s.io/component-base/version.gitVersion=" + KubeVersion,
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=37",
		"-X k8s.io/component-base/version.gitTreeState=clean",
		"-X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + KubeVersion,
		"-X k8s.io/client-go/pkg/version.gitMajor=1",
		"-X k8s.io/client-go/pkg/version.gitMinor=37",
	}, " ")
	var pkgs []string
	for _, b := range KubeBinaries {
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+b)
	}
	return goBuild(filepath.Join(l.RepoDir, "lab", "kube"), dir, ldflags, pkgs, "", out)
}

// EnsureCoreDNS builds the trimmed CoreDNS of lab/coredns unless it is cached.
func (l Layout) EnsureCoreDNS(out io.Writer) error {
	bin := l.CoreDNSBin()
	if allExist(filepath.Dir(bin), []string{"coredns"}) {
		return nil
	}
	fmt.Fprintf(out, "building CoreDNS %s (cold: a few minutes)\n", CoreDNSVersion)
	return goBuild(filepath.Join(l.RepoDir, "lab", "coredns"), filepath.Dir(bin), "-s -w", []string{"."}, "coredns", out)
}

// EnsureCaddy builds the Caddy of lab/caddy unless it is cached. Nothing else calls it: the
// mesh-caddy image is optional, so a lab that never runs Caddy never pays for its build.
func (l Layout) EnsureCaddy(out io.Writer) error {
	bin := l.CaddyBin()
	if allExist(filepath.Dir(bin), []string{"caddy"}) {
		return nil
	}
	fmt.Fprintf(out, "building Caddy %s (cold: about 4 minutes on 2 cores; cached afterwards)\n", CaddyVersion)
	return goBuild(filepath.Join(l.RepoDir, "lab", "caddy"), filepath.Dir(bin), "-s -w", []string{"."}, "caddy", out)
}

// goBuild builds static binaries into a temporary directory and renames it into place, so that
// an interrupted build never leaves a half-filled cache that a later run would trust. name is
// the binary's name when the one package is the module's own main (".").
func goBuild(moduleDir, dst, ldflags string, pkgs []string, name string, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(moduleDir, "go.mod")); err != nil {
		return fmt.Errorf("build: %s has no go.mod (run from the kubectl-mesh checkout or set MESH_LAB_REPO): %w", moduleDir, err)
	}
	tmp := dst + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	start := time.Now()
	target := tmp + "/"
	if len(pkgs) == 1 && pkgs[0] == "." {
		// Named explicitly: `go build -o dir/ .` would name it after the module path.
		target = filepath.Join(tmp, name)
	}
	args := append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", target}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build: go build in %s: %w", moduleDir, err)
	}
	_ = os.RemoveAll(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fmt.Fprintf(out, "built %s in %s\n", dst, time.Since(start).Round(time.Second))
	return nil
}

func allExist(dir string, names []string) bool {
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// LabImage is one image the lab builds from a binary.
type LabImage struct {
	Name       string // image name (and binary name in /bin)
	Binary     string // path of the binary on the host
	Entrypoint []string
	User       string
	// Optional images are built only when their binary exists: they come from a build the
	// user asks for (mesh-lab build caddy), and a lab without them is complete.
	Optional bool
}

// Images lists the lab's images: the pause (sandbox) image, CoreDNS, and the project's binaries.
func (l Layout) Images() []LabImage {
	bin := func(n string) string { return filepath.Join(l.BinDir, n) }
	return []LabImage{
		{Name: "pause", Binary: bin("mesh-pause"), Entrypoint: []string{"/bin/mesh-pause"}, User: "65535"},
		{Name: "coredns", Binary: l.CoreDNSBin(), Entrypoint: []string{"/bin/coredns"}, User: "65532"},
		{Name: "mesh-echo", Binary: bin("mesh-echo"), Entrypoint: []string{"/bin/mesh-echo"}, User: "65532"},
		{Name: "mesh-probe", Binary: bin("mesh-probe"), Entrypoint: []string{"/bin/mesh-probe"}},
		{Name: "mesh-webhook", Binary: bin("mesh-webhook"), Entrypoint: []string{"/bin/mesh-webhook"}, User: "65532"},
		{Name: "kubectl-mesh", Binary: bin("kubectl-mesh"), Entrypoint: []string{"/bin/kubectl-mesh"}, User: "65532"},
		{Name: "mesh-loadgen", Binary: bin("mesh-loadgen"), Entrypoint: []string{"/bin/mesh-loadgen"}, User: "65532"},
		// The demo sidecar (lab/sidecar): its proxy runs as Istio's does, as UID 1337; its init
		// container overrides the user with root for the nftables rules.
		{Name: "mesh-sidecar", Binary: bin("mesh-sidecar"), Entrypoint: []string{"/bin/mesh-sidecar"}, User: "1337"},
		{Name: "mesh-caddy", Binary: l.CaddyBin(), Entrypoint: []string{"/bin/caddy"}, User: "1337", Optional: true},
	}
}

// BuildImages writes every image as a docker-archive into ImageDir and returns their paths.
func (l Layout) BuildImages() ([]string, error) {
	if err := os.MkdirAll(l.ImageDir(), 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, li := range l.Images() {
		if _, err := os.Stat(li.Binary); err != nil && li.Optional {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("image %s: binary %s missing (run `make build`): %w", li.Name, li.Binary, err)
		}
		img, err := image.Build(image.Spec{Ref: ImageRef(li.Name), Entrypoint: li.Entrypoint, User: li.User,
			Files: []image.File{{Src: li.Binary, Dst: "/bin/" + filepath.Base(li.Entrypoint[0])}}})
		if err != nil {
			return nil, err
		}
		p := filepath.Join(l.ImageDir(), li.Name+".tar")
		if err := image.WriteArchive(p, ImageRef(li.Name), img); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}
