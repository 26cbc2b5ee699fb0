package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubectl-mesh/kubectl-mesh/lab/netns"
	"github.com/kubectl-mesh/kubectl-mesh/lab/proc"
)

// Down stops every process of the lab by PID and removes every mount, cgroup, namespace and file
// it made, leaving CacheDir (built binaries) in place. It works on a healthy lab, a half-started
// one and the remains of a crashed one, and doing it twice is harmless.
func (lab *Lab) Down(ctx context.Context) error {
	var errs []error
	stop := func(name string, grace time.Duration) {
		p, err := proc.Load(lab.PIDDir(), lab.LogDir(), name)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			return
		}
		if err := p.Stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	// kubelet first, or it would restart the pods being removed.
	stop("kubelet", 10*time.Second)

	// Pods: through the CRI, so that containerd tears down their networks and namespaces.
	if err := lab.removePods(ctx); err != nil {
		lab.logf("warning: %v", err)
	}
	for i := len(components) - 1; i >= 0; i-- {
		if components[i] != "kubelet" {
			stop(components[i], 10*time.Second)
		}
	}
	stop("containerd-cleanup", 5*time.Second)

	// Whatever containerd left running (after a crash): shims and container processes, by the
	// PIDs containerd itself recorded.
	for _, pid := range lab.ContainerdRecordedPIDs() {
		proc.KillPID(pid, 2*time.Second)
	}
	// Shims whose state directory is already gone (a cleanup that failed half-way) are still
	// recognisable as ours: they were started with the lab's own containerd socket.
	for _, pid := range lab.shimsOfOurSocket() {
		proc.KillPID(pid, 2*time.Second)
	}
	if err := lab.unmountAll(); err != nil {
		errs = append(errs, err)
	}
	if err := lab.removeCgroupRoot(); err != nil {
		errs = append(errs, err)
	}
	if err := netns.Delete(lab.Name); err != nil {
		errs = append(errs, err)
	}
	lab.removeHostFiles()
	for _, d := range []string{lab.StateDir, lab.RunDir} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removePods removes all pod sandboxes. If containerd is not running but has sandboxes on disk
// (a crashed lab), it is started just for this and stopped again.
func (lab *Lab) removePods(ctx context.Context) error {
	running := false
	if p, err := proc.Load(lab.PIDDir(), lab.LogDir(), "containerd"); err == nil && p.Alive() {
		running = true
	}
	if !running {
		sb, _ := os.ReadDir(filepath.Join(lab.ContainerdRoot(), "io.containerd.grpc.v1.cri", "sandboxes"))
		cfg := filepath.Join(lab.ConfigDir(), "containerd.toml")
		if _, err := os.Stat(cfg); len(sb) == 0 || err != nil {
			return nil
		}
		if !netns.Exists(lab.Name) {
			if err := netns.Create(netns.Node{Name: lab.Name, Bridge: lab.Bridge, CIDR: lab.NodeCIDR, Gateway: lab.Gateway}); err != nil {
				return err
			}
		}
		lab.logf("starting containerd to remove %d pod sandboxes left by an earlier lab", len(sb))
		_ = os.Remove(lab.ContainerdSocket())
		p, err := proc.Start(proc.Spec{Name: "containerd-cleanup", Argv: lab.containerdArgs(), NetNS: lab.NetNSPath(), LogDir: lab.LogDir(), PIDDir: lab.PIDDir(), Dir: lab.StateDir})
		if err != nil {
			return err
		}
		defer p.Stop(10 * time.Second)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(lab.ContainerdSocket()); err == nil {
				break
			}
			if time.Now().After(deadline) || !p.Alive() {
				return fmt.Errorf("lab: containerd for cleanup did not start\n%s", proc.Tail(p.LogPath, 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	} else if _, err := os.Stat(lab.ContainerdSocket()); err != nil {
		return nil
	}
	n, err := lab.removeAllPodSandboxes(ctx)
	if n > 0 {
		lab.logf("removed %d pod sandboxes", n)
	}
	return err
}

// ContainerdRecordedPIDs reads the shim and container PIDs from containerd's state directory.
func (lab *Lab) ContainerdRecordedPIDs() []int {
	var pids []int
	base := filepath.Join(lab.ContainerdState(), "io.containerd.runtime.v2.task")
	nss, _ := os.ReadDir(base)
	for _, ns := range nss {
		tasks, _ := os.ReadDir(filepath.Join(base, ns.Name()))
		for _, t := range tasks {
			for _, f := range []string{"init.pid", "shim.pid"} {
				b, err := os.ReadFile(filepath.Join(base, ns.Name(), t.Name(), f))
				if err != nil {
					continue
				}
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// shimsOfOurSocket finds containerd shims started for the lab's containerd: their command line
// carries "-address" followed by the lab's socket path, which nothing else uses.
func (lab *Lab) shimsOfOurSocket() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == lab.ContainerdSocket() {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// Mounts returns the mount points under the lab's directories, deepest first.
func (lab *Lab) Mounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, d := range []string{lab.StateDir, lab.RunDir} {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				mps = append(mps, mp)
			}
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, s.Err()
}

func unescapeMount(s string) string {
	// mountinfo escapes space, tab, newline and backslash as octal.
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func (lab *Lab) unmountAll() error {
	for attempt := 0; attempt < 3; attempt++ {
		mps, err := lab.Mounts()
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, 0); err != nil {
				// Busy mounts (a process still holding a file) are detached: they vanish
				// from the tree now and from the kernel when the last user closes them.
				_ = unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}
	mps, _ := lab.Mounts()
	if len(mps) > 0 {
		return fmt.Errorf("lab: could not unmount %s", strings.Join(mps, ", "))
	}
	return nil
}

// removeCgroupRoot removes the lab's cgroup tree, children first.
func (lab *Lab) removeCgroupRoot() error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		root := filepath.Join(m, lab.Name)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 20; i++ { // a cgroup empties a moment after its last process exits
				if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
					err = nil
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("lab: remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeHostFiles removes what kubelet and libcni write outside the lab's directories:
// kubelet's symlinks in /var/log/containers (a path it does not let us move) and libcni's
// result cache in /var/lib/cni/results, both recognisable as ours by target or network name.
func (lab *Lab) removeHostFiles() {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, lab.PodLogDir()+"/") {
			_ = os.Remove(l)
		}
	}
	cached, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", CNINetworkName+"-*"))
	for _, c := range cached {
		_ = os.Remove(c)
	}
}
