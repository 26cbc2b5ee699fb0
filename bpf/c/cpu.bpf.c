// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cpu.bpf.c: on-CPU time per cgroup v2, for the containers of one pod (the
 * sidecar proxy and the application).
 *
 * Hook: the raw tracepoint sched_switch (BPF_PROG_TYPE_RAW_TRACEPOINT). It
 * needs neither kprobes nor fentry/tp_btf (tracing programs, unavailable on
 * the kernels this project targets) nor tracefs. Loading needs CAP_BPF;
 * attaching a raw tracepoint and reading kernel memory (the task_struct
 * behind the tracepoint's prev argument) needs CAP_PERFMON.
 *
 * Discovery: before accounting, the probe asks this program for its own
 * cgroup v2 and that cgroup's ancestors (its pod's cgroup is the parent),
 * naming itself by pid in its own pid namespace: the filesystem often does
 * not show the probe its cgroup (cgroup namespace; no cgroup2 mount inside
 * containers on hybrid v1/v2 hosts), the kernel always knows it.
 *
 * At every context switch the task being switched out, if it belongs to the
 * pod, is charged with the CPU time the scheduler itself accounted to it:
 * the growth of its se.sum_exec_runtime since it was last charged, kept
 * with the task in task storage. That is the figure behind the cgroup's
 * cpu.stat, the task's /proc stat and getrusage(2), so the probe agrees
 * with them by construction; timing the slice with bpf_ktime_get_ns()
 * instead came out about 1 us per slice short (3-6% of a proxy's CPU, which
 * runs in many short slices), the scheduler's clock being read at other
 * points of __schedule() than the tracepoint. The switched-out task is still
 * "current" when the tracepoint fires, so bpf_get_current_cgroup_id() names
 * its cgroup without reading task_struct->cgroups by hand. A task still
 * running is charged at its next switch. A task born after accounting
 * started is charged all its runtime at its first switch-out; an older one
 * only what it runs after that (before, it may have run outside the pod).
 *
 * Keeping the last charge per task, not per CPU, means the switch of a task
 * outside the pod costs a map lookup and one helper call, and nothing is
 * read of the task switched in. This program runs at every context switch
 * of the node, and the workload's own switches (several per request) wait
 * for it. Task storage is freed by the kernel with the task: no table of
 * dead tasks to fill.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* enum cpu_stat: indexes of cpu_stats. */
enum cpu_stat {
	CPU_STAT_SWITCHES = 0,  /* sched_switch events seen */
	CPU_STAT_ACCOUNTED,     /* switches whose time was charged to a cgroup */
	CPU_STAT_IDLE,          /* switches away from the idle task */
	CPU_STAT_FILTERED,      /* switches of tasks outside the configured cgroup */
	CPU_STAT_MAP_FULL,      /* time lost: no room in cpu_ns for a cgroup, or no task storage */
	CPU_STAT_PREV_MISMATCH, /* prev was not current (never expected) */
	CPU_STAT_MAX,
};

/* Referenced only so that BTF carries the enum for bpf2go (-type cpu_stat). */
const enum cpu_stat *unused_cpu_stat __attribute__((unused));

/* A pod task's se.sum_exec_runtime when it was last charged; 0 when new. */
struct task_cpu {
	__u64 charged_ns;
};

/* Per task, created at its first switch-out in the pod. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_cpu);
} task_cpu SEC(".maps");

/* On-CPU nanoseconds per cgroup v2 id, per CPU (no atomics needed); the Go
 * side sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cpu_key);
	__type(value, __u64);
} cpu_ns SEC(".maps");

/* Which cgroup subtree to account; index 0, written by the Go loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_config);
} cpu_filter SEC(".maps");

/* Discovery result: index = cgroup level, value = the id of the discovered
 * process's cgroup's ancestor at that level (0 below its own level); index
 * CPU_ANCESTRY_SELF = that cgroup's own id, written last. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CPU_MAX_LEVELS + 1);
	__type(key, __u32);
	__type(value, __u64);
} ancestry SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CPU_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} cpu_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&cpu_stats, &idx);

	if (v)
		*v += 1;
}

/* record_ancestry writes the current task's cgroup v2 ancestors, from the
 * root (level 0) down to its own cgroup, into the ancestry map, and then
 * that cgroup's id at CPU_ANCESTRY_SELF: a reader that finds the latter
 * set finds the levels written (a repeat writes the same values). */
