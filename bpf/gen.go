// Package bpf loads and attaches kubectl-mesh's eBPF programs: TC programs
// on a pod's eth0 and lo that record its TCP segments for the probe's process
// to follow (segments.bpf.c, the default) or follow the connections and time
// their request/response exchanges themselves (exchange.bpf.c), and a
// sched_switch raw tracepoint that measures on-CPU time per cgroup
// (cpu.bpf.c). The C sources are in c/; bpf2go compiles them into the
// embedded objects and Go bindings beside this file.
//
// Capabilities: loading any program or map needs CAP_BPF (or CAP_SYS_ADMIN on
// kernels before 5.8); attaching TC programs needs CAP_NET_ADMIN; attaching the
// raw tracepoint and reading kernel memory from it needs CAP_PERFMON.
package bpf

// The objects are compiled for bpfel only: the programs contain nothing
// architecture specific (no pt_regs access), so the one little-endian object
// serves amd64 and arm64 alike. vmlinux.h was generated with
//   bpftool btf dump file /sys/kernel/btf/vmlinux format c > c/vmlinux.h
// and is only used for CO-RE-relocated types, so it need not match the target
// kernel exactly.
//
// The exchange object is built for the v3 instruction set (-mcpu=v3): the
// claim that keeps the idle scan and the TC programs from emitting an
// exchange twice is a compare-and-swap, which needs BPF atomics (kernel
// 5.12+); every kernel with the syscall program type (5.14+) has them.
//
// The last directive records the hash of every input so that
// TestGeneratedObjectsUpToDate fails when a source changed without a rebuild;
// it must stay last.

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type exchange_event -type flow_key -type flow -type exchange_stat -type port_role -type exchange_flag -type leg -type direction -type flush_args -type staging -type staging_owner -type sample_gate Exchange c/exchange.bpf.c -- -I./c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror" -type cpu_key -type cpu_config -type cpu_stat Cpu c/cpu.bpf.c -- -I./c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type segment_record -type ring_head -type segment_hook -type segment_stat Segments c/segments.bpf.c -- -I./c
//go:generate sh -c "sha256sum gen.go c/*.h c/*.c > sources.sha256"
