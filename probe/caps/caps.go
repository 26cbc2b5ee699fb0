// Package caps checks, before anything is loaded, that the probe holds the
// capabilities and the kernel has the features its eBPF programs need, and
// says what to do when not.
package caps

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Capability is one capability the probe needs, and why.
type Capability struct {
	Name string
	Bit  uint
	Use  string
}

// Required lists the only capabilities the probe container gets. The
// kubectl-mesh webhook adds them to securityContext.capabilities.add.
var Required = []Capability{
	// bpf(2) map and program creation. Every program and map of package
	// bpf; also BPF_PROG_TEST_RUN of the idle-scan syscall program.
	{"CAP_BPF", unix.CAP_BPF, "load the eBPF programs and create their maps (bpf(2))"},
	// perfmon_capable(): loading a raw tracepoint program, which reads
	// kernel memory (the task switched out), and attaching it to
	// sched_switch. Only the CPU accounting needs it.
	{"CAP_PERFMON", unix.CAP_PERFMON, "load and attach the sched_switch raw tracepoint that measures CPU per container"},
	// TC hooks are network configuration: TCX links (kernel 6.6+) or a
	// clsact qdisc with cls_bpf filters on the pod's eth0 and lo.
	{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN, "attach the TC programs to the pod's eth0 and lo"},
}

// effective returns the calling thread's effective capability set.
func effective() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// missing returns the required capabilities absent from set. CAP_SYS_ADMIN
// stands in for CAP_BPF and CAP_PERFMON, as the kernel's bpf_capable() and
// perfmon_capable() allow.
func missing(set uint64) []Capability {
	has := func(bit uint) bool { return set&(1<<bit) != 0 }
	var out []Capability
	for _, c := range Required {
		if has(c.Bit) {
			continue
		}
		if (c.Bit == unix.CAP_BPF || c.Bit == unix.CAP_PERFMON) && has(unix.CAP_SYS_ADMIN) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// MissingError names every missing capability.
type MissingError struct{ Missing []Capability }

func (e *MissingError) Error() string {
	var b strings.Builder
	b.WriteString("missing capabilities:")
	names := make([]string, len(e.Missing))
	for i, c := range e.Missing {
		fmt.Fprintf(&b, " %s (needed to %s);", c.Name, c.Use)
		names[i] = strings.TrimPrefix(c.Name, "CAP_")
	}
	fmt.Fprintf(&b, " the kubectl-mesh webhook adds them to the mesh-probe container"+
		" (securityContext.capabilities.add: [%s]); a hand-written pod spec must add them the same way."+
		" Pod Security Admission rejects them under the baseline and restricted levels:"+
		" the namespace needs pod-security.kubernetes.io/enforce=privileged",
		strings.Join(names, ", "))
	return b.String()
}

// Check returns a *MissingError when a required capability is not in the
// effective set.
func Check() error {
	set, err := effective()
	if err != nil {
		return err
	}
	if m := missing(set); len(m) > 0 {
		return &MissingError{Missing: m}
	}
	return nil
}

// Feature is a kernel feature the probe needs.
type Feature struct {
	Name  string
	Need  string // kernel version or config that provides it
	Use   string
	probe func() error
}

// btfPath is the kernel's own BTF, used for CO-RE relocations.
const btfPath = "/sys/kernel/btf/vmlinux"

// Features lists the kernel features checked by CheckKernel. TCX is not
// among them: without it (kernels before 6.6) the TC programs are attached
// through a clsact qdisc instead.
var Features = []Feature{
	{"kernel BTF (" + btfPath + ")", "CONFIG_DEBUG_INFO_BTF=y, kernel 5.4+",
		"relocate the CPU program's task_struct access (CO-RE)",
		func() error { _, err := os.Stat(btfPath); return err }},
	{"BPF ring buffer", "kernel 5.8+", "deliver exchange events",
		func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"BPF syscall programs", "kernel 5.14+", "run the idle scan that emits finished exchanges of quiet connections",
		func() error { return features.HaveProgramType(ebpf.Syscall) }},
	{"bpf_map_lookup_percpu_elem", "kernel 5.19+", "send every CPU's batch of finished exchanges to the ring buffer from the idle scan",
		func() error { return features.HaveProgramHelper(ebpf.Syscall, asm.FnMapLookupPercpuElem) }},
	{"bpf_loop", "kernel 5.17+", "walk the CPUs in the idle scan",
		func() error { return features.HaveProgramHelper(ebpf.Syscall, asm.FnLoop) }},
	{"raw tracepoints", "kernel 4.17+", "hook sched_switch for CPU accounting",
		func() error { return features.HaveProgramType(ebpf.RawTracepoint) }},
	{"bpf_get_current_ancestor_cgroup_id", "kernel 5.7+ for raw tracepoints", "keep only this pod's cgroups in CPU accounting",
		func() error {
			return features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnGetCurrentAncestorCgroupId)
		}},
	{"bpf_get_ns_current_pid_tgid", "kernel 5.7+", "find the probe's own cgroup by its pid when the filesystem does not show it (cgroup namespace, hybrid cgroup v1/v2 host)",
		func() error {
			return features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnGetNsCurrentPidTgid)
		}},
	{"BPF task storage", "kernel 5.11+ for tracing programs", "remember per task what CPU time it was last charged",
		func() error { return features.HaveMapType(ebpf.TaskStorage) }},
	{"bpf_get_current_task_btf", "kernel 5.11+", "name the switched-out task to its task storage",
		func() error {
			return features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnGetCurrentTaskBtf)
		}},
	{"bpf_skb_cgroup_id", "CONFIG_SOCK_CGROUP_DATA, kernel 4.18+", "tell the proxy's container by the sockets answering on the service ports",
		func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnSkbCgroupId) }},
}

// MissingFeatureError names a missing kernel feature.
type MissingFeatureError struct {
	Feature Feature
	Err     error
}

func (e *MissingFeatureError) Error() string {
	return fmt.Sprintf("kernel feature missing: %s (needs %s; used to %s): %v",
		e.Feature.Name, e.Feature.Need, e.Feature.Use, e.Err)
}

func (e *MissingFeatureError) Unwrap() error { return e.Err }

// CheckKernel probes every feature; call it after Check (probing loads
// tiny programs, which needs CAP_BPF).
func CheckKernel() error {
	var errs []error
	for _, f := range Features {
		if err := f.probe(); err != nil {
			errs = append(errs, &MissingFeatureError{Feature: f, Err: err})
		}
	}
	return errors.Join(errs...)
}
