package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-mesh/kubectl-mesh/lab/image"
	"github.com/kubectl-mesh/kubectl-mesh/lab/netns"
	"github.com/kubectl-mesh/kubectl-mesh/lab/proc"
)

// Component order: started in this order, stopped in reverse.
var components = []string{"etcd", "containerd", "kube-apiserver", "api-relay", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// Lab runs the lab described by a Layout.
type Lab struct {
	Layout
	Out io.Writer // progress for people
	// SelfExe is the mesh-lab binary; the API relay runs as `mesh-lab relay`.
	SelfExe string
}

// Timings records how long lab-up's phases took (reported in docs/benchmarks.md).
type Timings struct {
	Build, Start, NodeReady, DNS, Smoke, Total time.Duration
}

func (lab *Lab) logf(format string, a ...any) {
	if lab.Out != nil {
		fmt.Fprintf(lab.Out, format+"\n", a...)
	}
}

// Running reports whether every component of the lab runs.
func (lab *Lab) Running() (bool, []string) {
	var dead []string
	for _, c := range components {
		p, err := proc.Load(lab.PIDDir(), lab.LogDir(), c)
		if err != nil || !p.Alive() {
			dead = append(dead, c)
		}
	}
	return len(dead) == 0 && netns.Exists(lab.Name), dead
}

// HasRemains reports whether anything of a lab is present (a PID file, the namespace, state).
func (lab *Lab) HasRemains() bool {
	for _, p := range []string{lab.PIDDir(), lab.StateDir, lab.RunDir, lab.NetNSPath()} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Up brings the lab up and returns when the node is Ready, cluster DNS answers and a pod reaches
// a Service by its DNS name. A lab that is already up and healthy is left alone; the remains of
// a crashed one are torn down first.
func (lab *Lab) Up(ctx context.Context) (Timings, error) {
	var t Timings
	start := time.Now()
	host, err := DetectHost()
	if err != nil {
		return t, err
	}
	if err := CheckPrerequisites(host); err != nil {
		return t, err
	}
	if ok, _ := lab.Running(); ok {
		if err := lab.checkHealthy(ctx, 20*time.Second); err == nil {
			// The binaries may have been rebuilt since: import the images again (the same
			// tags, new content), so that new pods run the current code. Running pods keep
			// theirs until they are recreated.
			images, err := lab.BuildImages()
			if err != nil {
				return t, err
			}
			for _, img := range images {
				if err := image.Import(lab.ContainerdSocket(), img); err != nil {
					return t, err
				}
			}
			lab.logf("lab is already up; %d images refreshed", len(images))
			t.Total = time.Since(start)
			return t, nil
		}
		lab.logf("lab processes run but the cluster is unhealthy: restarting it")
	}
	if lab.HasRemains() {
		lab.logf("cleaning up the remains of an earlier lab")
		if err := lab.Down(ctx); err != nil {
			return t, fmt.Errorf("lab: cleaning up an earlier lab: %w", err)
		}
	}
	if err := lab.checkPortFree(); err != nil {
		return t, err
	}

	// Build (or find cached) binaries and images.
	if err := lab.EnsureKube(lab.Out); err != nil {
		return t, err
	}
	if err := lab.EnsureCoreDNS(lab.Out); err != nil {
		return t, err
	}
	images, err := lab.BuildImages()
	if err != nil {
		return t, err
	}
	t.Build = time.Since(start)
	lab.logf("host: cgroup v2=%t, restrict oom_score_adj=%t, CNI plugins in %s", host.CgroupV2, host.RestrictOOMScoreAdj, host.CNIBinDir)

	// Network namespace, files, cgroup root.
	phase := time.Now()
	for _, d := range []string{lab.StateDir, lab.RunDir, lab.ConfigDir(), lab.LogDir(), lab.PIDDir(), lab.EtcdDir(), lab.KubeletDir(), lab.PodLogDir(), lab.CNIDataDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return t, err
		}
	}
	if err := os.Chmod(lab.EtcdDir(), 0o700); err != nil {
		return t, err
	}
	if err := netns.Create(netns.Node{Name: lab.Name, Bridge: lab.Bridge, CIDR: lab.NodeCIDR, Gateway: lab.Gateway}); err != nil {
		return t, err
	}
	if err := netns.Sysctl(lab.Name, map[string]string{
		"net.ipv4.ip_forward":                 "1",
		"net.bridge.bridge-nf-call-iptables":  "1", // Service traffic between pods on one bridge must see iptables
		"net.bridge.bridge-nf-call-ip6tables": "1",
		"net.ipv4.conf.all.route_localnet":    "1",
	}); err != nil {
		return t, fmt.Errorf("%w (is the br_netfilter module loaded? try: modprobe br_netfilter)", err)
	}
	if err := lab.makeCgroupRoot(host); err != nil {
		return t, err
	}
	if err := lab.writePKI(); err != nil {
		return t, err
	}
	if err := lab.writeConfigs(host); err != nil {
		return t, err
	}

	// Processes. etcd and containerd first: neither needs the other, and images can be
	// imported while the API server starts.
	ns := lab.NetNSPath()
	if _, err := lab.start("etcd", lab.etcdArgs(), ns); err != nil {
		return t, err
	}
	if _, err := lab.start("containerd", lab.containerdArgs(), ns); err != nil {
		return t, err
	}
	if err := lab.waitFor(ctx, "etcd", 30*time.Second, lab.etcdHealthy); err != nil {
		return t, err
	}
	if _, err := lab.start("kube-apiserver", lab.apiserverArgs(), ns); err != nil {
		return t, err
	}
	if _, err := lab.start("api-relay", []string{lab.SelfExe, "relay", "--listen", lab.hostAPIAddr(),
		"--netns", ns, "--to", net.JoinHostPort(lab.NodeIP, strconv.Itoa(lab.APIPort))}, ""); err != nil {
		return t, err
	}
	if err := lab.waitFor(ctx, "containerd", 30*time.Second, func(context.Context) error {
		_, err := os.Stat(lab.ContainerdSocket())
		return err
	}); err != nil {
		return t, err
	}
	for _, img := range images {
		if err := image.Import(lab.ContainerdSocket(), img); err != nil {
			return t, err
		}
	}
	if err := lab.waitFor(ctx, "kube-apiserver", 90*time.Second, lab.apiReady); err != nil {
		return t, err
	}
	for _, c := range []struct {
		name string
		argv []string
	}{
		{"kube-controller-manager", lab.controllerManagerArgs()},
		{"kube-scheduler", lab.schedulerArgs()},
		{"kubelet", lab.kubeletArgs()},
		{"kube-proxy", lab.kubeProxyArgs()},
	} {
		if _, err := lab.start(c.name, c.argv, ns); err != nil {
			return t, err
		}
	}
	t.Start = time.Since(phase)

	cs, err := lab.Client()
	if err != nil {
		return t, err
	}
	phase = time.Now()
	if err := lab.waitFor(ctx, "kubelet", 120*time.Second, func(ctx context.Context) error { return nodeReady(ctx, cs, lab.NodeName) }); err != nil {
		return t, err
	}
	t.NodeReady = time.Since(phase)
	lab.logf("node %s is Ready (%s)", lab.NodeName, t.NodeReady.Round(100*time.Millisecond))

	phase = time.Now()
	if err := lab.deployDNS(ctx, cs); err != nil {
		return t, err
	}
	t.DNS = time.Since(phase)
	lab.logf("cluster DNS is up (%s)", t.DNS.Round(100*time.Millisecond))

	phase = time.Now()
	if err := lab.smokeTest(ctx, cs); err != nil {
		return t, err
	}
	t.Smoke = time.Since(phase)
	t.Total = time.Since(start)
	lab.logf("a pod reached a Service by DNS name (%s)", t.Smoke.Round(100*time.Millisecond))
	return t, nil
}

func (lab *Lab) hostAPIAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(lab.HostAPIPort))
}

