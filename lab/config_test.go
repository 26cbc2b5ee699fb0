package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

func testLayout(t *testing.T) Layout {
	l := DefaultLayout()
	dir := t.TempDir()
	l.StateDir, l.RunDir, l.CacheDir = filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(dir, "cache")
	return l
}

func TestContainerdConfigFollowsDetectedQuirks(t *testing.T) {
	l := testLayout(t)
	for _, restrict := range []bool{true, false} {
		c := l.containerdConfig(Host{RestrictOOMScoreAdj: restrict, CNIBinDir: "/usr/lib/cni"})
		want := "restrict_oom_score_adj = false"
		if restrict {
			want = "restrict_oom_score_adj = true"
		}
		if !strings.Contains(c, want) {
			t.Errorf("restrict=%t: config lacks %q", restrict, want)
		}
		for _, must := range []string{l.ContainerdSocket(), `bin_dir = "/usr/lib/cni"`, `sandbox_image = "kubectl-mesh.local/pause:lab"`, "SystemdCgroup = false"} {
			if !strings.Contains(c, must) {
				t.Errorf("containerd config lacks %q", must)
			}
		}
	}
}

func TestKubeletConfigParsesAndFollowsCgroupVersion(t *testing.T) {
	l := testLayout(t)
	for _, v2 := range []bool{true, false} {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(l.kubeletConfig(Host{CgroupV2: v2})), &cfg); err != nil {
			t.Fatalf("kubelet config is not YAML: %v", err)
		}
		if cfg["failCgroupV1"] != v2 {
			t.Errorf("cgroup v2=%t: failCgroupV1=%v", v2, cfg["failCgroupV1"])
		}
		if cfg["cgroupRoot"] != "/"+l.Name || cfg["cgroupDriver"] != "cgroupfs" {
			t.Errorf("cgroup settings: %v %v", cfg["cgroupRoot"], cfg["cgroupDriver"])
		}
		ev := cfg["evictionHard"].(map[string]any)
		if ev["nodefs.available"] != "1%" {
			t.Errorf("evictionHard: %v", ev)
		}
	}
}

func TestCNIConfigIsValidJSONWithLabPaths(t *testing.T) {
	l := testLayout(t)
	var conf struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(l.cniConfig()), &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != CNINetworkName || len(conf.Plugins) != 2 || conf.Plugins[0]["type"] != "bridge" {
		t.Fatalf("unexpected CNI config: %+v", conf)
	}
	ipam := conf.Plugins[0]["ipam"].(map[string]any)
	if ipam["dataDir"] != l.CNIDataDir() {
		t.Errorf("IPAM state must live in the lab's directory, got %v", ipam["dataDir"])
	}
}

func TestPKIAndKubeconfigs(t *testing.T) {
	l := testLayout(t)
	if err := os.MkdirAll(l.ConfigDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.writePKI(); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Clusters["kubectl-mesh-lab"].Server; got != "https://127.0.0.1:16443" {
		t.Errorf("host kubeconfig server = %s, want the loopback relay", got)
	}
	for _, id := range kubeconfigs {
		if id.file == "admin" {
			continue
		}
		c, err := clientcmd.LoadFromFile(filepath.Join(l.ConfigDir(), id.file+".kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Clusters["kubectl-mesh-lab"].Server; got != "https://10.88.0.2:6443" {
			t.Errorf("%s kubeconfig server = %s", id.file, got)
		}
	}
	for _, f := range []string{"ca.crt", "ca.key", "apiserver.crt", "kubelet-server.crt", "sa.key", "sa.pub", "etcd-server.crt"} {
		if _, err := os.Stat(filepath.Join(l.PKIDir(), f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	if st, _ := os.Stat(filepath.Join(l.PKIDir(), "ca.key")); st != nil && st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v", st.Mode().Perm())
	}
}

func TestComponentArgsUseLabPaths(t *testing.T) {
	l := testLayout(t)
	api := argvString(l.apiserverArgs())
	for _, must := range []string{"--advertise-address=10.88.0.2", "--authorization-mode=Node,RBAC", "--kubelet-preferred-address-types=InternalIP", "--enable-admission-plugins=NodeRestriction", "https://127.0.0.1:2379"} {
		if !strings.Contains(api, must) {
			t.Errorf("kube-apiserver args lack %q", must)
		}
	}
	if !strings.Contains(argvString(l.kubeletArgs()), "--root-dir="+l.KubeletDir()) {
		t.Error("kubelet must use the lab's root dir")
	}
	if !strings.Contains(argvString(l.etcdArgs()), "--client-cert-auth=true") {
		t.Error("etcd must require client certificates")
	}
}

func TestLayoutFromEnvironment(t *testing.T) {
	t.Setenv("MESH_LAB_DIR", "/tmp/x-state")
	t.Setenv("MESH_LAB_API_PORT", "17443")
	l := DefaultLayout()
	if l.StateDir != "/tmp/x-state" || l.HostAPIPort != 17443 || l.Kubeconfig() != "/tmp/x-state/kubeconfig" {
		t.Fatalf("layout: %+v", l)
	}
	t.Setenv("MESH_LAB_API_PORT", "not-a-port")
	if DefaultLayout().HostAPIPort != 16443 {
		t.Fatal("a malformed port must fall back to the default")
	}
}
