package lab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBuildImagesSidecarAndOptionalCaddy builds the images from stand-in binaries: mesh-sidecar
// is one of the lab's images, and mesh-caddy is built only once its binary is in the cache.
func TestBuildImagesSidecarAndOptionalCaddy(t *testing.T) {
	l := testLayout(t)
	l.BinDir = t.TempDir()
	for _, li := range l.Images() {
		if li.Optional || li.Name == "coredns" {
			continue
		}
		if err := os.WriteFile(li.Binary, []byte("#!stand-in\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(l.CoreDNSBin()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.CoreDNSBin(), []byte("#!stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	built := func() []string {
		t.Helper()
		paths, err := l.BuildImages()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range paths {
			names = append(names, strings.TrimSuffix(filepath.Base(p), ".tar"))
		}
		return names
	}
	names := built()
	if !slices.Contains(names, "mesh-sidecar") || slices.Contains(names, "mesh-caddy") {
		t.Fatalf("without Caddy built: images %v, want mesh-sidecar and no mesh-caddy", names)
	}
	if err := os.MkdirAll(filepath.Dir(l.CaddyBin()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.CaddyBin(), []byte("#!stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if names := built(); !slices.Contains(names, "mesh-caddy") {
		t.Fatalf("with Caddy built: images %v, want mesh-caddy", names)
	}

	// A missing required binary is still an error.
	if err := os.Remove(filepath.Join(l.BinDir, "mesh-sidecar")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.BuildImages(); err == nil || !strings.Contains(err.Error(), "mesh-sidecar") {
		t.Errorf("without the mesh-sidecar binary: %v", err)
	}
}
