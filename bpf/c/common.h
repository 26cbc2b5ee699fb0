/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the kubectl-mesh BPF programs and, through bpf2go's -type
 * flag, by the Go loader. Every struct here crosses the kernel/user boundary,
 * so each has explicit padding and a fixed size: the Go decoder in
 * probe/exchange checks the same sizes and offsets.
 */
#ifndef KMESH_COMMON_H
#define KMESH_COMMON_H

/*
 * Version of struct exchange_event. Bumped whenever its layout changes so an
 * old userspace refuses events it would misread instead of decoding garbage.
 */
#define EXCHANGE_EVENT_VERSION 1

/* Bytes of the start of a request payload copied into each event. */
#define REQ_HEAD_LEN 64

/* Which side of the proxy an exchange was seen on. */
enum leg {
	/* The pod's eth0: client <-> proxy, seen with the original service port
	 * because TC ingress runs before netfilter's REDIRECT to the proxy. */
	LEG_EDGE = 1,
	/* The pod's lo: proxy <-> application. */
	LEG_APP = 2,
};

/* Which end of the connection lives in the pod. */
enum direction {
	/* The pod serves: a client elsewhere calls the application through
	 * the proxy (edge exchange outside, app exchange inside it). */
	DIRECTION_INBOUND = 1,
	/* The pod calls: the application's request goes to the proxy on lo
	 * (app exchange outside) and the proxy calls the upstream over eth0
	 * (edge exchange inside it). */
	DIRECTION_OUTBOUND = 2,
};

/* exchange_event.flags */
enum exchange_flag {
	/* The exchange ended because a FIN was seen. */
	EXCHANGE_F_FIN = 1 << 0,
	/* The exchange ended because a RST was seen. */
	EXCHANGE_F_RST = 1 << 1,
	/* At least one payload segment did not advance the sequence number. */
	EXCHANGE_F_RETRANSMIT = 1 << 2,
	/* The connection was first seen mid-stream (opened before the probe was
	 * attached, or its flow entry was evicted): the start of this exchange
	 * was not observed and its timestamps must not be used for latency. */
	EXCHANGE_F_PREDATES_PROBE = 1 << 3,
	/* More than one request (or response) message was seen in this
	 * exchange: HTTP/1.1 pipelining; the exchange cannot be split per request. */
	EXCHANGE_F_PIPELINED = 1 << 4,
	/* Response bytes were seen without any request bytes before them
	 * (server-first protocol such as a banner). */
	EXCHANGE_F_NO_REQUEST = 1 << 5,
	/* The client half-closed (FIN) before the response completed. */
	EXCHANGE_F_CLIENT_FIN = 1 << 6,
	/* Emitted by the idle scan (flush_idle): the connection stayed quiet
	 * for the idle time after the response, so the exchange was written
	 * out without waiting for the next request or the end of the
	 * connection. */
	EXCHANGE_F_IDLE = 1 << 7,
	/* An inner exchange (app inbound, edge outbound) that started while the
	 * sampling gate admitted inner exchanges only (GATE_INNER_ONLY): its
	 * outer exchange may not have been followed, so without a match it is
	 * outside the sample, not unmatched. */
	EXCHANGE_F_GATE_INNER = 1 << 8,
};

/* The sampling gate (exchange.bpf.c's sampling_gate), set by userspace. Above
 * a request rate the probe follows exchanges during part of each period
 * only, so that its cost nearly stops growing with the rate (probe/sampler). The
 * gate moves OPEN -> INNER_ONLY -> CLOSED -> INNER_ONLY -> OPEN: no outer
 * exchange starts unless the inner exchanges inside it will be followed
 * too, and every outer exchange started while open can end before the gate
 * closes. */
enum sample_gate {
	GATE_OPEN = 0,       /* every exchange is followed */
	GATE_INNER_ONLY = 1, /* outer exchanges do not start; inner ones do (EXCHANGE_F_GATE_INNER) */
	GATE_CLOSED = 2,     /* packets leave after parsing, but a client's SYN, a FIN or a RST */
};

/*
 * One request/response exchange on one TCP connection, emitted to the ring
 * buffer when it ends: when a new request starts after response bytes were
 * seen (HTTP/1.1 keep-alive alternation), on FIN/RST, or when the idle scan
 * finds it finished and quiet (EXCHANGE_F_IDLE). Each exchange is emitted at
 * most once whichever of these comes first.
 *
 * Addresses are IPv6 or IPv4-mapped IPv6 (::ffff:a.b.c.d), network order.
 * "client" is the peer that sent the request, "server" owns the port of
 * interest. Timestamps are bpf_ktime_get_ns(): CLOCK_MONOTONIC.
 */
