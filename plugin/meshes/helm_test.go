package meshes_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/cli"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/meshes/meshestest"
)

func mesh(t *testing.T, name string) meshes.Mesh {
	t.Helper()
	m, err := meshes.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func chart(t *testing.T, m meshes.Mesh, name string) meshes.Chart {
	t.Helper()
	for _, c := range m.Charts() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s has no chart %s", m.Name(), name)
	return meshes.Chart{}
}

// helmHome points Helm's caches and configuration at a temporary directory.
func helmHome(t *testing.T) *cli.EnvSettings {
	t.Helper()
	d := t.TempDir()
	t.Setenv("HELM_CACHE_HOME", filepath.Join(d, "cache"))
	t.Setenv("HELM_CONFIG_HOME", filepath.Join(d, "config"))
	t.Setenv("HELM_DATA_HOME", filepath.Join(d, "data"))
	return cli.New()
}

func TestChartValuesPerChart(t *testing.T) {
	istio := mesh(t, "istio")
	dir := t.TempDir()
	all := filepath.Join(dir, "all.yaml")
	onlyIstiod := filepath.Join(dir, "istiod.yaml")
	if err := os.WriteFile(all, []byte("global:\n  hub: mirror.internal/istio\n  tag: 1.28.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(onlyIstiod, []byte("pilot:\n  replicaCount: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := meshes.ChartValues{
		Files: []string{all, "istiod:" + onlyIstiod},
		Set:   []string{"global.tag=1.28.1", "istiod:pilot.resources.requests.cpu=100m", "base:defaultRevision=canary", "global.proxy.image=mirror.internal/proxyv2:1.28.1"},
	}
	if err := v.Validate(istio); err != nil {
		t.Fatal(err)
	}
	istiod, err := v.For(istio, chart(t, istio, "istiod"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := v.For(istio, chart(t, istio, "base"))
	if err != nil {
		t.Fatal(err)
	}
	g := istiod["global"].(map[string]any)
	if g["hub"] != "mirror.internal/istio" || g["tag"] != "1.28.1" {
		t.Errorf("istiod global: %v (the file's hub, --set's tag)", g)
	}
	// A value containing a colon is not a chart prefix.
	if g["proxy"].(map[string]any)["image"] != "mirror.internal/proxyv2:1.28.1" {
		t.Errorf("istiod global.proxy: %v", g["proxy"])
	}
	p := istiod["pilot"].(map[string]any)
	if fmt.Sprint(p["replicaCount"]) != "2" || p["resources"].(map[string]any)["requests"].(map[string]any)["cpu"] != "100m" {
		t.Errorf("istiod pilot: %v", p)
	}
	if _, ok := istiod["defaultRevision"]; ok {
		t.Error("base's value reached istiod")
	}
	if _, ok := base["pilot"]; ok || base["defaultRevision"] != "canary" {
		t.Errorf("base values: %v", base)
	}
	bad := meshes.ChartValues{Set: []string{"istiodd:pilot.x=1"}}
	if err := bad.Validate(istio); err == nil || !strings.Contains(err.Error(), `"istiodd"`) {
		t.Errorf("a prefix naming no chart: %v", err)
	}
}

func TestMergeValuesUserWins(t *testing.T) {
	own := map[string]any{"global": map[string]any{"istioNamespace": "mesh", "hub": "a"}, "x": 1}
	user := map[string]any{"global": map[string]any{"hub": "b"}, "y": 2}
	got := meshes.MergeValues(own, user)
	g := got["global"].(map[string]any)
	if g["istioNamespace"] != "mesh" || g["hub"] != "b" || got["x"] != 1 || got["y"] != 2 {
		t.Errorf("merged: %v", got)
	}
	if own["global"].(map[string]any)["hub"] != "a" {
		t.Error("MergeValues changed its argument")
	}
}

func TestChartsForOptional(t *testing.T) {
	istio := mesh(t, "istio")
	got, err := meshes.ChartsFor(istio, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "base,istiod" {
		t.Errorf("default istio charts %v", names)
	}
	got, _ = meshes.ChartsFor(istio, []string{"gateway", "cni"})
	names = nil
	for _, c := range got {
		names = append(names, c.Name+"@"+c.Namespace)
	}
	if strings.Join(names, ",") != "base@,cni@,istiod@,gateway@istio-ingress" {
		t.Errorf("istio with cni and gateway: %v", names)
	}
	if _, err := meshes.ChartsFor(istio, []string{"kiali"}); err == nil || !strings.Contains(err.Error(), "cni, gateway") {
		t.Errorf("unknown optional chart: %v", err)
	}
	if _, err := meshes.ChartsFor(mesh(t, "linkerd"), []string{"viz"}); err == nil || !strings.Contains(err.Error(), "no optional charts") {
		t.Errorf("linkerd with an optional chart: %v", err)
	}
}

// Charts come from a repository (index.yaml, the latest or the asked version), from a local
// directory of packaged charts, or fail with a message naming what is there.
func TestLoadChartFromRepositoryAndDirectory(t *testing.T) {
	settings := helmHome(t)
	istio := mesh(t, "istio")
	url, dir := meshestest.Serve(t, "istio", "1.0.0", "1.1.0")
	in := &meshes.Installer{Settings: settings}

	ch, err := in.LoadChart(istio, chart(t, istio, "istiod"), meshes.Source{RepoURL: url}, "")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "1.1.0" {
		t.Errorf("latest from the repository: %s", ch.Metadata.Version)
	}
	ch, err = in.LoadChart(istio, chart(t, istio, "base"), meshes.Source{RepoURL: url}, "1.0.0")
	if err != nil || ch.Metadata.Version != "1.0.0" || ch.Metadata.Name != "base" {
		t.Fatalf("base 1.0.0 from the repository: %v %v", ch, err)
	}
	if _, err := in.LoadChart(istio, chart(t, istio, "base"), meshes.Source{RepoURL: url}, "9.9.9"); err == nil {
		t.Error("a version the repository lacks was found")
	}

	ch, err = in.LoadChart(istio, chart(t, istio, "istiod"), meshes.Source{Location: dir}, "1.0.0")
	if err != nil || ch.Metadata.Version != "1.0.0" {
		t.Fatalf("istiod 1.0.0 from %s: %v", dir, err)
	}
	ch, err = in.LoadChart(istio, chart(t, istio, "istiod"), meshes.Source{Location: dir}, "")
	if err != nil || ch.Metadata.Version != "1.1.0" {
		t.Fatalf("latest istiod from %s: %v %v", dir, ch, err)
	}
	_, err = in.LoadChart(istio, chart(t, istio, "istiod"), meshes.Source{Location: dir}, "2.0.0")
	if err == nil || !strings.Contains(err.Error(), "1.0.0, 1.1.0") && !strings.Contains(err.Error(), "1.1.0, 1.0.0") {
		t.Errorf("missing version from a directory: %v", err)
	}
	_, err = in.LoadChart(istio, chart(t, istio, "gateway"), meshes.Source{Location: dir}, "")
	if err == nil || !strings.Contains(err.Error(), "no chart gateway") {
		t.Errorf("missing chart from a directory: %v", err)
	}
	// Unpacked chart directories work too (helm pull --untar).
	ch, err = in.LoadChart(istio, chart(t, istio, "base"), meshes.Source{Location: filepath.Join(meshestest.ChartsDir(), "istio")}, "")
	if err != nil || ch.Metadata.Name != "base" {
		t.Fatalf("unpacked base: %v", err)
	}
}

func TestLinkerdTestChartsCarryTheEdgeVersion(t *testing.T) {
	settings := helmHome(t)
	linkerd := mesh(t, "linkerd")
	dir := t.TempDir()
	meshestest.Package(t, "linkerd", dir, "2026.1.2")
	in := &meshes.Installer{Settings: settings}
	ch, err := in.LoadChart(linkerd, chart(t, linkerd, "linkerd-control-plane"), meshes.Source{Location: dir}, linkerd.ChartVersion("edge-26.1.2"))
	if err != nil {
		t.Fatal(err)
	}
	if ch.Values["linkerdVersion"] != "edge-26.1.2" {
		t.Errorf("linkerdVersion %v", ch.Values["linkerdVersion"])
	}
}

func TestConflictExplained(t *testing.T) {
	helmErr := errors.New(`unable to continue with install: ValidatingWebhookConfiguration "istiod-default-validator" in namespace "" exists and cannot be imported into the current release: invalid ownership metadata; label validation error: missing key "app.kubernetes.io/managed-by": must be set to "Helm"`)
	err := meshes.ExplainConflict(helmErr, mesh(t, "istio").ConflictHint)
	msg := err.Error()
	for _, want := range []string{"leftover Istio validating webhook", "kubectl delete validatingwebhookconfiguration istiod-default-validator", "--take-ownership"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Error("the explanation spans lines; the cause must be the last line on stderr")
	}
	if !errors.Is(err, helmErr) {
		t.Error("the explained error does not wrap Helm's")
	}
	other := errors.New("timed out")
	if meshes.ExplainConflict(other, nil) != other {
		t.Error("an error without a conflict changed")
	}
}