// checkPortFree fails early, with a clear message, when the relay's loopback port is taken.
func (lab *Lab) checkPortFree() error {
	l, err := net.Listen("tcp", lab.hostAPIAddr())
	if err != nil {
		return fmt.Errorf("lab: port %d on 127.0.0.1 is in use (%v); free it or choose another with MESH_LAB_API_PORT", lab.HostAPIPort, err)
	}
	return l.Close()
}

func (lab *Lab) start(name string, argv []string, ns string) (*proc.Process, error) {
	p, err := proc.Start(proc.Spec{Name: name, Argv: argv, NetNS: ns, LogDir: lab.LogDir(), PIDDir: lab.PIDDir(), Dir: lab.StateDir})
	if err != nil {
		return nil, err
	}
	lab.logf("started %-24s pid %d", name, p.PID)
	return p, nil
}

// waitFor polls check until it succeeds, the timeout passes, or a component of the lab dies:
// then the error names the component and shows the end of its log.
func (lab *Lab) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if err := lab.deadComponent(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			p, _ := proc.Load(lab.PIDDir(), lab.LogDir(), what)
			tail := ""
			if p != nil {
				tail = "\n" + proc.Tail(p.LogPath, 30)
			}
			return fmt.Errorf("lab: %s not ready after %s: %v%s", what, timeout, last, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// deadComponent returns an error for the first started component that is no longer running.
func (lab *Lab) deadComponent() error {
	for _, c := range components {
		p, err := proc.Load(lab.PIDDir(), lab.LogDir(), c)
		if err != nil {
			continue // not started yet
		}
		if !p.Alive() {
			return fmt.Errorf("lab: %s (pid %d) died\n%s", c, p.PID, proc.Tail(p.LogPath, 30))
		}
	}
	return nil
}

func (lab *Lab) etcdHealthy(ctx context.Context) error {
	tlsCfg, err := lab.clientTLS("apiserver-etcd-client")
	if err != nil {
		return err
	}
	return lab.httpsGet(ctx, "https://127.0.0.1:2379/health", tlsCfg, true)
}

func (lab *Lab) apiReady(ctx context.Context) error {
	tlsCfg, err := lab.clientTLS("apiserver-kubelet-client")
	if err != nil {
		return err
	}
	return lab.httpsGet(ctx, fmt.Sprintf("https://%s/readyz", lab.hostAPIAddr()), tlsCfg, false)
}

func (lab *Lab) clientTLS(name string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(lab.PKIDir(), name+".crt"), filepath.Join(lab.PKIDir(), name+".key"))
	if err != nil {
		return nil, err
	}
	pool, err := lab.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpsGet GETs url, from inside the lab's namespace when inLab is set (etcd listens on the
// namespace's loopback) or from the host (the API server through the relay).
func (lab *Lab) httpsGet(ctx context.Context, url string, tlsCfg *tls.Config, inLab bool) error {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	if inLab {
		tr.DialContext = netns.Dialer(lab.NetNSPath())
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// Client returns a clientset for the lab's admin kubeconfig.
func (lab *Lab) Client() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", lab.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	return kubernetes.NewForConfig(cfg)
}

func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s: %s", name, c.Reason, c.Message)
		}
	}
	return errors.New("node has no Ready condition yet")
}

// checkHealthy is the quick check for "already up".
func (lab *Lab) checkHealthy(ctx context.Context, timeout time.Duration) error {
	cs, err := lab.Client()
	if err != nil {
		return err
	}
	return lab.waitFor(ctx, "kubelet", timeout, func(ctx context.Context) error { return nodeReady(ctx, cs, lab.NodeName) })
}

// makeCgroupRoot creates the lab's cgroup root in every hierarchy. kubelet refuses a cgroupRoot
// that does not exist. On cgroup v1, a new cpuset cgroup starts with no CPUs and no memory
// nodes, so it gets its parent's.
func (lab *Lab) makeCgroupRoot(h Host) error {
	for _, m := range h.CgroupMounts {
		dir := filepath.Join(m, lab.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("lab: cgroup root: %w", err)
		}
		if filepath.Base(m) == "cpuset" || h.CgroupV2 {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(m, f)); err == nil {
					_ = os.WriteFile(filepath.Join(dir, f), b, 0o644)
				}
			}
		}
		if h.CgroupV2 {
			// Delegate the controllers kubelet needs to the lab's subtree.
			_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +cpuset +memory +pids +io +hugetlb"), 0o644)
		}
	}
	return nil
}
