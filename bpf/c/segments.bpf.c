// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * segments.bpf.c: the pod's TCP segments, recorded for the probe's process,
 * which follows the connections and cuts their exchanges itself
 * (probe/flowtrack). The same hooks as exchange.bpf.c (the pod's eth0 both
 * ways, its lo one side), the same parsing, but no state: each segment that
 * carries payload, or a SYN, FIN or RST, on a port of interest is written
 * to this CPU's part of a memory-mapped ring (struct segment_record) and the
 * program returns. Keeping the connections' state in the kernel cost a
 * request at p50 about 3.5 us more than this, side by side
 * (docs/benchmarks.md, session 18): a cold hash lookup per packet, the state
 * written back, the exchange records staged and copied to a ring buffer.
 *
 * The ring: segment_ring holds ring_cpus regions of slots_per_cpu slots of
 * 64 bytes; ring_heads the count of slots each CPU has written. Only a
 * CPU's own TC programs write its region, and they never run nested on one
 * CPU (ingress runs in the receive softirq, egress with bottom halves
 * disabled), so a CPU's producer needs no lock and no compare-and-swap: the
 * program writes its slots, then publishes the new count with an atomic
 * exchange (a full barrier on every architecture's JIT), after which the
 * reader, which maps both arrays, may read them. A reader that falls a
 * whole ring behind loses records; it sees that in the counts and says so.
 * No wakeups: the process reads on its own timer.
 *
 * Not yet attached by the agent, which still runs exchange.bpf.c (issue 6).
 *
 * Capabilities: CAP_BPF to load, CAP_NET_ADMIN to attach the TC programs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "packet.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the Go loader before loading (bpf.SegmentOptions): the ring's
 * geometry (slots_per_cpu a power of two) and whether the pod's outbound
 * calls are followed, in which case every TCP segment of eth0 and lo with
 * payload or a SYN, FIN or RST is recorded and the process tells which
 * belong to calls (only it knows which connections it follows). */
volatile const __u32 slots_per_cpu = 4096;
volatile const __u32 ring_cpus = 1;
volatile const __u8 record_outbound = 0;

/* Ports of interest (host order) -> enum port_role bits, as in
 * exchange.bpf.c: written by the loader through the memory-mapped .bss, and
 * by app_segment for ports it learns. */
__u8 roles_by_port[1 << 16];

/* The sampling gate (enum sample_gate) and its reopening count, written by
 * userspace; recorded with each segment, so the process applies a segment
 * with the gate it met. */
__u32 sampling_gate;
__u32 sampling_epoch;

/* Edge server port (host order) -> cgroup v2 id of the socket that answered
 * on it last (edge egress with payload). With a sidecar, the proxy's
 * container. A global array rather than exchange.bpf.c's hash map, because
 * with no connection state every response segment looks: one load, a
 * write only when the value changes. */
__u64 edge_cgroup_by_port[1 << 16];

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* ring_cpus * slots_per_cpu, set by the loader */
	__type(key, __u32);
	__type(value, struct segment_record);
} segment_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* ring_cpus, set by the loader */
	__type(key, __u32);
	__type(value, struct ring_head);
} ring_heads SEC(".maps");

/* Source addresses the sidecar uses for its connections to the application
 * (IPv6 or IPv4-mapped, e.g. Istio's 127.0.0.6): a SYN on lo from one of them
 * teaches app_segment the application's port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u8[16]);
	__type(value, __u8);
} proxy_sources SEC(".maps");

/* Indexes into the per-CPU counters. */
enum segment_stat {
	SEG_STAT_PACKETS = 0,    /* packets seen by any TC program */
	SEG_STAT_NOT_TCP,        /* not IPv4/IPv6 TCP (or not parseable) */
	SEG_STAT_IPV6_EXT_HDR,   /* IPv6 with extension headers: not parsed */
	SEG_STAT_IP_FRAGMENT,    /* IPv4 fragments: not parsed */
	SEG_STAT_BARE_ACK,       /* no payload, SYN, FIN or RST: nothing to record */
	SEG_STAT_GATE_CLOSED,    /* segments that met the sampling gate closed */
	SEG_STAT_NO_PORT,        /* TCP, but no port of interest */
	SEG_STAT_RECORDED,       /* segments recorded */
	SEG_STAT_NO_RING,        /* segments on a CPU beyond ring_cpus: not recorded */
	SEG_STAT_HEAD_FAILED,    /* payload not loaded: recorded without its head */
	SEG_STAT_PORTS_LEARNT,   /* app ports learnt from proxy SYNs */
	SEG_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SEG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} segment_stats SEC(".maps");

