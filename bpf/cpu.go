package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// CPUFilter restricts CPU accounting to one cgroup v2 subtree, normally the
// pod's cgroup, so that only the pod's containers (proxy and application)
// are counted.
type CPUFilter struct {
	// AncestorID is the cgroup v2 id (the inode number of its directory).
	// Zero accounts every task except the idle tasks.
	AncestorID uint64
	// Level is the depth of that cgroup below the cgroup v2 root (root = 0).
	Level uint32
}

// CPUFilterForPath builds the filter for the cgroup directory dir inside a
// cgroup v2 hierarchy mounted at root (e.g. /sys/fs/cgroup).
func CPUFilterForPath(root, dir string) (CPUFilter, error) {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return CPUFilter{}, fmt.Errorf("cgroup %s is not below %s", dir, root)
	}
	var level uint32
	if rel != "." {
		level = uint32(len(strings.Split(rel, string(filepath.Separator))))
	}
	id, err := CgroupID(dir)
	if err != nil {
		return CPUFilter{}, err
	}
	return CPUFilter{AncestorID: id, Level: level}, nil
}

// CgroupID returns the cgroup v2 id of a cgroup directory: on cgroup v2 it is
// the directory's kernfs inode number, the value bpf_get_current_cgroup_id()
// reports.
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// CPUProbe owns the sched_switch program, its maps and its link.
type CPUProbe struct {
	objs CpuObjects
	link link.Link
}

// LoadCPUProbe loads the sched_switch program and maps without attaching
// them. Needs CAP_BPF. kernelTypes shares the kernel's decoded BTF with
// other loads (see ExchangeOptions.KernelTypes); nil decodes it anew.
func LoadCPUProbe(kernelTypes *btf.Cache) (*CPUProbe, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	p := &CPUProbe{}
	if err := LoadCpuObjects(&p.objs, &ebpf.CollectionOptions{Cache: kernelTypes}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load cpu program: verifier: %+v", verr)
		}
		return nil, fmt.Errorf("load cpu program (needs CAP_BPF and CAP_PERFMON): %w", err)
	}
	return p, nil
}

// SetFilter selects the cgroup subtree to account. Set it before Attach:
// until then every non-idle task would be accounted.
func (p *CPUProbe) SetFilter(f CPUFilter) error {
	// Tasks born from now on are charged all their runtime; older ones
	// only what they run after their first switch seen.
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return fmt.Errorf("set cpu filter: clock_gettime: %w", err)
	}
	cfg := CpuCpuConfig{AncestorCgroupId: f.AncestorID, AncestorLevel: f.Level, SinceNs: uint64(now.Nano())}
	if err := p.objs.CpuFilter.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("set cpu filter: %w", err)
	}
	return nil
}

// Attach hooks the raw tracepoint sched_switch. Raw tracepoints need no
// tracefs and no kprobes; attaching one needs CAP_PERFMON (it observes every
// task on the node, and the program reads kernel memory).
func (p *CPUProbe) Attach() error {
	if p.link != nil {
		return errors.New("cpu probe already attached")
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{
		Name:    "sched_switch",
		Program: p.objs.OnSchedSwitch,
	})
	if err != nil {
		return fmt.Errorf("attach raw tracepoint sched_switch (needs CAP_PERFMON): %w", err)
	}
	p.link = l
	return nil
}

// Usage returns the on-CPU time accounted so far per cgroup v2 id, summed
// over CPUs. A task that is running now is charged at its next switch.
func (p *CPUProbe) Usage() (map[uint64]time.Duration, error) {
	out := map[uint64]time.Duration{}
	var key CpuCpuKey
	var perCPU []uint64
	it := p.objs.CpuNs.Iterate()
	for it.Next(&key, &perCPU) {
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[key.CgroupId] = time.Duration(sum)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read cpu usage: %w", err)
	}
	return out, nil
}

// Process names a process to the sched_switch program by its tgid as seen
// in a pid namespace: a containerized probe knows its pid only in its own
// pid namespace (it has no hostPID), and the kernel translates.
type Process struct {
	Tgid uint32
	// PidNSDev and PidNSIno identify the pid namespace: the device
	// (kernel dev_t encoding, major<<20 | minor) and inode of its nsfs
	// file, /proc/PID/ns/pid.
	PidNSDev, PidNSIno uint64
}

// SelfProcess names the calling process in its own pid namespace.
func SelfProcess() (Process, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return Process{}, fmt.Errorf("stat own pid namespace: %w", err)
	}
	// stat(2) reports st_dev in the userspace encoding; the helper
	// compares the superblock's kernel dev_t (MKDEV: major<<20 | minor).
	dev := uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))
	return Process{Tgid: uint32(os.Getpid()), PidNSDev: dev, PidNSIno: st.Ino}, nil
}

