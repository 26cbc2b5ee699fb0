package meshes_test

import (
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"helm.sh/helm/v4/pkg/registry"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes/meshestest"
)

// Charts pushed to an OCI registry (an in-memory one on 127.0.0.1, plain HTTP) are found under
// the --chart oci:// prefix by name and version, the latest when no version is asked for.
func TestLoadChartFromOCIRegistry(t *testing.T) {
	settings := helmHome(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	host := ln.Addr().String()

	dir := t.TempDir()
	meshestest.Package(t, "linkerd", dir, "2026.1.1", "2026.2.1")
	rc, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptWriter(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2026.1.1", "2026.2.1"} {
		for _, name := range []string{"linkerd-crds", "linkerd-control-plane"} {
			data, err := os.ReadFile(filepath.Join(dir, name+"-"+v+".tgz"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rc.Push(data, host+"/charts/"+name+":"+v); err != nil {
				t.Fatalf("push %s %s: %v", name, v, err)
			}
		}
	}

	linkerd := mesh(t, "linkerd")
	in := &meshes.Installer{Settings: settings}
	src := meshes.Source{Location: "oci://" + host + "/charts/", PlainHTTP: true}
	ch, err := in.LoadChart(linkerd, chart(t, linkerd, "linkerd-control-plane"), src, "2026.1.1")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Name != "linkerd-control-plane" || ch.Metadata.Version != "2026.1.1" || ch.Values["linkerdVersion"] != "edge-26.1.1" {
		t.Errorf("got %s %s (%v)", ch.Metadata.Name, ch.Metadata.Version, ch.Values["linkerdVersion"])
	}
	ch, err = in.LoadChart(linkerd, chart(t, linkerd, "linkerd-crds"), src, "")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "2026.2.1" {
		t.Errorf("latest from the registry: %s", ch.Metadata.Version)
	}
}
