// Package lab runs a real single-node Kubernetes on one Linux machine: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd with runc, kubelet, kube-proxy and
// CoreDNS, all inside one network namespace of the lab's own. It is what `make lab-up` and
// `make lab-down` run, and what the end-to-end tests and the demo run against.
//
// Everything the lab creates lives under three directories and one network namespace, so that
// tearing it down is complete: StateDir (certificates, configuration, etcd data, containerd's
// and kubelet's roots, logs), RunDir (PID files, sockets) and the namespace. CacheDir holds
// built binaries keyed by version and survives lab-down on purpose: it is what makes a warm
// lab-up take seconds instead of a quarter of an hour.
package lab

import (
	"os"
	"path/filepath"
)

// KubeVersion is the Kubernetes release the lab builds and runs.
const KubeVersion = "v1.37.2"

// CoreDNSVersion is the CoreDNS release built for cluster DNS.
const CoreDNSVersion = "v1.14.7"

// CaddyVersion is the Caddy release of the optional mesh-caddy image (lab/caddy): a third-party
// proxy in the sidecar position, built only on request (`mesh-lab build caddy`).
const CaddyVersion = "v2.11.9"

// Layout says where the lab keeps things and which addresses it uses. The defaults suit a
// machine that runs one lab; every path can be moved with MESH_LAB_DIR and friends.
type Layout struct {
	Name     string // network namespace name and cgroup root name
	StateDir string
	RunDir   string
	CacheDir string
	RepoDir  string // the kubectl-mesh checkout (for building the helper modules)
	BinDir   string // where our own binaries were built (make build)

	NodeName    string
	NodeIP      string
	NodeCIDR    string // node IP with prefix, on the lab's bridge
	Gateway     string // default route's next hop; nothing answers there
	Bridge      string // the lab node's interface
	PodCIDR     string // the node's pod range (CNI host-local)
	ClusterCIDR string // all pods
	ServiceCIDR string
	APIServerIP string // first address of ServiceCIDR: the kubernetes Service
	DNSIP       string
	APIPort     int // API server port inside the lab
	HostAPIPort int // loopback port on the host that relays to the API server
}

// DefaultLayout returns the standard layout, with paths overridable from the environment.
func DefaultLayout() Layout {
	return Layout{
		Name:        "kubectl-mesh-lab",
		StateDir:    env("MESH_LAB_DIR", "/var/lib/kubectl-mesh-lab"),
		RunDir:      env("MESH_LAB_RUN_DIR", "/run/kubectl-mesh-lab"),
		CacheDir:    env("MESH_LAB_CACHE_DIR", "/var/cache/kubectl-mesh-lab"),
		RepoDir:     env("MESH_LAB_REPO", "."),
		BinDir:      env("MESH_LAB_BIN_DIR", "bin"),
		NodeName:    "lab-node",
		NodeIP:      "10.88.0.2",
		NodeCIDR:    "10.88.0.2/24",
		Gateway:     "10.88.0.1",
		Bridge:      "lab0",
		PodCIDR:     "10.244.0.0/24",
		ClusterCIDR: "10.244.0.0/16",
		ServiceCIDR: "10.96.0.0/16",
		APIServerIP: "10.96.0.1",
		DNSIP:       "10.96.0.10",
		APIPort:     6443,
		HostAPIPort: envInt("MESH_LAB_API_PORT", 16443),
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return def
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// Paths derived from the layout.
func (l Layout) PKIDir() string          { return filepath.Join(l.StateDir, "pki") }
func (l Layout) ConfigDir() string       { return filepath.Join(l.StateDir, "config") }
func (l Layout) LogDir() string          { return filepath.Join(l.StateDir, "logs") }
func (l Layout) ImageDir() string        { return filepath.Join(l.StateDir, "images") }
func (l Layout) EtcdDir() string         { return filepath.Join(l.StateDir, "etcd") }
func (l Layout) KubeletDir() string      { return filepath.Join(l.StateDir, "kubelet") }
func (l Layout) PodLogDir() string       { return filepath.Join(l.StateDir, "pod-logs") }
func (l Layout) CNIConfDir() string      { return filepath.Join(l.StateDir, "cni", "net.d") }
func (l Layout) CNIDataDir() string      { return filepath.Join(l.StateDir, "cni", "ipam") }
func (l Layout) ContainerdRoot() string  { return filepath.Join(l.StateDir, "containerd") }
func (l Layout) ContainerdState() string { return filepath.Join(l.RunDir, "containerd") }
func (l Layout) ContainerdSocket() string {
	return filepath.Join(l.RunDir, "containerd", "containerd.sock")
}
func (l Layout) PIDDir() string    { return filepath.Join(l.RunDir, "pids") }
func (l Layout) NetNSPath() string { return filepath.Join("/run/netns", l.Name) }

// Kubeconfig is the admin kubeconfig for use on the host (through the loopback relay).
func (l Layout) Kubeconfig() string { return filepath.Join(l.StateDir, "kubeconfig") }

// KubeBinDir holds the Kubernetes binaries of KubeVersion built from lab/kube.
func (l Layout) KubeBinDir() string { return filepath.Join(l.CacheDir, "kube-"+KubeVersion) }

// CoreDNSBin is the CoreDNS binary built from lab/coredns.
func (l Layout) CoreDNSBin() string {
	return filepath.Join(l.CacheDir, "coredns-"+CoreDNSVersion, "coredns")
}

// CaddyBin is the Caddy binary built from lab/caddy.
func (l Layout) CaddyBin() string {
	return filepath.Join(l.CacheDir, "caddy-"+CaddyVersion, "caddy")
}

// CNINetworkName names the pod network; libcni's result cache files start with it.
const CNINetworkName = "kubectl-mesh-lab-pods"

// Image references of the lab. The registry host does not exist: the images are imported into
// containerd directly, and pods use them with imagePullPolicy IfNotPresent.
const (
	ImageRegistry = "kubectl-mesh.local"
	ImageTag      = "lab"
)

// ImageRef names one of the lab's images.
func ImageRef(name string) string { return ImageRegistry + "/" + name + ":" + ImageTag }