// DiscoverAncestry asks the kernel for the cgroup v2 of a process and that
// cgroup's ancestors: the ids from the root (index 0, the level) down to
// the process's own cgroup (the last one). The probe cannot always read its
// own cgroup from the filesystem: inside a cgroup namespace (the default
// for containers on cgroup v2) /sys/fs/cgroup shows its own cgroup as the
// root, and on hybrid v1/v2 hosts the runtime mounts no cgroup2 into the
// container at all, though it does place the container in the v2
// hierarchy. The sched_switch program reads the ids with
// bpf_get_current_cgroup_id and bpf_get_current_ancestor_cgroup_id when a
// thread of the process switches out.
//
// Call it before SetFilter: it puts the program in discovery mode,
// attaching it if needed, and leaves it there (nothing is accounted) until
// SetFilter replaces the configuration. Some thread of the process must be
// scheduled before timeout: the caller's own sleeps do that when it names
// itself (SelfProcess).
func (p *CPUProbe) DiscoverAncestry(proc Process, timeout time.Duration) ([]uint64, error) {
	if proc.Tgid == 0 || proc.PidNSIno == 0 {
		return nil, fmt.Errorf("discover cgroup ancestry: invalid process %+v", proc)
	}
	// The new target first, then the old result cleared: a discovery
	// still running (an earlier call leaves the program in discovery
	// mode) would otherwise write its own process's ancestry again
	// between the two, to be read as this one's. A run that read the old
	// target before the update ends within microseconds, in the switch,
	// before the clearing's system calls are done.
	cfg := CpuCpuConfig{DiscoverTgid: proc.Tgid, DiscoverPidnsDev: proc.PidNSDev, DiscoverPidnsIno: proc.PidNSIno}
	if err := p.objs.CpuFilter.Put(uint32(0), cfg); err != nil {
		return nil, fmt.Errorf("start cgroup discovery: %w", err)
	}
	for level := uint32(0); level <= cpuAncestrySelf; level++ {
		if err := p.objs.Ancestry.Put(level, uint64(0)); err != nil {
			return nil, fmt.Errorf("clear ancestry: %w", err)
		}
	}
	if p.link == nil {
		if err := p.Attach(); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		ids, err := p.readAncestry()
		if err != nil || ids != nil {
			return ids, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("discover cgroup ancestry: no thread of process %d was scheduled within %v", proc.Tgid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAncestry returns the discovered ancestry, or nil while it is not
// complete.
func (p *CPUProbe) readAncestry() ([]uint64, error) {
	var self uint64
	if err := p.objs.Ancestry.Lookup(uint32(cpuAncestrySelf), &self); err != nil {
		return nil, fmt.Errorf("read ancestry: %w", err)
	}
	if self == 0 {
		return nil, nil
	}
	var ids []uint64
	for level := uint32(0); level < CPUMaxLevels; level++ {
		var id uint64
		if err := p.objs.Ancestry.Lookup(level, &id); err != nil {
			return nil, fmt.Errorf("read ancestry: %w", err)
		}
		if id == 0 {
			// Not visible yet (the levels are written before self,
			// but another CPU may observe the stores out of order):
			// the next switch writes them again.
			return nil, nil
		}
		ids = append(ids, id)
		if id == self {
			return ids, nil
		}
	}
	return nil, fmt.Errorf("discover cgroup ancestry: cgroup %d is deeper than %d levels", self, CPUMaxLevels)
}

// CPUMaxLevels is the deepest cgroup level DiscoverAncestry reports
// (CPU_MAX_LEVELS in c/common.h).
const CPUMaxLevels = 32

// cpuAncestrySelf is the ancestry map's index of the discovered cgroup's
// own id (CPU_ANCESTRY_SELF in c/common.h).
const cpuAncestrySelf = CPUMaxLevels

// CPUStats are the sched_switch program's counters summed over CPUs.
type CPUStats struct {
	Switches     uint64 // sched_switch events seen
	Accounted    uint64 // switches charged to a cgroup
	Idle         uint64 // switches away from an idle task
	Filtered     uint64 // switches of tasks outside the filter
	MapFull      uint64 // switches whose time was lost: no room in cpu_ns
	PrevMismatch uint64 // prev was not current (never expected)
}

// Stats reads the sched_switch counters.
func (p *CPUProbe) Stats() (CPUStats, error) {
	var s CPUStats
	fields := map[CpuCpuStat]*uint64{
		CpuCpuStatCPU_STAT_SWITCHES:      &s.Switches,
		CpuCpuStatCPU_STAT_ACCOUNTED:     &s.Accounted,
		CpuCpuStatCPU_STAT_IDLE:          &s.Idle,
		CpuCpuStatCPU_STAT_FILTERED:      &s.Filtered,
		CpuCpuStatCPU_STAT_MAP_FULL:      &s.MapFull,
		CpuCpuStatCPU_STAT_PREV_MISMATCH: &s.PrevMismatch,
	}
	for idx, dst := range fields {
		v, err := sumPerCPU(p.objs.CpuStats, uint32(idx))
		if err != nil {
			return s, fmt.Errorf("read cpu stat %d: %w", idx, err)
		}
		*dst = v
	}
	return s, nil
}

// Close detaches the program and releases the maps.
func (p *CPUProbe) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}