struct exchange_event {
	__u64 req_start_ns;  /* first request payload byte */
	__u64 req_end_ns;    /* last request payload byte */
	__u64 resp_start_ns; /* first response payload byte, 0 if none */
	__u64 resp_end_ns;   /* last response payload byte, 0 if none */
	__u64 req_bytes;     /* request payload bytes, retransmissions excluded */
	__u64 resp_bytes;    /* response payload bytes, retransmissions excluded */
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port; /* host order */
	__u16 server_port; /* host order */
	__u32 ifindex;
	__u32 flags;       /* enum exchange_flag */
	__u16 retransmits; /* payload segments that did not advance seq */
	__u16 requests;    /* request messages seen (>1 means pipelined) */
	__u16 responses;   /* response messages seen (>1 means pipelined) */
	__u8 version;      /* EXCHANGE_EVENT_VERSION */
	__u8 leg;          /* enum leg */
	__u8 direction;    /* enum direction */
	__u8 family;       /* 4 or 6 */
	__u8 head_len;     /* valid bytes in head */
	__u8 _pad[1];
	__u8 head[REQ_HEAD_LEN]; /* start of the request payload */
};

/* ports map value: what a port means to the probe. */
enum port_role {
	/* Server port of the pod seen on eth0 (the service/container port). */
	PORT_ROLE_EDGE = 1 << 0,
	/* Server port of the application seen on lo (the proxy connects to it). */
	PORT_ROLE_APP = 1 << 1,
	/* Set by the BPF program when it learnt the APP role itself: a SYN on lo
	 * from one of the configured proxy source addresses (Istio: 127.0.0.6). */
	PORT_ROLE_LEARNT = 1 << 2,
	/* The proxy's outbound port on lo (Istio 15001, Linkerd 4140), where
	 * iptables REDIRECT delivers the application's outgoing connections. */
	PORT_ROLE_OUTBOUND = 1 << 3,
};

/* Indexes into the per-CPU stats array. Every packet or exchange the programs
 * give up on is counted here: nothing is dropped silently. */
enum exchange_stat {
	STAT_PACKETS = 0,        /* packets seen by any TC program */
	STAT_NOT_TCP,            /* not IPv4/IPv6 TCP (or not parseable) */
	STAT_IPV6_EXT_HDR,       /* IPv6 with extension headers: not parsed */
	STAT_IP_FRAGMENT,        /* IPv4 fragments: not parsed */
	STAT_NO_PORT,            /* TCP, but no port of interest */
	STAT_FLOWS_CREATED,      /* flow entries created */
	STAT_FLOW_CREATE_FAILED, /* bpf_map_update_elem on flows failed */
	STAT_PREDATES_PROBE,     /* flows first seen mid-stream */
	STAT_RETRANSMITS,        /* payload segments that did not advance seq */
	STAT_EVENTS,             /* exchange events submitted */
	STAT_RINGBUF_FULL,       /* exchange events lost: ring buffer full */
	STAT_PORTS_LEARNT,       /* app ports learnt from proxy SYNs */
	STAT_LOAD_FAILED,        /* bpf_skb_load_bytes failed */
	STAT_IDLE_FLUSHED,       /* exchanges emitted by the idle scan */
	STAT_IDLE_LATE,          /* response segments after the idle scan emitted the exchange */
	STAT_IDLE_RACE,          /* idle-scan events discarded: the flow moved on while copied */
	STAT_BARE_ACK,           /* TCP without payload, SYN, FIN or RST: nothing to track */
	STAT_OUTBOUND_UNKNOWN,   /* segments of outbound-looking connections not seen from their start */
	STAT_GATE_CLOSED,        /* segments that met the sampling gate closed */
	STAT_GATE_SKIPPED,       /* outer exchanges not followed: the gate admitted inner ones only */
	STAT_GATE_CUT,           /* exchanges (not GATE_INNER) dropped, their end unsure: the gate closed on them */
	STAT_MAX,
};

/*
 * Context of the flush_idle program (BPF_PROG_TYPE_SYSCALL), passed in and
 * read back through BPF_PROG_TEST_RUN.
 */
