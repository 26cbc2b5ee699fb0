package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	hybridMounts = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	unifiedMounts = `25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	// A container given a subtree of the host's hierarchy by bind mount.
	subtreeMounts = `700 600 0:23 /kubepods.slice/pod1.slice /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
`
	// The lab's containers on a hybrid host (runc 1.1, cgroupfs driver):
	// the v1 controllers, each showing the container's own cgroup, and no
	// cgroup2.
	labPod       = "/kubectl-mesh-lab/kubepods/burstable/pod7ae6bb79-12a8-456c-98a0-4238e7a0123b"
	labContainer = labPod + "/35e0f3c3ec9156ef4035ea09d36873d81d58ab83f9dcd23bd40bb74a262c220d"
	labCgroup    = "9:name=systemd:" + labContainer + "\n1:cpu:" + labContainer + "\n2:cpuacct:" + labContainer + "\n0::" + labContainer + "\n"
	labMounts    = `310 309 0:117 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
311 310 0:28 ` + labContainer + ` /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
312 310 0:29 ` + labContainer + ` /sys/fs/cgroup/cpuacct ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuacct
319 310 0:36 ` + labContainer + ` /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,name=systemd
`
)

func TestParseSelf(t *testing.T) {
	pod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"
	probe := pod + "/cri-containerd-" + strings.Repeat("ab", 32) + ".scope"
	cases := []struct {
		name, cgroup, mounts string
		want                 Self
		namespaced           bool
	}{
		{"unified host layout", "0::" + probe + "\n", unifiedMounts,
			Self{Mount: "/sys/fs/cgroup", MountRoot: "/", Path: probe, Dir: "/sys/fs/cgroup" + probe}, false},
		{"cgroup namespace", "0::/\n", unifiedMounts,
			Self{Mount: "/sys/fs/cgroup", MountRoot: "/", Path: "/", Dir: "/sys/fs/cgroup"}, true},
		{"hybrid", "12:cpu,cpuacct:/x\n0::" + probe + "\n1:name=systemd:/x\n", hybridMounts,
			Self{Mount: "/sys/fs/cgroup/unified", MountRoot: "/", Path: probe, Dir: "/sys/fs/cgroup/unified" + probe, V1CPU: "/x"}, false},
		{"hybrid container without cgroup2", labCgroup, labMounts,
			Self{Path: labContainer, V1CPU: labContainer}, false},
		{"subtree mount", "0::/kubepods.slice/pod1.slice/c1\n", subtreeMounts,
			Self{Mount: "/sys/fs/cgroup", MountRoot: "/kubepods.slice/pod1.slice", Path: "/kubepods.slice/pod1.slice/c1", Dir: "/sys/fs/cgroup/c1"}, false},
	}
	for _, c := range cases {
		got, err := parseSelf(strings.NewReader(c.cgroup), strings.NewReader(c.mounts))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want || got.Namespaced() != c.namespaced {
			t.Errorf("%s: got %+v (namespaced %v), want %+v", c.name, got, got.Namespaced(), c.want)
		}
	}
}

func TestParseSelfErrors(t *testing.T) {
	if _, err := parseSelf(strings.NewReader("4:memory:/x\n"), strings.NewReader(unifiedMounts)); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("v1 only: %v", err)
	}
	if _, err := parseSelf(strings.NewReader("0::/../x\n"), strings.NewReader(unifiedMounts)); err == nil {
		t.Error("a cgroup outside the namespace was accepted")
	}
	// Known but not visible: no cgroup2 mount, or a mount of another
	// subtree that does not show this process's cgroup.
	for name, mounts := range map[string]string{"no cgroup2 mount": hybridMounts[:60], "unrelated subtree": subtreeMounts} {
		s, err := parseSelf(strings.NewReader("0::/other/c\n"), strings.NewReader(mounts))
		if err != nil || s.Visible() || s.Namespaced() || s.Path != "/other/c" {
			t.Errorf("%s: %+v %v", name, s, err)
		}
	}
}

func TestOutsideV2(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name string
		self Self
		want bool
	}{
		{"pure v2", Self{Path: "/kubepods/pod1/" + id}, false},
		{"hybrid, placed in v2 (runc cgroupfs)", Self{Path: labContainer, V1CPU: labContainer}, false},
		{"hybrid, placed in v2 (systemd)", Self{Path: "/kubepods.slice/p.slice/cri-containerd-" + id + ".scope", V1CPU: "/kubepods.slice/p.slice/cri-containerd-" + id + ".scope"}, false},
		{"hybrid, left at the root of v2", Self{Path: "/", V1CPU: labContainer}, true},
		{"hybrid, left in the runtime's cgroup", Self{Path: "/system.slice/containerd.service", V1CPU: labContainer}, true},
		{"a process moved in v2 only", Self{Path: "/test/probe", V1CPU: "/"}, false},
	} {
		if got := c.self.OutsideV2(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/with\040space`); got != "/mnt/with space" {
		t.Errorf("got %q", got)
	}
	if got := unescape(`/a\\b\0`); got != `/a\\b\0` {
		t.Errorf("got %q", got)
	}
}

func TestContainerID(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for name, want := range map[string]string{
		"cri-containerd-" + id + ".scope": id,
		"crio-" + id + ".scope":           id,
		"docker-" + id + ".scope":         id,
		id:                                id,
		"crio-conmon-" + id + ".scope":    "",
		"kubepods-burstable-pod1.slice":   "",
		"cri-containerd-1234.scope":       "",
	} {
		if got := ContainerID(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestList(t *testing.T) {
	mount := t.TempDir()
	pod := filepath.Join(mount, "kubepods", "pod1")
	id := strings.Repeat("ab", 32)
	for _, d := range []string{"cri-containerd-" + id + ".scope", "other"} {
		if err := os.MkdirAll(filepath.Join(pod, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pod, "cpu.stat"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := List(mount, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d cgroups: %+v", len(got), got)
	}
	want, err := ID(filepath.Join(pod, "cri-containerd-"+id+".scope"))
	if err != nil {
		t.Fatal(err)
	}
	if c := got[want]; c.ContainerID != id || c.Path != "/kubepods/pod1/cri-containerd-"+id+".scope" {
		t.Errorf("container cgroup %+v", c)
	}
}

// On this host: the process's own cgroup is found and has an id.
func TestFindSelf(t *testing.T) {
	s, err := FindSelf()
	if errors.Is(err, ErrNoCgroup2) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !s.Visible() {
		t.Skipf("own cgroup %s not visible: no cgroup2 mount shows it", s.Path)
	}
	if s.ID == 0 || !strings.HasPrefix(s.Dir, s.Mount) {
		t.Errorf("self %+v", s)
	}
}
