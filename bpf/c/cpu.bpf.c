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
 * At every context switch the time since the previous switch on this CPU is
 * charged to the task being switched out. That task is still "current" when
 * the tracepoint fires, so bpf_get_current_cgroup_id() names its cgroup
 * without reading task_struct->cgroups by hand. Like the kernel's own
 * accounting, interrupts that hit a task are charged to it; a task still
 * running is charged at its next switch.
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
	CPU_STAT_MAP_FULL,      /* time lost: cpu_ns had no room for a cgroup */
	CPU_STAT_PREV_MISMATCH, /* prev was not current (never expected) */
	CPU_STAT_MAX,
};

/* Referenced only so that BTF carries the enum for bpf2go (-type cpu_stat). */
const enum cpu_stat *unused_cpu_stat __attribute__((unused));

/* Monotonic time of the last context switch on each CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_switch_ns SEC(".maps");

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
 * cgroup's ancestor at that level (0 below its own level). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CPU_MAX_LEVELS);
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

/* record_ancestry writes the current task's cgroup ancestors, from the root
 * (level 0) down to the cgroup self, into the ancestry map. */
static __always_inline void record_ancestry(__u64 self)
{
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
}

/* Hook: raw tracepoint sched_switch(bool preempt, struct task_struct *prev,
 * struct task_struct *next, unsigned int prev_state). Needs CAP_PERFMON
 * (raw tracepoint attach and the CO-RE read of prev->pid). */
SEC("raw_tracepoint/sched_switch")
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx->args[1];
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct cpu_config *cfg;
	struct cpu_key key;
	__u64 *last, start, delta, *total;

	count(CPU_STAT_SWITCHES);
	last = bpf_map_lookup_elem(&last_switch_ns, &zero);
	if (!last)
		return 0;
	start = *last;
	*last = now;
	/* The first switch seen on a CPU ends a slice that started before
	 * the probe: its length is unknown. */
	if (start == 0 || now <= start)
		return 0;
	delta = now - start;

	if ((void *)prev != (void *)bpf_get_current_task()) {
		count(CPU_STAT_PREV_MISMATCH);
		return 0;
	}
	/* CO-RE read (bpf_probe_read_kernel underneath): pid 0 is the idle
	 * task, whose "on-CPU" time is idle time. */
	if (BPF_CORE_READ(prev, pid) == 0) {
		count(CPU_STAT_IDLE);
		return 0;
	}

	cfg = bpf_map_lookup_elem(&cpu_filter, &zero);
	if (!cfg)
		return 0;
	if (cfg->discover_cgroup_id != 0) {
		if (bpf_get_current_cgroup_id() == cfg->discover_cgroup_id)
			record_ancestry(cfg->discover_cgroup_id);
		return 0;
	}
	if (cfg->ancestor_cgroup_id != 0 &&
	    bpf_get_current_ancestor_cgroup_id(cfg->ancestor_level) != cfg->ancestor_cgroup_id) {
		count(CPU_STAT_FILTERED);
		return 0;
	}

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
