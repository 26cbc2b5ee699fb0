package image

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestBuildWriteReadBack(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Ref: "kubectl-mesh.local/hello:test", Files: []File{{Src: bin, Dst: "/bin/hello"}}, Entrypoint: []string{"/bin/hello"}, User: "65532"}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := Digest(img)
	d2, _ := Digest(again)
	if d1 != d2 {
		t.Fatalf("same inputs gave different digests: %s %s", d1, d2)
	}
	archive := filepath.Join(dir, "img.tar")
	if err := WriteArchive(archive, spec.Ref, img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(spec.Ref)
	back, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/bin/hello" {
		t.Fatalf("config: %+v", cfg.Config)
	}
	layers, err := back.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	found := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[h.Name] = h.Mode
	}
	if found["bin/hello"] != 0o755 || found["tmp/"] != 0o1777 || found["etc/passwd"] != 0o644 {
		t.Fatalf("layer content: %v", found)
	}
}

func TestBuildRejectsEmpty(t *testing.T) {
	if _, err := Build(Spec{Ref: "x/y:z"}); err == nil {
		t.Fatal("expected an error for an image without files")
	}
}