static __always_inline void record_ancestry(void)
{
	__u64 self = bpf_get_current_cgroup_id();
	__u32 self_key = CPU_ANCESTRY_SELF;

	/* Unrolled: a bounded loop whose counter is also a map key spills
	 * the counter to the stack, where the verifier loses its bound. */
#pragma clang loop unroll(full)
	for (int level = 0; level < CPU_MAX_LEVELS; level++) {
		__u32 key = level;
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		bpf_map_update_elem(&ancestry, &key, &id, BPF_ANY);
		if (id == self || id == 0)
			break;
	}
	bpf_map_update_elem(&ancestry, &self_key, &self, BPF_ANY);
}

/* is_discovered_process tells whether the current task belongs to the
 * process being discovered. bpf_get_ns_current_pid_tgid (kernel 5.7+)
 * numbers the task in the probe's own pid namespace, the only numbering the
 * probe knows its pid in (it has no hostPID); it fails for tasks of other
 * pid namespaces, which are not the probe's anyway. */
static __always_inline int is_discovered_process(const struct cpu_config *cfg)
{
	struct bpf_pidns_info ns = {};

	if (bpf_get_ns_current_pid_tgid(cfg->discover_pidns_dev, cfg->discover_pidns_ino,
					&ns, sizeof(ns)) != 0)
		return 0;
	return ns.tgid == cfg->discover_tgid;
}

/* Hook: raw tracepoint sched_switch(bool preempt, struct task_struct *prev,
 * struct task_struct *next, unsigned int prev_state). Needs CAP_PERFMON
 * (raw tracepoint attach, and the CO-RE reads of prev's pid, start_time and
 * se.sum_exec_runtime, which read kernel memory). The scheduler has
 * updated prev's runtime (put_prev_task or the dequeue of a blocking task)
 * before the tracepoint fires. */
SEC("raw_tracepoint/sched_switch")
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx->args[1];
	__u32 zero = 0;
	struct cpu_config *cfg;
	struct task_cpu *tc;
	struct cpu_key key;
	__u64 start, runtime, delta, *total;

	count(CPU_STAT_SWITCHES);
	cfg = bpf_map_lookup_elem(&cpu_filter, &zero);
	if (!cfg)
		return 0;
	if (cfg->discover_tgid != 0) {
		if (is_discovered_process(cfg))
			record_ancestry();
		return 0;
	}
	/* Most switches on a node are of other pods' tasks: this program runs
	 * once per probe on every switch of the node, so it lets them go after
	 * one helper call, before reading prev. The idle task (root cgroup) is
	 * among them. */
	if (cfg->ancestor_cgroup_id != 0 &&
	    bpf_get_current_ancestor_cgroup_id(cfg->ancestor_level) != cfg->ancestor_cgroup_id) {
		count(CPU_STAT_FILTERED);
		return 0;
	}
	if ((void *)prev != (void *)bpf_get_current_task()) {
		count(CPU_STAT_PREV_MISMATCH);
		return 0;
	}
	/* CO-RE read (bpf_probe_read_kernel underneath): pid 0 is the idle
	 * task, whose "on-CPU" time is idle time (with no filter). */
	if (BPF_CORE_READ(prev, pid) == 0) {
		count(CPU_STAT_IDLE);
		return 0;
	}
	runtime = BPF_CORE_READ(prev, se.sum_exec_runtime);
	/* Task storage takes the task as a typed pointer: the current task's,
	 * which is prev's (checked above). */
	tc = bpf_task_storage_get(&task_cpu, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!tc) {
		count(CPU_STAT_MAP_FULL);
		return 0;
	}
	start = tc->charged_ns;
	if (start == 0)
		/* Just created (a task charged once has run): the first
		 * switch-out seen of this task. Born since the accounting
		 * started, all it ran is new; older, its runtime until now is
		 * not known to be the pod's and is skipped. */
		start = BPF_CORE_READ(prev, start_time) >= cfg->since_ns ? 0 : runtime;
	tc->charged_ns = runtime;
	/* Only the idle task's runtime stays still; none shrinks. */
	delta = runtime > start ? runtime - start : 0;

	if (delta == 0)
		return 0;
	key.cgroup_id = bpf_get_current_cgroup_id();
	total = bpf_map_lookup_elem(&cpu_ns, &key);
	if (total) {
		*total += delta;
	} else if (bpf_map_update_elem(&cpu_ns, &key, &delta, BPF_NOEXIST) < 0) {
		/* Another CPU may have created the entry in between. */
		total = bpf_map_lookup_elem(&cpu_ns, &key);
		if (!total) {
			count(CPU_STAT_MAP_FULL);
			return 0;
		}
		*total += delta;
	}
	count(CPU_STAT_ACCOUNTED);
	return 0;
}
