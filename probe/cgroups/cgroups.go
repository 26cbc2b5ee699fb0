// Package cgroups finds the probe's own cgroup v2 and its pod's, and names
// the pod's cgroups (path, container id) where the filesystem shows them.
//
// The probe runs as a container of the pod it measures, so its own cgroup's
// parent is the pod's cgroup and its siblings are the other containers
// (application, sidecar proxy, the sandbox's pause container). Three
// layouts occur:
//
//   - No cgroup namespace (or a host cgroupfs): /proc/self/cgroup's "0::"
//     line gives the full path, the pod directory is visible and the
//     containers can be listed, with their container ids (the last path
//     element: cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope
//     or the bare id with the cgroupfs driver).
//   - A private cgroup namespace (the default for containers on cgroup v2):
//     the line is "0::/", /sys/fs/cgroup is the probe's own cgroup and the
//     pod's is not visible.
//   - A hybrid v1/v2 host (cgroup v1 controllers, v2 at
//     /sys/fs/cgroup/unified): containers get no cgroup namespace, so the
//     "0::" line gives the full path, but runc mounts only the v1
//     controllers into the container, each showing the container's own
//     cgroup: no cgroup2 mount at all. runc still places the container in
//     the v2 hierarchy (a directory per container under the pod's), which is
//     what the kernel's cgroup ids name.
//
// In the last two the ids and levels come from the kernel
// (bpf.CPUProbe.DiscoverAncestry); siblings are known by id only.
//
// Container names cannot be read from cgroups at all; the caller names the
// cgroups it can identify (the proxy's, from the sockets answering on the
// service ports).
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Self is the calling process's cgroup v2.
type Self struct {
	// Mount is where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup,
	// or /sys/fs/cgroup/unified on hybrid hosts); "" when no cgroup2 mount
	// shows the process's cgroup (inside a container on a hybrid host).
	Mount string
	// MountRoot is the cgroup the mount shows at its top, as a path from
	// the namespace root ("/" normally).
	MountRoot string
	// Path is the process's cgroup as /proc/self/cgroup shows it: relative
	// to the cgroup namespace root, "/" inside a private namespace.
	Path string
	// Dir is the process's cgroup directory under Mount; "" with Mount.
	Dir string
	// ID is the cgroup v2 id (the directory's inode number), what
	// bpf_get_current_cgroup_id reports; 0 when Dir is "" (the kernel
	// still knows it: bpf.CPUProbe.DiscoverAncestry).
	ID uint64
	// V1CPU is the process's cgroup in the v1 cpu controller on v1 and
	// hybrid hosts, as /proc/self/cgroup shows it; "" on pure v2 hosts.
	V1CPU string
}

// Visible reports whether the process's cgroup v2 directory is mounted
// where it can see it.
func (s Self) Visible() bool { return s.Dir != "" }

// Namespaced reports whether the process sees its own cgroup as the top of
// the mount: its parent (the pod) is then not visible.
func (s Self) Namespaced() bool {
	return s.Visible() && filepath.Clean(s.Dir) == filepath.Clean(s.Mount)
}

// OutsideV2 reports whether the container runtime left the process's
// container out of the cgroup v2 hierarchy: its v1 cpu cgroup is a
// container's, its v2 cgroup is not that container's (it stayed where the
// runtime runs, typically the root or the runtime's service). The kernel's
// cgroup v2 ids then do not tell the pod's containers apart.
func (s Self) OutsideV2() bool {
	if s.V1CPU == "" || ContainerID(path.Base(s.V1CPU)) == "" {
		return false
	}
	return path.Base(s.V1CPU) != path.Base(s.Path)
}

// FindSelf reads /proc/self/cgroup and /proc/self/mountinfo.
func FindSelf() (Self, error) {
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return Self{}, err
	}
	defer cg.Close()
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Self{}, err
	}
	defer mi.Close()
	s, err := parseSelf(cg, mi)
	if err != nil {
		return Self{}, err
	}
	if s.Visible() {
		if s.ID, err = ID(s.Dir); err != nil {
			return Self{}, err
		}
	}
	return s, nil
}

