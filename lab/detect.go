package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DetectHost inspects the machine instead of assuming its quirks.
func DetectHost() (Host, error) {
	var h Host
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return h, fmt.Errorf("lab: /sys/fs/cgroup: %w", err)
	}
	h.CgroupV2 = st.Type == unix.CGROUP2_SUPER_MAGIC
	mounts, err := cgroupMounts()
	if err != nil {
		return h, err
	}
	h.CgroupMounts = mounts
	h.RestrictOOMScoreAdj = !canLowerOOMScoreAdj()
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			h.CNIBinDir = d
			break
		}
	}
	return h, nil
}

// canLowerOOMScoreAdj tries what the pod sandbox will do: lower the OOM score adjustment. It
// tries on a child process so that this command's own score is left as it was.
func canLowerOOMScoreAdj() bool {
	cmd := exec.Command("sh", "-c", "echo -998 > /proc/self/oom_score_adj")
	return cmd.Run() == nil
}

// cgroupMounts lists the cgroup hierarchies mounted under /sys/fs/cgroup (one on a v2 host,
// one per controller plus the unified one on a v1 or hybrid host).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		fsType := fields[sep+1]
		mp := fields[4]
		if (fsType == "cgroup" || fsType == "cgroup2") && strings.HasPrefix(mp, "/sys/fs/cgroup") {
			out = append(out, mp)
		}
	}
	return out, s.Err()
}

// Requirement is a command the lab needs and the Debian package that provides it.
type Requirement struct{ Command, Package string }

// Requirements lists what `make deps` installs.
var Requirements = []Requirement{
	{"etcd", "etcd-server"},
	{"containerd", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"nsenter", "util-linux"},
	{"ip", "iproute2"},
	{"iptables", "iptables"},
	{"conntrack", "conntrack"},
}

// CheckPrerequisites names everything missing, with the package that provides it.
func CheckPrerequisites(h Host) error {
	if os.Geteuid() != 0 {
		return errors.New("lab: must run as root: it creates a network namespace, cgroups and mounts (try: sudo make lab-up)")
	}
	var missing []string
	for _, r := range Requirements {
		if _, err := exec.LookPath(r.Command); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", r.Command, r.Package))
		}
	}
	if h.CNIBinDir == "" {
		missing = append(missing, "CNI plugins bridge/host-local/portmap/loopback (Debian package containernetworking-plugins)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		missing = append(missing, "go (the Go toolchain, to build Kubernetes and CoreDNS)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing prerequisites; run `make deps`:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}
