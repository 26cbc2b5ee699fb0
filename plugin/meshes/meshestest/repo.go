// Package meshestest packages the test charts of plugin/meshes (testdata/charts) at the versions a
// test asks for, and serves them as a Helm chart repository on 127.0.0.1, as the official
// repositories serve the real charts: index.yaml and NAME-VERSION.tgz.
package meshestest

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// ChartsDir is plugin/meshes/testdata/charts, wherever the test runs from.
func ChartsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "charts")
}

var calVer = regexp.MustCompile(`^20(\d\d)\.(\d+\.\d+)$`)

// Package writes every chart of ChartsDir()/mesh at each version into dir as NAME-VERSION.tgz.
// The version is also the chart's appVersion, and, as in Linkerd's edge charts, a calendar
// version 2026.1.2 makes linkerdVersion edge-26.1.2.
func Package(t testing.TB, mesh, dir string, versions ...string) {
	t.Helper()
	src := filepath.Join(ChartsDir(), mesh)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, v := range versions {
			ch, err := loader.LoadDir(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatalf("test chart %s: %v", e.Name(), err)
			}
			ch.Metadata.Version, ch.Metadata.AppVersion = v, v
			if m := calVer.FindStringSubmatch(v); m != nil {
				for _, f := range ch.Raw {
					if f.Name == chartutil.ValuesfileName {
						f.Data = regexp.MustCompile(`(?m)^linkerdVersion: .*$`).ReplaceAll(f.Data, []byte("linkerdVersion: edge-"+m[1]+"."+m[2]))
					}
				}
			}
			if _, err := chartutil.Save(ch, dir); err != nil {
				t.Fatalf("packaging test chart %s %s: %v", e.Name(), v, err)
			}
		}
	}
}

// Serve packages mesh's test charts at versions into a temporary directory, serves it as a chart
// repository on 127.0.0.1 until the test ends, and returns the repository's URL and directory.
func Serve(t testing.TB, mesh string, versions ...string) (url, dir string) {
	t.Helper()
	dir = t.TempDir()
	Package(t, mesh, dir, versions...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url = "http://" + ln.Addr().String()
	idx, err := repo.IndexDirectory(dir, url)
	if err != nil {
		t.Fatal(err)
	}
	idx.SortEntries()
	if err := idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return url, dir
}