// ErrNoCgroup2 means the host uses no cgroup v2 hierarchy at all: the
// kernel omits /proc/self/cgroup's "0::" line until cgroup2 is mounted
// somewhere (a cgroup v1-only host), and no runtime placed containers in it.
var ErrNoCgroup2 = errors.New("no cgroup v2 (no \"0::\" line in /proc/self/cgroup: a cgroup v1-only host): the probe accounts CPU per container by cgroup v2 id, which needs the unified hierarchy (cgroup v2, or the hybrid layout's /sys/fs/cgroup/unified)")

// parseSelf combines /proc/self/cgroup and /proc/self/mountinfo. A missing
// cgroup2 mount is not an error: the process's cgroup is known, only not
// visible (Mount and Dir stay empty).
func parseSelf(cgroupFile, mountinfo io.Reader) (Self, error) {
	var s Self
	sc := bufio.NewScanner(cgroupFile)
	found := false
	for sc.Scan() {
		// hierarchy-id:controllers:path; v2 is "0::path".
		id, rest, _ := strings.Cut(sc.Text(), ":")
		controllers, p, ok := strings.Cut(rest, ":")
		switch {
		case !ok:
		case id == "0" && controllers == "":
			s.Path, found = p, true
		case slices.Contains(strings.Split(controllers, ","), "cpu"):
			s.V1CPU = p
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if !found {
		return s, ErrNoCgroup2
	}
	if s.Path == "" || !strings.HasPrefix(s.Path, "/") {
		return s, fmt.Errorf("malformed cgroup v2 path %q in /proc/self/cgroup", s.Path)
	}
	if s.Path == "/.." || strings.HasPrefix(s.Path, "/../") {
		return s, fmt.Errorf("own cgroup %q lies outside the cgroup namespace", s.Path)
	}
	sc = bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		root, mount := unescape(fields[3]), unescape(fields[4])
		rel, ok := below(s.Path, root)
		if !ok {
			continue // a mount of another part of the hierarchy
		}
		s.Mount, s.MountRoot = mount, root
		s.Dir = filepath.Join(mount, rel)
		return s, nil
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	return s, nil
}

// below returns path relative to root when path is root or below it.
func below(path, root string) (string, bool) {
	path, root = filepath.Clean(path), filepath.Clean(root)
	if root == "/" {
		return strings.TrimPrefix(path, "/"), true
	}
	if path == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(path, root+"/"); ok {
		return rest, true
	}
	return "", false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ID returns the cgroup v2 id of a cgroup directory (its inode number).
func ID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// Cgroup is one cgroup of the pod as the filesystem shows it.
type Cgroup struct {
	ID uint64
	// Path is relative to the cgroup v2 root as this process sees it.
	Path        string
	ContainerID string
}

// List returns the cgroups directly below podDir (the pod's containers),
// keyed by id. mount is the cgroup v2 mount, used to make paths relative.
func List(mount, podDir string) (map[uint64]Cgroup, error) {
	entries, err := os.ReadDir(podDir)
	if err != nil {
		return nil, fmt.Errorf("list pod cgroups in %s: %w", podDir, err)
	}
	out := map[uint64]Cgroup{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(podDir, e.Name())
		id, err := ID(dir)
		if err != nil {
			continue // removed meanwhile (a container that just exited)
		}
		rel, err := filepath.Rel(mount, dir)
		if err != nil {
			rel = dir
		}
		out[id] = Cgroup{ID: id, Path: "/" + rel, ContainerID: ContainerID(e.Name())}
	}
	return out, nil
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ContainerID extracts the container id from a cgroup directory name:
// "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope",
// "libpod-<id>.scope" (systemd driver) or "<id>" (cgroupfs driver).
// Anything else (the pod's own directory, "crio-conmon-..." helpers) gives "".
func ContainerID(name string) string {
	name = strings.TrimSuffix(name, ".scope")
	for _, prefix := range []string{"cri-containerd-", "crio-", "docker-", "libpod-"} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			name = rest
			break
		}
	}
	if hexID.MatchString(name) {
		return name
	}
	return ""
}
