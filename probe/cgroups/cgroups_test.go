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
			Self{Mount: "/sys/fs/cgroup/unified", MountRoot: "/", Path: probe, Dir: "/sys/fs/cgroup/unified" + probe}, false},
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
	if _, err := parseSelf(strings.NewReader("0::/a\n"), strings.NewReader(hybridMounts[:60])); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("no cgroup2 mount: %v", err)
	}
	if _, err := parseSelf(strings.NewReader("0::/../x\n"), strings.NewReader(unifiedMounts)); err == nil {
		t.Error("a cgroup outside the namespace was accepted")
	}
	// A mount of another subtree does not show this process's cgroup.
	if _, err := parseSelf(strings.NewReader("0::/other/c\n"), strings.NewReader(subtreeMounts)); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("unrelated subtree: %v", err)
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
	if s.ID == 0 || !strings.HasPrefix(s.Dir, s.Mount) {
		t.Errorf("self %+v", s)
	}
}