/* So that the object's BTF carries these types for bpf2go's -type. */
const struct segment_btf_anchors {
	struct segment_record record;
	struct ring_head head;
	enum segment_hook hook;
	enum segment_stat stat;
} *unused_segment_btf_anchors __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&segment_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline int parsed(struct __sk_buff *skb, struct segment *seg)
{
	switch (parse(skb, seg)) {
	case PARSE_OK:
		return 1;
	case PARSE_IP_FRAGMENT:
		count(SEG_STAT_IP_FRAGMENT);
		return 0;
	case PARSE_IPV6_EXT_HDR:
		count(SEG_STAT_IPV6_EXT_HDR);
		return 0;
	default:
		count(SEG_STAT_NOT_TCP);
		return 0;
	}
}

/* worth_recording: payload, or a SYN, FIN or RST, and the gate lets it
 * through. A bare ACK changes no exchange (about half of a request's
 * packets); with the gate closed only a client's SYN and a FIN or RST are
 * recorded, so that the process notes connections that start and forgets
 * those that end (exchange.bpf.c's gate_stops). */
static __always_inline int worth_recording(const struct segment *seg, __u32 gate)
{
	if (seg->payload_len == 0 && !(seg->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST))) {
		count(SEG_STAT_BARE_ACK);
		return 0;
	}
	if (gate == GATE_CLOSED && (seg->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN &&
	    !(seg->tcp_flags & (TCP_FIN | TCP_RST))) {
		count(SEG_STAT_GATE_CLOSED);
		return 0;
	}
	return 1;
}

/* slot returns slot n of this CPU's region. */
static __always_inline void *slot(__u32 cpu, __u64 n)
{
	__u32 idx = cpu * slots_per_cpu + ((__u32)n & (slots_per_cpu - 1));

	return bpf_map_lookup_elem(&segment_ring, &idx);
}

/* record writes seg to this CPU's ring, with the payload's first bytes in
 * the next slot when it has payload, and publishes it. */
static __always_inline void record(struct __sk_buff *skb, const struct segment *seg, __u8 hook,
				   __u8 src_roles, __u8 dst_roles, __u32 gate)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct segment_record *r;
	struct ring_head *h;
	__u64 produced;
	void *head;

	if (cpu >= ring_cpus) {
		count(SEG_STAT_NO_RING);
		return;
	}
	h = bpf_map_lookup_elem(&ring_heads, &cpu);
	if (!h)
		return;
	produced = h->produced;
	r = slot(cpu, produced);
	if (!r)
		return;
	r->time_ns = bpf_ktime_get_ns();
	r->seq = seg->seq;
	r->payload_len = seg->payload_len;
	r->sport = seg->sport;
	r->dport = seg->dport;
	r->tcp_flags = seg->tcp_flags;
	r->family = seg->family;
	r->hook = hook;
	r->src_roles = src_roles;
	r->dst_roles = dst_roles;
	r->gate = gate;
	r->head_len = 0;
	r->version = SEGMENT_RECORD_VERSION;
	r->epoch = sampling_epoch;
	__builtin_memcpy(r->saddr, seg->saddr, 16);
	__builtin_memcpy(r->daddr, seg->daddr, 16);
	produced += 1;
	if (seg->payload_len > 0 && (head = slot(cpu, produced))) {
		__u64 n = seg->payload_len;

		if (n > sizeof(*r))
			n = sizeof(*r);
		/* The verifier must see n bounded to 1..64 on the register
		 * passed to the helper (see exchange.bpf.c's capture_head). */
		asm volatile("" : "+r"(n));
		if (n >= 1 && n <= sizeof(*r)) {
			if (bpf_skb_load_bytes(skb, seg->payload_off, head, n) == 0) {
				r->head_len = n;
				produced += 1;
			} else {
				count(SEG_STAT_HEAD_FAILED);
			}
		}
	}
	/* Publish: the reader reads slots up to this count only, and the
	 * exchange orders the slots' writes before it. */
	__sync_lock_test_and_set(&h->produced, produced);
	count(SEG_STAT_RECORDED);
}

