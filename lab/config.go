package lab

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-mesh/kubectl-mesh/lab/pki"
)

// Host describes what was detected about the machine, so that configuration follows the host
// instead of assuming it (see docs/lab.md for the quirks these switch on).
type Host struct {
	// CgroupV2 is true on a pure cgroup v2 ("unified") host. False means v1 or hybrid, where
	// kubelet 1.37 must be told failCgroupV1: false.
	CgroupV2 bool
	// RestrictOOMScoreAdj is true where a process may not lower its oom_score_adj (some
	// sandboxes refuse negative values). The pod sandbox asks for -998; containerd then fails
	// to start any pod unless it clamps the value (CRI restrict_oom_score_adj).
	RestrictOOMScoreAdj bool
	// CNIBinDir is where the CNI plugins are (/usr/lib/cni on Debian, /opt/cni/bin elsewhere).
	CNIBinDir string
	// CgroupMounts are the cgroup hierarchies under /sys/fs/cgroup, where the lab makes its
	// cgroup root.
	CgroupMounts []string
}

// identities of the components, as the API server's default RBAC expects them.
type identity struct {
	file, cn string
	orgs     []string
}

var kubeconfigs = []identity{
	{"admin", "kubectl-mesh-lab-admin", []string{"system:masters"}},
	{"controller-manager", "system:kube-controller-manager", nil},
	{"scheduler", "system:kube-scheduler", nil},
	{"kubelet", "system:node:lab-node", []string{"system:nodes"}},
	{"kube-proxy", "system:kube-proxy", nil},
}

// writePKI generates the CA, every certificate and the service account key.
func (l Layout) writePKI() error {
	dir := l.PKIDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("kubectl-mesh-lab-ca")
	if err != nil {
		return err
	}
	if err := pki.WritePair(dir, "ca", ca.Cert, ca.Key); err != nil {
		return err
	}
	nodeIP := net.ParseIP(l.NodeIP)
	loop := net.ParseIP("127.0.0.1")
	certs := map[string]pki.Request{
		"etcd-server":                {CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: []net.IP{loop}, Server: true, Client: true},
		"etcd-peer":                  {CommonName: "etcd-peer", DNSNames: []string{"localhost"}, IPs: []net.IP{loop}, Server: true, Client: true},
		"apiserver-etcd-client":      {CommonName: "kube-apiserver-etcd-client", Client: true},
		"apiserver":                  {CommonName: "kube-apiserver", DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", l.NodeName}, IPs: []net.IP{loop, nodeIP, net.ParseIP(l.APIServerIP)}, Server: true},
		"apiserver-kubelet-client":   {CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true},
		"kubelet-server":             {CommonName: l.NodeName, DNSNames: []string{l.NodeName, "localhost"}, IPs: []net.IP{nodeIP, loop}, Server: true},
		"front-proxy-client":         {CommonName: "front-proxy-client", Client: true},
		"controller-manager-serving": {CommonName: "kube-controller-manager", DNSNames: []string{"localhost"}, IPs: []net.IP{loop}, Server: true},
		"scheduler-serving":          {CommonName: "kube-scheduler", DNSNames: []string{"localhost"}, IPs: []net.IP{loop}, Server: true},
	}
	for name, req := range certs {
		leaf, err := ca.Issue(req)
		if err != nil {
			return err
		}
		if err := pki.WritePair(dir, name, leaf.Cert, leaf.Key); err != nil {
			return err
		}
	}
	// The service account signing key is a plain key pair, not a certificate.
	sa, err := pki.NewCA("service-accounts")
	if err != nil {
		return err
	}
	keyPEM, err := pki.KeyPEM(sa.Key)
	if err != nil {
		return err
	}
	pubPEM, err := pki.PublicKeyPEM(sa.Key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pubPEM, 0o644); err != nil {
		return err
	}
	// One kubeconfig per identity. Components inside the lab talk to the API server at the node
	// IP; the admin kubeconfig for the host goes through the loopback relay.
	for _, id := range kubeconfigs {
		leaf, err := ca.Issue(pki.Request{CommonName: id.cn, Organization: id.orgs, Client: true})
		if err != nil {
			return err
		}
		server := fmt.Sprintf("https://%s:%d", l.NodeIP, l.APIPort)
		path := filepath.Join(l.ConfigDir(), id.file+".kubeconfig")
		if id.file == "admin" {
			if err := writeKubeconfig(filepath.Join(l.ConfigDir(), "admin-in-lab.kubeconfig"), server, ca.Cert, leaf); err != nil {
				return err
			}
			server = fmt.Sprintf("https://127.0.0.1:%d", l.HostAPIPort)
			path = l.Kubeconfig()
		}
		if err := writeKubeconfig(path, server, ca.Cert, leaf); err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, server string, ca *x509.Certificate, leaf *pki.Leaf) error {
	keyPEM, err := pki.KeyPEM(leaf.Key)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubectl-mesh-lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pki.CertPEM(ca)}
	cfg.AuthInfos[leaf.Cert.Subject.CommonName] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.CertPEM(leaf.Cert), ClientKeyData: keyPEM}
	cfg.Contexts["kubectl-mesh-lab"] = &clientcmdapi.Context{Cluster: "kubectl-mesh-lab", AuthInfo: leaf.Cert.Subject.CommonName}
	cfg.CurrentContext = "kubectl-mesh-lab"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}