struct flush_args {
	__u64 idle_ns;  /* in: emit finished exchanges quiet for at least this long */
	__u64 now_ns;   /* out: bpf_ktime_get_ns() at the start of the scan */
	__u32 scanned;  /* out: flows visited */
	__u32 flushed;  /* out: exchanges emitted */
	__u32 staged;   /* out: staged exchanges sent to the ring buffer, every CPU's */
	__u8 staged_only; /* in: send the staged exchanges only, scan no flow */
	__u8 walked;      /* out: the flow table was walked (not skipped as settled) */
	__u8 _pad[2];
};

/* Key of the cpu_ns map: one cgroup v2 id. */
struct cpu_key {
	__u64 cgroup_id;
};

/* Configuration of the sched_switch program, index 0 of cpu_config. */
struct cpu_config {
	/* Only tasks whose cgroup has this ancestor are accounted. 0 accounts
	 * every task except the idle tasks. */
	__u64 ancestor_cgroup_id;
	/* Level of ancestor_cgroup_id in the cgroup v2 tree (root is 0). */
	__u32 ancestor_level;
	/* Non-zero: discovery mode. Nothing is accounted; when a thread of the
	 * process with this tgid, as numbered in the pid namespace
	 * (discover_pidns_dev, discover_pidns_ino), switches out, its cgroup v2
	 * and that cgroup's ancestors are written to the ancestry map.
	 * The process is named by pid, not by cgroup id, because the probe
	 * often cannot learn its own cgroup id from the filesystem: inside a
	 * cgroup namespace its cgroup is the root of what it sees, and on a
	 * hybrid v1/v2 host the container runtime mounts no cgroup2 into the
	 * container at all. The kernel knows both. */
	__u32 discover_tgid;
	/* The pid namespace's device (kernel dev_t, major << 20 | minor) and
	 * inode, as bpf_get_ns_current_pid_tgid() takes them. */
	__u64 discover_pidns_dev;
	__u64 discover_pidns_ino;
	/* When accounting started (CLOCK_MONOTONIC ns, as task_struct's
	 * start_time): a task born since has all of its runtime charged at
	 * its first switch-out; an older one only what it runs after that. */
	__u64 since_ns;
};

/* Depth of the ancestry map: cgroup levels recorded by discovery. */
#define CPU_MAX_LEVELS 32
/* Index in the ancestry map of the discovered cgroup's own id, written
 * after its ancestors: non-zero there means the levels are complete. */
#define CPU_ANCESTRY_SELF CPU_MAX_LEVELS

/*
 * Version of struct segment_record (segments.bpf.c), bumped with its layout.
 */
#define SEGMENT_RECORD_VERSION 1

/* Which TC hook recorded a segment. */
enum segment_hook {
	HOOK_EDGE_INGRESS = 1, /* the pod's eth0, ingress */
	HOOK_EDGE_EGRESS = 2,  /* the pod's eth0, egress */
	HOOK_APP = 3,          /* the pod's lo (ingress: each packet once) */
};

/*
 * One TCP segment as segments.bpf.c records it for the probe's process,
 * which follows the connections itself (probe/flowtrack). 64 bytes, one
 * cache line: a slot of a CPU's ring. A segment with payload takes the
 * next slot too, for the payload's first head_len bytes (a request's head,
 * a response's status line).
 */
struct segment_record {
	__u64 time_ns;     /* bpf_ktime_get_ns() when the program ran */
	__u32 seq;         /* host order */
	__u32 payload_len; /* TCP payload bytes */
	__u16 sport;       /* host order */
	__u16 dport;       /* host order */
	__u8 tcp_flags;
	__u8 family;    /* 4 or 6 */
	__u8 hook;      /* enum segment_hook */
	__u8 src_roles; /* enum port_role bits of sport when recorded */
	__u8 dst_roles; /* enum port_role bits of dport when recorded */
	__u8 gate;      /* enum sample_gate when recorded */
	__u8 head_len;  /* payload bytes in the next slot; 0: no next slot */
	__u8 version;   /* SEGMENT_RECORD_VERSION */
	__u32 epoch;    /* the sampling gate's reopening count when recorded */
	__u8 saddr[16]; /* IPv6, or IPv4-mapped IPv6; network order */
	__u8 daddr[16];
};

/* A CPU's producer position in the segment ring, alone in its cache line:
 * only that CPU's TC programs write it, the reader only reads it. */
struct ring_head {
	__u64 produced; /* slots written since the probe started */
	__u64 _pad[7];
};

#endif /* KMESH_COMMON_H */
