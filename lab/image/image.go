// Package image builds container images from the project's own static Go binaries, with no
// Docker engine and no registry, and imports them into the lab's containerd.
//
// An image here is one layer on top of nothing ("FROM scratch"): the binaries, /tmp and a
// minimal /etc/passwd so that numeric users have names. Timestamps are fixed, so the same
// binaries always give the same image digest and a rebuild that changed nothing is visible as
// such.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the fixed modification time of every file in our images.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// File is a file to place in the image.
type File struct {
	Src  string // path on the build machine
	Dst  string // absolute path in the image
	Mode int64  // file mode; 0 means 0755 (our files are executables)
}

// Spec describes an image.
type Spec struct {
	Ref        string // e.g. kubectl-mesh.local/mesh-probe:dev
	Files      []File
	Entrypoint []string
	User       string // numeric UID, empty for root
	Env        []string
}

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	if len(s.Files) == 0 {
		return nil, fmt.Errorf("image %s: no files", s.Ref)
	}
	layerTar, err := layerBytes(s.Files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = goarch()
	cfg.OS = "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = s.Entrypoint
	cfg.Config.User = s.User
	cfg.Config.Env = append([]string{"PATH=/bin"}, s.Env...)
	cfg.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cfg)
}

func layerBytes(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/tmp": true, "/etc": true}
	for _, f := range files {
		for d := path.Dir(f.Dst); d != "/" && d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList) // parents sort before children
	for _, d := range dirList {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	etc := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/false\nnonroot:x:65532:65532:nonroot:/tmp:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"/etc/group":  "root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n",
	}
	for _, p := range []string{"/etc/group", "/etc/passwd"} {
		if err := writeFile(tw, p, 0o644, []byte(etc[p])); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := writeFile(tw, f.Dst, mode, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, p string, mode int64, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(b)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// WriteArchive writes img as a docker-archive tarball tagged ref, the format `ctr images
// import` reads.
func WriteArchive(dst, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image: bad reference %q: %w", ref, err)
	}
	return tarball.WriteToFile(dst, tag, img)
}

// Import loads an archive into containerd's k8s.io namespace (the one the CRI plugin, and so
// kubelet, uses) through the given socket.
func Import(containerdSocket, archive string) error {
	cmd := exec.Command("ctr", "--address", containerdSocket, "--namespace", "k8s.io", "images", "import", archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("image: ctr import %s: %v: %s", archive, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Digest returns the image's manifest digest, used to skip re-imports of unchanged images.
func Digest(img v1.Image) (string, error) {
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