/* note_server_cgroup remembers which cgroup's socket answers on an edge
 * port: with a sidecar, the proxy's container (userspace reads it to tell
 * the proxy's CPU from the application's). */
static __always_inline void note_server_cgroup(struct __sk_buff *skb, __u16 port)
{
	__u64 cg = bpf_skb_cgroup_id(skb);

	if (cg != 0 && edge_cgroup_by_port[port] != cg)
		edge_cgroup_by_port[port] = cg;
}

static __always_inline int edge_segment(struct __sk_buff *skb, int ingress)
{
	struct segment seg = {};
	__u8 src_roles, dst_roles, server_roles;
	__u32 gate = sampling_gate;

	count(SEG_STAT_PACKETS);
	if (!parsed(skb, &seg) || !worth_recording(&seg, gate))
		return TC_ACT_UNSPEC;
	src_roles = roles_by_port[seg.sport];
	dst_roles = roles_by_port[seg.dport];
	server_roles = ingress ? dst_roles : src_roles;
	if (!(server_roles & PORT_ROLE_EDGE)) {
		/* Perhaps an outbound call: the process knows. */
		if (!record_outbound) {
			count(SEG_STAT_NO_PORT);
			return TC_ACT_UNSPEC;
		}
	} else if (!ingress && seg.payload_len > 0) {
		note_server_cgroup(skb, seg.sport);
	}
	record(skb, &seg, ingress ? HOOK_EDGE_INGRESS : HOOK_EDGE_EGRESS, src_roles, dst_roles, gate);
	return TC_ACT_UNSPEC;
}

/* Hook: TC ingress (TCX or clsact) of the pod's eth0: clients' requests with
 * the original destination port, before iptables redirects them to the
 * proxy. Attaching needs CAP_NET_ADMIN. */
SEC("tc")
int edge_ingress_segment(struct __sk_buff *skb)
{
	return edge_segment(skb, 1);
}

/* Hook: TC egress (TCX or clsact) of the pod's eth0: responses after
 * netfilter has put the service port back. Attaching needs CAP_NET_ADMIN. */
SEC("tc")
int edge_egress_segment(struct __sk_buff *skb)
{
	return edge_segment(skb, 0);
}

/* Hook: TC ingress (TCX or clsact) of the pod's lo, where every loopback
 * packet passes once: both directions of the proxy's connections to the
 * application. Attaching needs CAP_NET_ADMIN. */
SEC("tc")
int app_segment(struct __sk_buff *skb)
{
	struct segment seg = {};
	__u8 src_roles, dst_roles;
	__u32 gate = sampling_gate;

	count(SEG_STAT_PACKETS);
	if (!parsed(skb, &seg) || !worth_recording(&seg, gate))
		return TC_ACT_UNSPEC;
	src_roles = roles_by_port[seg.sport];
	dst_roles = roles_by_port[seg.dport];
	if (!((src_roles | dst_roles) & PORT_ROLE_APP)) {
		if ((seg.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN && dst_roles == 0 &&
		    bpf_map_lookup_elem(&proxy_sources, seg.saddr)) {
			/* Learn the application's port from the proxy's
			 * connection attempt, so an unconfigured port is still
			 * measured. */
			dst_roles = PORT_ROLE_APP | PORT_ROLE_LEARNT;
			roles_by_port[seg.dport] = dst_roles;
			count(SEG_STAT_PORTS_LEARNT);
		} else if (!record_outbound) {
			count(SEG_STAT_NO_PORT);
			return TC_ACT_UNSPEC;
		}
	}
	record(skb, &seg, HOOK_APP, src_roles, dst_roles, gate);
	return TC_ACT_UNSPEC;
}