// writeConfigs writes containerd's, kubelet's, kube-proxy's and CNI's configuration.
func (l Layout) writeConfigs(h Host) error {
	files := map[string]string{
		filepath.Join(l.ConfigDir(), "containerd.toml"):       l.containerdConfig(h),
		filepath.Join(l.ConfigDir(), "kubelet.yaml"):          l.kubeletConfig(h),
		filepath.Join(l.ConfigDir(), "kube-proxy.yaml"):       l.kubeProxyConfig(),
		filepath.Join(l.ConfigDir(), "resolv.conf"):           l.resolvConf(),
		filepath.Join(l.CNIConfDir(), "10-lab-pods.conflist"): l.cniConfig(),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (l Layout) containerdConfig(h Host) string {
	// Version 2 is the format containerd 1.6 and 1.7 read. Every path points into the lab's
	// own directories so that a containerd the machine may already run is never touched.
	return fmt.Sprintf(`version = 2
root = %q
state = %q
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Set when this machine refuses negative oom_score_adj values (detected at lab-up).
  restrict_oom_score_adj = %t
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # kubelet runs with the cgroupfs driver (there is no systemd here).
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, l.ContainerdRoot(), l.ContainerdState(), l.ContainerdSocket(), l.ContainerdSocket()+".ttrpc",
		filepath.Join(l.ContainerdRoot(), "opt"), ImageRef("pause"), h.RestrictOOMScoreAdj, h.CNIBinDir, l.CNIConfDir())
}

func (l Layout) kubeletConfig(h Host) string {
	pkiDir := l.PKIDir()
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
# No systemd on the lab's machines: cgroups are managed directly.
cgroupDriver: cgroupfs
# Pods go under a cgroup root of the lab's own, so lab-down can remove exactly what it made.
cgroupRoot: /%s
# kubelet 1.37 refuses cgroup v1 unless told otherwise; hybrid hosts are v1 for it.
failCgroupV1: %t
clusterDNS:
- %s
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://%s
resolvConf: %s
podLogsDir: %s
tlsCertFile: %s
tlsPrivateKeyFile: %s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
failSwapOn: false
rotateCertificates: false
serializeImagePulls: false
# The lab's images cannot be pulled again (there is no registry): never garbage-collect them,
# and do not evict pods because the build machine's disk is fuller than a real node's would be.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
maxPods: 110
`, filepath.Join(pkiDir, "ca.crt"), l.Name, h.CgroupV2, l.DNSIP, l.ContainerdSocket(),
		filepath.Join(l.ConfigDir(), "resolv.conf"), l.PodLogDir(),
		filepath.Join(pkiDir, "kubelet-server.crt"), filepath.Join(pkiDir, "kubelet-server.key"), l.NodeIP)
}

func (l Layout) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the namespace's conntrack table size and timeouts alone: they are not all writable
# from a network namespace other than the initial one.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, filepath.Join(l.ConfigDir(), "kube-proxy.kubeconfig"), l.ClusterCIDR, l.NodeName)
}

// resolvConf is the node's resolver configuration as pods with dnsPolicy Default see it. It
// points at the node's own address, where nothing answers DNS: the host's nameserver is outside
// the lab and must stay unreachable from it.
func (l Layout) resolvConf() string {
	return fmt.Sprintf("nameserver %s\noptions timeout:1 attempts:1\n", l.NodeIP)
}

func (l Layout) cniConfig() string {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       CNINetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "cni0",
				"isGateway":   true,
				"ipMasq":      false, // nothing leaves the lab, so nothing needs masquerading
				"hairpinMode": true,  // a pod reaching its own Service
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": l.PodCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": l.CNIDataDir(),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return string(b) + "\n"
}

// argv of every component.

func (l Layout) etcdArgs() []string {
	p := l.PKIDir()
	return []string{"etcd",
		"--name=lab",
		"--data-dir=" + l.EtcdDir(),
		"--listen-client-urls=https://127.0.0.1:2379",
		"--advertise-client-urls=https://127.0.0.1:2379",
		"--listen-peer-urls=https://127.0.0.1:2380",
		"--initial-advertise-peer-urls=https://127.0.0.1:2380",
		"--initial-cluster=lab=https://127.0.0.1:2380",
		"--listen-metrics-urls=http://127.0.0.1:2381",
		"--cert-file=" + filepath.Join(p, "etcd-server.crt"),
		"--key-file=" + filepath.Join(p, "etcd-server.key"),
		"--trusted-ca-file=" + filepath.Join(p, "ca.crt"),
		"--client-cert-auth=true",
		"--peer-cert-file=" + filepath.Join(p, "etcd-peer.crt"),
		"--peer-key-file=" + filepath.Join(p, "etcd-peer.key"),
		"--peer-trusted-ca-file=" + filepath.Join(p, "ca.crt"),
		"--peer-client-cert-auth=true",
		"--snapshot-count=10000",
		"--quota-backend-bytes=2147483648",
	}
}

func (l Layout) apiserverArgs() []string {
	p := l.PKIDir()
	return []string{filepath.Join(l.KubeBinDir(), "kube-apiserver"),
		"--advertise-address=" + l.NodeIP,
		"--bind-address=0.0.0.0",
		fmt.Sprintf("--secure-port=%d", l.APIPort),
		"--etcd-servers=https://127.0.0.1:2379",
		"--etcd-cafile=" + filepath.Join(p, "ca.crt"),
		"--etcd-certfile=" + filepath.Join(p, "apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + filepath.Join(p, "apiserver-etcd-client.key"),
		"--client-ca-file=" + filepath.Join(p, "ca.crt"),
		"--tls-cert-file=" + filepath.Join(p, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(p, "apiserver.key"),
		"--tls-min-version=VersionTLS12",
		"--kubelet-client-certificate=" + filepath.Join(p, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(p, "apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + filepath.Join(p, "ca.crt"),
		// The node name is not in any DNS the API server can reach.
		"--kubelet-preferred-address-types=InternalIP",
		"--proxy-client-cert-file=" + filepath.Join(p, "front-proxy-client.crt"),
		"--proxy-client-key-file=" + filepath.Join(p, "front-proxy-client.key"),
		"--requestheader-client-ca-file=" + filepath.Join(p, "ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(p, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(p, "sa.key"),
		"--service-cluster-ip-range=" + l.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		// NodeRestriction on top of the default plugins, which already include
		// MutatingAdmissionWebhook, ValidatingAdmissionWebhook and PodSecurity.
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
}

func (l Layout) controllerManagerArgs() []string {
	p := l.PKIDir()
	kc := filepath.Join(l.ConfigDir(), "controller-manager.kubeconfig")
	return []string{filepath.Join(l.KubeBinDir(), "kube-controller-manager"),
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + filepath.Join(p, "controller-manager-serving.crt"),
		"--tls-private-key-file=" + filepath.Join(p, "controller-manager-serving.key"),
		"--client-ca-file=" + filepath.Join(p, "ca.crt"),
		"--requestheader-client-ca-file=" + filepath.Join(p, "ca.crt"),
		"--root-ca-file=" + filepath.Join(p, "ca.crt"),
		"--service-account-private-key-file=" + filepath.Join(p, "sa.key"),
		"--cluster-signing-cert-file=" + filepath.Join(p, "ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(p, "ca.key"),
		"--use-service-account-credentials=true",
		"--cluster-name=kubectl-mesh-lab",
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + l.ClusterCIDR,
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range=" + l.ServiceCIDR,
		// One node, one instance: leader election only delays start-up.
		"--leader-elect=false",
		"--v=1",
	}
}

func (l Layout) schedulerArgs() []string {
	p := l.PKIDir()
	kc := filepath.Join(l.ConfigDir(), "scheduler.kubeconfig")
	return []string{filepath.Join(l.KubeBinDir(), "kube-scheduler"),
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + filepath.Join(p, "scheduler-serving.crt"),
		"--tls-private-key-file=" + filepath.Join(p, "scheduler-serving.key"),
		"--leader-elect=false",
		"--v=1",
	}
}

func (l Layout) containerdArgs() []string {
	return []string{"containerd", "--config=" + filepath.Join(l.ConfigDir(), "containerd.toml")}
}

func (l Layout) kubeletArgs() []string {
	return []string{filepath.Join(l.KubeBinDir(), "kubelet"),
		"--config=" + filepath.Join(l.ConfigDir(), "kubelet.yaml"),
		"--kubeconfig=" + filepath.Join(l.ConfigDir(), "kubelet.kubeconfig"),
		"--root-dir=" + l.KubeletDir(),
		"--hostname-override=" + l.NodeName,
		"--node-ip=" + l.NodeIP,
		"--v=1",
	}
}

func (l Layout) kubeProxyArgs() []string {
	return []string{filepath.Join(l.KubeBinDir(), "kube-proxy"),
		"--config=" + filepath.Join(l.ConfigDir(), "kube-proxy.yaml"),
		"--v=1",
	}
}

// String renders an argv for logs.
func argvString(a []string) string { return strings.Join(a, " ") }
