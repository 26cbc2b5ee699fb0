// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * exchange.bpf.c: request/response timing of TCP connections inside one pod,
 * seen from two places:
 *
 *   edge: the pod's eth0, client <-> sidecar proxy. TC ingress runs before
 *         netfilter PREROUTING and TC egress after POSTROUTING, so both see
 *         the original service port even though iptables redirects the
 *         connection to the proxy's inbound port (Istio 15006, Linkerd 4143).
 *   app:  the pod's lo, sidecar proxy <-> application. Every loopback packet
 *         crosses lo egress and then lo ingress; only ingress is hooked so
 *         each packet is counted once, at the time it reaches its receiver.
 *
 * While the sampling gate is closed the loader detaches the programs of lo
 * and of eth0 ingress (TCX), so their packets run nothing; eth0 egress stays,
 * for the SYNs of outbound connections (gate_stops).
 *
 * For every TCP connection to a port of interest the programs follow the
 * HTTP/1.1 keep-alive alternation: request bytes from the client, then
 * response bytes from the server, then the next request. When the next
 * request starts (or the connection ends with FIN/RST) the finished exchange
 * is written to the events ring buffer. Userspace (probe/pairing) pairs edge
 * and app exchanges; edge duration minus app duration is the time the proxy
 * added.
 *
 * A keep-alive connection that goes quiet after a response would hold its
 * last exchange back until the next request. flush_idle, a syscall program
 * that userspace runs every ~100ms with BPF_PROG_TEST_RUN, walks the flow
 * table and emits finished exchanges that have been quiet for a while. Each
 * exchange has a number (flow.xid) and whoever emits it first claims that
 * number with a compare-and-swap on flow.claimed, so an exchange is emitted
 * exactly once whether the idle scan or the TC program gets there first.
 * The atomics need the v3 instruction set (kernel 5.12+, clang -mcpu=v3).
 *
 * Outbound (when the loader sets track_outbound: the proxy has an outbound
 * port) is the mirror: the application's connection to the proxy's outbound
 * port on lo is the outer exchange, the proxy's connection to the upstream
 * on eth0 the inner one. The eth0 side follows only connections whose SYN
 * left the pod, so connections it accepted, or opened before the probe, are
 * never mistaken for outbound calls.
 *
 * Edge egress also records which cgroup's socket answers on each edge port
 * (bpf_skb_cgroup_id): with a sidecar, that is the proxy's container, which
 * is how userspace tells the proxy's CPU from the application's.
 *
 * Nothing here needs kprobes or fentry: only TC (sched_cls) programs, which
 * need CAP_BPF to load and CAP_NET_ADMIN to attach, and the syscall program,
 * which needs CAP_BPF.
 *
 * The programs never change a packet and always return TC_ACT_UNSPEC, which
 * both TCX and legacy cls_bpf read as "continue with the next program", so an
 * existing CNI program on the same hook keeps working.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "packet.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Flow table sizes are defaults; the Go loader may change max_entries before
 * loading. */
#define MAX_FLOWS 16384
#define MAX_PORTS 1024

/* Exchange state of a connection. */
enum flow_state {
	FLOW_IDLE = 0,     /* no exchange in progress */
	FLOW_REQUEST = 1,  /* request bytes seen, no response bytes yet */
	FLOW_RESPONSE = 2, /* response bytes seen */
	/* Not following: the sampling gate closed since the connection was
	 * last seen, or kept an outer exchange from starting, or the
	 * connection was first seen mid-stream after the gate had closed
	 * once (track). Following
	 * resumes at the next request that surely starts one: after response
	 * bytes (flow.answered), or a request line. */
	FLOW_SKIP = 3,
};

/* flow.seq_known bits: whether next_*_seq has been initialised. */
#define SEQ_KNOWN_REQ 1
#define SEQ_KNOWN_RESP 2

/* A connection, oriented client -> server. The ifindex keeps the edge and
 * app legs (and several pod interfaces) apart. */
struct flow_key {
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port;
	__u16 server_port;
	__u32 ifindex;
};

/* Per-connection state: the exchange in progress plus the sequence numbers
 * needed to tell new payload from retransmitted payload. */
struct flow {
	__u64 req_start_ns;
	__u64 req_end_ns;
	__u64 resp_start_ns;
	__u64 resp_end_ns;
	__u64 req_bytes;
	__u64 resp_bytes;
	__u32 next_req_seq;  /* next expected client->server sequence number */
	__u32 next_resp_seq; /* next expected server->client sequence number */
	__u32 flags;         /* enum exchange_flag for the exchange in progress */
	__u32 xid;           /* number of the exchange in progress, from 1 */
	__u32 claimed;       /* xid of the last exchange emitted (claim_exchange) */
	__u32 epoch;         /* sampling_epoch when the connection was last seen */
	__u16 retransmits;
	__u16 requests;
	__u16 responses;
	__u8 state;     /* enum flow_state */
	__u8 seq_known; /* SEQ_KNOWN_* */
	__u8 interim;   /* the response so far is an HTTP 1xx (100-continue) */
	__u8 leg;
	__u8 direction; /* enum direction */
	__u8 family;
	__u8 head_len;
	__u8 cgroup_noted; /* edge: note_server_cgroup ran for this connection */
	__u8 answered;     /* FLOW_SKIP: response bytes seen since skipping began */
	__u8 head[REQ_HEAD_LEN];
};

/* Set by the Go loader before loading (bpf.ExchangeOptions.Outbound): follow
 * outbound connections too. A constant, so that without it the verifier
 * prunes the outbound paths and inbound-only pods pay nothing for them. */
volatile const __u8 track_outbound = 0;

/* The sampling gate (enum sample_gate) and the number of times it has
 * reopened, written by userspace through the memory-mapped .bss
 * (bpf.ExchangeProbe.SetGate). A flow whose epoch is older missed packets
 * while the gate was closed: its exchange in progress is cut and the
 * connection is followed again from its next request (resync). */
__u32 sampling_gate;
__u32 sampling_epoch;

/* Whether track may create a flow entry for a segment of an unknown
 * connection. */
enum create_policy {
	CREATE_ANY = 0,    /* any segment (mid-stream: flagged PREDATES_PROBE) */
	CREATE_ON_SYN = 1, /* only a SYN from the client: the start was seen */
	CREATE_NEVER = 2,  /* the connection must already be tracked */
};

/* Connections in flight. LRU so that connections whose FIN/RST was never
 * seen cannot fill the table: the least recently used is evicted instead. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

/* Ports of interest (host order) -> enum port_role bits, one byte per port.
 * Written by the Go loader from the pod's container ports (through the
 * memory-mapped .bss); the app program adds learnt ports. A global array,
 * not a hash map: every packet looks up one or two ports, and here that is
 * a load, where a hash map took a helper call that hashes the key. */
__u8 roles_by_port[1 << 16];

/* Source addresses the sidecar uses for its connections to the application
 * (IPv6 or IPv4-mapped, e.g. Istio's 127.0.0.6). A SYN on lo from one of them
 * teaches the app program the application's port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u8[16]);
	__type(value, __u8);
} proxy_sources SEC(".maps");

/* Finished exchanges, read by probe/pairing. Records are submitted with
 * BPF_RB_NO_WAKEUP: the reader drains the ring on its own timer, paced by the
 * traffic (probe/agent), and never blocks in the ring's epoll, so a wakeup
 * would only cost a context switch per exchange, taken in the softirq of a
 * request's packet. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Exchanges on their way to the ring buffer, per CPU, EMIT_BATCH to a
 * record. Taking a place in the ring for every exchange cost about a tenth
 * of the TC programs' time in a pod, a fifth of edge_ingress's
 * (docs/benchmarks.md, session 9): its
 * producer position and lock are shared by every CPU and read by the
 * reader, so each record took their cache lines from another CPU. The
 * staging area stays in this CPU's cache.
 *
 * owner says who may touch n and events: a TC program (STAGING_EMITTER)
 * or the flush in flush_idle (STAGING_FLUSHER), which userspace runs
 * every scan interval on whichever CPU and which sends every CPU's staged
 * exchanges, so none waits longer than that. A TC program that finds the
 * flush holding its CPU's area writes its record straight to the ring;
 * the flush skips an area a TC program holds (that CPU is at work and
 * sends its batch itself, or the next flush does). Nobody waits. */
#define EMIT_BATCH 8

/* Bound of flush_idle's loop over CPU numbers (the kernel's own limit on
 * possible CPUs is NR_CPUS; the loop stops at the first one past them). */
#define MAX_CPUS 8192

enum staging_owner {
	STAGING_FREE = 0,
	STAGING_EMITTER = 1,
	STAGING_FLUSHER = 2,
};

struct staging {
	__u32 owner; /* enum staging_owner */
	__u32 n;     /* exchanges staged */
	struct exchange_event events[EMIT_BATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct staging);
} staged SEC(".maps");

/* Edge server port (host order) -> cgroup v2 id of the socket that answered
 * the latest connection on it (its first response payload on eth0 egress,
 * note_server_cgroup). With a sidecar this is the
 * proxy's container: iptables REDIRECT hands the connection to the proxy,
 * whose socket answers. Userspace reads it to name the proxy's cgroup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u64);
} edge_cgroups SEC(".maps");

/* Counters, enum stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Referenced here only so that the object's BTF carries these types and
 * bpf2go can generate their Go declarations (-type). */
const struct btf_anchors {
	struct exchange_event event;
	enum exchange_stat stat;
	enum port_role role;
	enum exchange_flag flag;
	enum leg leg;
	enum direction direction;
	struct flush_args flush;
	enum staging_owner owner;
	enum sample_gate gate;
} *unused_btf_anchors __attribute__((unused));

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += n;
}

static __always_inline void count(__u32 idx)
{
	count_n(idx, 1);
}

/* parse_counted parses a frame, counting what it gives up on. */
static __always_inline int parse_counted(struct __sk_buff *skb, struct segment *seg)
{
	switch (parse(skb, seg)) {
	case PARSE_OK:
		return 0;
	case PARSE_IP_FRAGMENT:
		count(STAT_IP_FRAGMENT);
		return -1;
	case PARSE_IPV6_EXT_HDR:
		count(STAT_IPV6_EXT_HDR);
		return -1;
	default:
		count(STAT_NOT_TCP);
		return -1;
	}
}

static __always_inline __u32 port_roles(__u16 port)
{
	return roles_by_port[port];
}

/* First four payload bytes as they appear on the wire, 0 if fewer than 8
 * payload bytes can be read. */
static __always_inline __u32 payload_word(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 b[8];

	if (len < sizeof(b) || load_bytes(skb, off, b, sizeof(b)) < 0)
		return 0;
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

#define WORD(a, b, c, d) ((__u32)(a) << 24 | (__u32)(b) << 16 | (__u32)(c) << 8 | (__u32)(d))

/* Whether a request segment starts an HTTP/1.x request line. Used only to
 * notice pipelining inside an exchange; plaintext only. */
static __always_inline int starts_request(__u32 w)
{
	switch (w) {
	case WORD('G', 'E', 'T', ' '):
	case WORD('P', 'O', 'S', 'T'):
	case WORD('P', 'U', 'T', ' '):
	case WORD('H', 'E', 'A', 'D'):
	case WORD('D', 'E', 'L', 'E'):
	case WORD('P', 'A', 'T', 'C'):
	case WORD('O', 'P', 'T', 'I'):
	case WORD('C', 'O', 'N', 'N'):
	case WORD('T', 'R', 'A', 'C'):
		return 1;
	}
	return 0;
}

/* Whether a response segment starts an HTTP/1.x status line; *interim is
 * set for 1xx responses (100 Continue), which precede the real response. */
static __always_inline int starts_response(struct __sk_buff *skb, __u32 off, __u32 len, __u8 *interim)
{
	__u8 b[10];

	*interim = 0;
	if (len < sizeof(b) || load_bytes(skb, off, b, sizeof(b)) < 0)
		return 0;
	if (b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/')
		return 0;
	/* "HTTP/1.1 1xx" */
	*interim = b[9] == '1';
	return 1;
}

/* reset_exchange forgets the exchange in progress, keeping what belongs to
 * the connection (sequence numbers, leg, family). */
static __always_inline void reset_exchange(struct flow *f)
{
	/* The next exchange's number first, so that an idle scan copying
	 * the old one on another CPU sees the change (flush_one). */
	f->xid += 1;
	asm volatile("" ::: "memory");
	f->req_start_ns = 0;
	f->req_end_ns = 0;
	f->resp_start_ns = 0;
	f->resp_end_ns = 0;
	f->req_bytes = 0;
	f->resp_bytes = 0;
	f->flags = 0;
	f->retransmits = 0;
	f->requests = 0;
	f->responses = 0;
	f->state = FLOW_IDLE;
	f->interim = 0;
	f->head_len = 0;
	__builtin_memset(f->head, 0, sizeof(f->head));
}

/* claim_exchange takes the right to emit exchange xid of f. The TC
 * programs and the idle scan may race for it on different CPUs: the
 * compare-and-swap lets exactly one of them win. claimed only ever moves to
 * the current xid, so a failed swap means someone else claimed it. */
static __always_inline int claim_exchange(struct flow *f, __u32 xid)
{
	__u32 seen = f->claimed;

	if (seen == xid)
		return 0;
	return __sync_val_compare_and_swap(&f->claimed, seen, xid) == seen;
}

/* fill_event copies the exchange in progress into a reserved record. */
static __always_inline void fill_event(struct exchange_event *e, const struct flow *f,
				       const struct flow_key *key, __u32 extra_flags)
{
	e->req_start_ns = f->req_start_ns;
	e->req_end_ns = f->req_end_ns;
	e->resp_start_ns = f->resp_start_ns;
	e->resp_end_ns = f->resp_end_ns;
	e->req_bytes = f->req_bytes;
	e->resp_bytes = f->resp_bytes;
	__builtin_memcpy(e->client_addr, key->client_addr, 16);
	__builtin_memcpy(e->server_addr, key->server_addr, 16);
	e->client_port = key->client_port;
	e->server_port = key->server_port;
	e->ifindex = key->ifindex;
	e->flags = f->flags | extra_flags;
	e->retransmits = f->retransmits;
	e->requests = f->requests;
	e->responses = f->responses;
	e->version = EXCHANGE_EVENT_VERSION;
	e->leg = f->leg;
	e->direction = f->direction;
	e->family = f->family;
	e->head_len = f->head_len;
	e->_pad[0] = 0;
	__builtin_memcpy(e->head, f->head, sizeof(e->head));
}

/* send_staged writes the first n staged exchanges of st to the ring buffer
 * as one record; the caller owns st. A full ring buffer is counted
 * (STAT_RINGBUF_FULL, per exchange), never ignored. */
static __always_inline void send_staged(struct staging *st, __u32 n)
{
	if (n == 0 || n > EMIT_BATCH)
		return;
	if (bpf_ringbuf_output(&events, st->events, n * sizeof(struct exchange_event), BPF_RB_NO_WAKEUP) < 0) {
		count_n(STAT_RINGBUF_FULL, n);
		return;
	}
	count_n(STAT_EVENTS, n);
}

/* emit stages the exchange in progress for the ring buffer unless the idle
 * scan already emitted it; every EMIT_BATCH-th sends the batch. */
static __always_inline void emit(struct flow *f, const struct flow_key *key, __u32 extra_flags)
{
	struct exchange_event *e;
	struct staging *st;
	__u32 zero = 0, n;

	if (f->state == FLOW_IDLE || f->state == FLOW_SKIP)
		return;
	if (!claim_exchange(f, f->xid))
		return;
	st = bpf_map_lookup_elem(&staged, &zero);
	if (st && __sync_val_compare_and_swap(&st->owner, STAGING_FREE, STAGING_EMITTER) == STAGING_FREE) {
		n = st->n;
		if (n >= EMIT_BATCH) /* never: a full batch is sent at once; bounds the index */
			n = 0;
		fill_event(&st->events[n], f, key, extra_flags);
		n += 1;
		if (n == EMIT_BATCH) {
			send_staged(st, n);
			n = 0;
		}
		st->n = n;
		/* An atomic exchange, so that a flush on another CPU that
		 * takes the area next sees the record and n. */
		__sync_lock_test_and_set(&st->owner, STAGING_FREE);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return;
	}
	fill_event(e, f, key, extra_flags);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	count(STAT_EVENTS);
}

/* new_payload returns how many bytes of this segment were not seen before
 * and advances the expected sequence number; 0 means a retransmission (or an
 * out-of-order segment older than one already seen). */
static __always_inline __u32 new_payload(struct flow *f, const struct segment *seg, int from_client)
{
	__u32 seq = seg->seq;
	__u32 end, *next;
	__u8 bit = from_client ? SEQ_KNOWN_REQ : SEQ_KNOWN_RESP;
	__u32 fresh = seg->payload_len;

	if (seg->tcp_flags & TCP_SYN)
		seq += 1; /* TCP Fast Open: data follows the SYN's sequence number */
	end = seq + seg->payload_len;
	next = from_client ? &f->next_req_seq : &f->next_resp_seq;
	if (f->seq_known & bit) {
		__s32 advance = (__s32)(end - *next);

		if (advance <= 0)
			return 0;
		if ((__u32)advance < fresh)
			fresh = advance; /* partial overlap: only the tail is new */
	}
	*next = end;
	f->seq_known |= bit;
	return fresh;
}

static __always_inline void capture_head(struct __sk_buff *skb, struct flow *f, __u32 off, __u32 len)
{
	__u64 n = len;

	if (n > REQ_HEAD_LEN)
		n = REQ_HEAD_LEN;
	/* The verifier must see n bounded to 1..64 on the very register passed
	 * to bpf_skb_load_bytes; the empty asm stops clang from testing a
	 * copy instead. */
	asm volatile("" : "+r"(n));
	if (n < 1 || n > REQ_HEAD_LEN)
		return;
	if (bpf_skb_load_bytes(skb, off, f->head, n) < 0) {
		count(STAT_LOAD_FAILED);
		return;
	}
	f->head_len = n;
}

static __always_inline void on_request_payload(struct __sk_buff *skb, struct flow *f,
					       const struct flow_key *key, const struct segment *seg,
					       __u32 fresh, __u64 now, __u32 gate, int outer)
{
	__u32 off = seg->payload_off + (seg->payload_len - fresh);

	if (f->state == FLOW_SKIP) {
		/* Without response bytes since skipping began, these bytes
		 * may be the rest of a request whose start was missed. */
		if (!f->answered && !starts_request(payload_word(skb, off, fresh)))
			return;
		/* This request starts an exchange whose start is seen:
		 * nothing noted while skipping belongs to it. */
		f->state = FLOW_IDLE;
		f->flags = 0;
		f->retransmits = 0;
	}

	/* The payload's first word is read only where a request line could
	 * change the decision: after a 100 Continue, and inside a request
	 * (pipelining). The common case, keep-alive's next request after a
	 * response, starts a new exchange whatever its bytes: one load of
	 * payload fewer per request on each leg. */
	if (f->state == FLOW_RESPONSE) {
		if (f->interim && !starts_request(payload_word(skb, off, fresh))) {
			/* The response so far was "100 Continue": this is the
			 * request body, still the same exchange. */
			f->interim = 0;
			f->state = FLOW_REQUEST;
			f->req_end_ns = now;
			f->req_bytes += fresh;
			return;
		}
		/* Keep-alive: a new request after response bytes ends the
		 * previous exchange. */
		emit(f, key, 0);
		reset_exchange(f);
	}
	if (f->state == FLOW_IDLE) {
		/* track never gets here with the gate closed. */
		if (gate != GATE_OPEN) {
			if (outer) {
				f->state = FLOW_SKIP;
				f->answered = 0;
				count(STAT_GATE_SKIPPED);
				return;
			}
			f->flags |= EXCHANGE_F_GATE_INNER;
		}
		f->state = FLOW_REQUEST;
		f->req_start_ns = now;
		f->requests = 1;
		capture_head(skb, f, off, fresh);
	} else if (starts_request(payload_word(skb, off, fresh))) {
		/* A second request line before any response: pipelining. */
		f->requests += 1;
		f->flags |= EXCHANGE_F_PIPELINED;
	}
	f->req_end_ns = now;
	f->req_bytes += fresh;
}

static __always_inline void on_response_payload(struct __sk_buff *skb, struct flow *f,
						const struct segment *seg, __u32 fresh, __u64 now)
{
	__u32 off = seg->payload_off + (seg->payload_len - fresh);
	__u8 interim = 0;
	int status_line;

	if (f->state == FLOW_SKIP) {
		f->answered = 1;
		return;
	}
	status_line = starts_response(skb, off, fresh, &interim);
	if (f->state == FLOW_IDLE) {
		/* Response bytes with no request: either the connection
		 * predates the probe (flag already set) or the server speaks
		 * first. */
		if (!(f->flags & EXCHANGE_F_PREDATES_PROBE))
			f->flags |= EXCHANGE_F_NO_REQUEST;
	}
	if (f->claimed == f->xid)
		/* The idle scan already emitted this exchange: the response
		 * paused longer than the idle time (streaming). These bytes
		 * are not in the event. */
		count(STAT_IDLE_LATE);
	if (f->state != FLOW_RESPONSE) {
		f->state = FLOW_RESPONSE;
		f->resp_start_ns = now;
		f->responses = 1;
		f->interim = interim;
	} else if (status_line) {
		if (f->interim) {
			/* The final response after a 1xx, same request. */
			f->interim = interim;
		} else {
			f->responses += 1;
			f->flags |= EXCHANGE_F_PIPELINED;
		}
	}
	f->resp_end_ns = now;
	f->resp_bytes += fresh;
}

/* resync: the sampling gate closed since this connection was last seen,
 * so its segments in between were missed. The exchange in progress, unless
 * already emitted, is cut: dropped and counted (STAT_GATE_CUT; an inner one
 * started while only inner exchanges were followed is outside the sample
 * anyway, not counted). The sequence numbers are learnt again and the
 * connection skipped until its next request surely starts an exchange. */
static __always_inline void resync(struct flow *f, __u32 epoch)
{
	if ((f->state == FLOW_REQUEST || f->state == FLOW_RESPONSE) && f->claimed != f->xid &&
	    !(f->flags & EXCHANGE_F_GATE_INNER))
		count(STAT_GATE_CUT);
	reset_exchange(f);
	f->state = FLOW_SKIP;
	f->answered = 0;
	f->seq_known = 0;
	f->epoch = epoch;
}

/* track applies one segment to its connection's exchange state. f is the
 * connection's flow entry, looked up by the caller (NULL: not tracked yet);
 * create says whether this segment may start tracking it. */
static __always_inline void track(struct __sk_buff *skb, const struct segment *seg,
				  const struct flow_key *key, struct flow *f, int from_client,
				  __u8 leg, __u8 dir, enum create_policy create)
{
	__u8 tcp_flags = seg->tcp_flags;
	__u64 now = bpf_ktime_get_ns();
	__u32 gate = sampling_gate;
	__u32 epoch = sampling_epoch;
	/* The outer exchange contains the inner one: inbound, the edge's
	 * (client -> proxy) contains the app's (proxy -> application);
	 * outbound the reverse. */
	int outer = (leg == LEG_EDGE) == (dir == DIRECTION_INBOUND);

	/* With the gate closed only a client's SYN, or a FIN or RST, gets
	 * here (gate_stops): the connection may have moved on unseen, so what
	 * it had is cut, never emitted. A connection that ends is forgotten;
	 * one that starts is noted below. */
	if (f && (f->epoch != epoch || gate == GATE_CLOSED))
		resync(f, epoch);
	if (gate == GATE_CLOSED && !(tcp_flags & TCP_SYN)) {
		if (f)
			bpf_map_delete_elem(&flows, key);
		return;
	}
	if (tcp_flags & TCP_SYN && !(tcp_flags & TCP_ACK) && f) {
		/* A new connection reusing the 5-tuple of one whose end was
		 * not seen: flush what the old one had, start clean. */
		emit(f, key, 0);
		bpf_map_delete_elem(&flows, key);
		f = NULL;
	}
	if (!f) {
		struct flow init = {};

		/* Nothing to track for a pure ACK/FIN/RST of an unknown
		 * connection. */
		if (!(tcp_flags & TCP_SYN) && seg->payload_len == 0)
			return;
		if (tcp_flags & TCP_RST)
			return;
		if (create == CREATE_NEVER ||
		    (create == CREATE_ON_SYN &&
		     (!from_client || (tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN))) {
			count(STAT_OUTBOUND_UNKNOWN);
			return;
		}
		init.leg = leg;
		init.direction = dir;
		init.family = seg->family;
		init.xid = 1;
		init.epoch = epoch;
		if (!(tcp_flags & TCP_SYN) && epoch != 0) {
			/* First seen mid-stream after the sampling gate has
			 * closed: most likely a connection that started
			 * while it was, when the programs of lo and eth0
			 * ingress are detached (bpf.ExchangeProbe.SetGate).
			 * Followed from its next request that surely starts
			 * an exchange, as a connection that resyncs. */
			init.state = FLOW_SKIP;
		} else if (!(tcp_flags & TCP_SYN)) {
			/* First seen mid-stream: its first exchange may be
			 * missing its start. */
			init.flags = EXCHANGE_F_PREDATES_PROBE;
			count(STAT_PREDATES_PROBE);
		}
		if (bpf_map_update_elem(&flows, key, &init, BPF_NOEXIST) < 0) {
			/* EEXIST: another CPU created it first; use theirs. */
			f = bpf_map_lookup_elem(&flows, key);
			if (!f) {
				count(STAT_FLOW_CREATE_FAILED);
				return;
			}
		} else {
			count(STAT_FLOWS_CREATED);
			f = bpf_map_lookup_elem(&flows, key);
			if (!f)
				return;
		}
	}

	if (tcp_flags & TCP_SYN) {
		__u8 bit = from_client ? SEQ_KNOWN_REQ : SEQ_KNOWN_RESP;

		if (from_client)
			f->next_req_seq = seg->seq + 1;
		else
			f->next_resp_seq = seg->seq + 1;
		f->seq_known |= bit;
	}

	if (seg->payload_len > 0) {
		__u32 fresh = new_payload(f, seg, from_client);

		if (fresh == 0) {
			if (f->retransmits < 0xffff)
				f->retransmits += 1;
			f->flags |= EXCHANGE_F_RETRANSMIT;
			count(STAT_RETRANSMITS);
		} else if (from_client) {
			on_request_payload(skb, f, key, seg, fresh, now, gate, outer);
		} else {
			on_response_payload(skb, f, seg, fresh, now);
		}
	}

	if (tcp_flags & TCP_RST) {
		emit(f, key, EXCHANGE_F_RST);
		bpf_map_delete_elem(&flows, key);
		return;
	}
	if (tcp_flags & TCP_FIN) {
		if (from_client && f->state == FLOW_REQUEST) {
			/* Half-close after the request: the response is
			 * still to come. */
			f->flags |= EXCHANGE_F_CLIENT_FIN;
			return;
		}
		emit(f, key, EXCHANGE_F_FIN);
		bpf_map_delete_elem(&flows, key);
	}
}

static __always_inline void orient(struct flow_key *key, const struct segment *seg,
				   int from_client, __u32 ifindex)
{
	if (from_client) {
		__builtin_memcpy(key->client_addr, seg->saddr, 16);
		__builtin_memcpy(key->server_addr, seg->daddr, 16);
		key->client_port = seg->sport;
		key->server_port = seg->dport;
	} else {
		__builtin_memcpy(key->client_addr, seg->daddr, 16);
		__builtin_memcpy(key->server_addr, seg->saddr, 16);
		key->client_port = seg->dport;
		key->server_port = seg->sport;
	}
	key->ifindex = ifindex;
}

/* note_server_cgroup records the cgroup of the socket answering on an edge
 * port, once per connection: at its first response payload on egress (f
 * is the connection's flow, NULL if not tracked yet). A socket's cgroup
 * does not change, and a restarted proxy answers on new connections, so
 * the connection's later responses would only read the same value again:
 * in place that took a helper call and a hash lookup, ~100 ns, on every
 * response packet. The map is written only when the value changes. */
static __always_inline void note_server_cgroup(struct __sk_buff *skb, struct flow *f, __u16 port)
{
	__u64 cg;
	__u64 *known;

	if (f && f->cgroup_noted)
		return;
	cg = bpf_skb_cgroup_id(skb);
	if (cg == 0)
		return; /* no full socket behind the packet (e.g. a RST by the stack) */
	if (f)
		f->cgroup_noted = 1;
	known = bpf_map_lookup_elem(&edge_cgroups, &port);
	if (known && *known == cg)
		return;
	bpf_map_update_elem(&edge_cgroups, &port, &cg, BPF_ANY);
}

/* bare_ack: a segment that changes no exchange (an ACK or window update
 * without payload, SYN, FIN or RST); track would look its flow up and do
 * nothing. About half of a request's packets are such ACKs, so they leave
 * before the port and flow lookups and the clock read, counted. */
static __always_inline int bare_ack(const struct segment *seg)
{
	if (seg->payload_len > 0 || seg->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST))
		return 0;
	count(STAT_BARE_ACK);
	return 1;
}

/* gate_stops: with the sampling gate closed a segment leaves here, counted,
 * before any lookup: that is what closing saves on eth0 egress, and on
 * every hook with clsact (on TCX the others are detached meanwhile). A
 * client's SYN goes on to create its connection's flow (outbound
 * connections are followed only from their SYN; the flow resyncs when the
 * gate reopens), and a FIN or RST to forget its connection's (else the
 * table would keep every connection that ended while the gate was closed
 * until the LRU evicts it). Both are a few segments per connection, not
 * per request. */
static __always_inline int gate_stops(const struct segment *seg)
{
	if (sampling_gate != GATE_CLOSED || (seg->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN ||
	    seg->tcp_flags & (TCP_FIN | TCP_RST))
		return 0;
	count(STAT_GATE_CLOSED);
	return 1;
}

/* edge_packet handles one packet of the pod's eth0. ingress: packets from
 * clients (server port = destination); egress: packets to clients (server
 * port = source). */
static __always_inline int edge_packet(struct __sk_buff *skb, int ingress)
{
	struct segment seg = {};
	struct flow_key key = {};
	__u16 server_port;

	count(STAT_PACKETS);
	if (parse_counted(skb, &seg) < 0)
		return TC_ACT_UNSPEC;
	if (bare_ack(&seg) || gate_stops(&seg))
		return TC_ACT_UNSPEC;
	server_port = ingress ? seg.dport : seg.sport;
	if (port_roles(server_port) & PORT_ROLE_EDGE) {
		struct flow *f;

		/* Inbound: a client calls a port of the pod. */
		orient(&key, &seg, ingress, skb->ifindex);
		f = bpf_map_lookup_elem(&flows, &key);
		if (!ingress && seg.payload_len > 0)
			note_server_cgroup(skb, f, server_port);
		track(skb, &seg, &key, f, ingress, LEG_EDGE, DIRECTION_INBOUND, CREATE_ANY);
		return TC_ACT_UNSPEC;
	}
	if (!track_outbound) {
		count(STAT_NO_PORT);
		return TC_ACT_UNSPEC;
	}
	/* Perhaps outbound: the pod (its proxy) calls an upstream. The pod is
	 * the client, so egress carries the requests. Only a SYN leaving the
	 * pod starts tracking (track's CREATE_ON_SYN): a segment of any other
	 * unknown connection, such as one the pod accepted on a port that is
	 * not measured, is counted and left alone. */
	orient(&key, &seg, !ingress, skb->ifindex);
	track(skb, &seg, &key, bpf_map_lookup_elem(&flows, &key), !ingress, LEG_EDGE,
	      DIRECTION_OUTBOUND, ingress ? CREATE_NEVER : CREATE_ON_SYN);
	return TC_ACT_UNSPEC;
}

/* Hook: TC ingress (TCX or clsact) of the pod's eth0. Sees requests from
 * clients with the original destination port, before iptables redirects them
 * to the proxy. Attaching needs CAP_NET_ADMIN. */
SEC("tc")
int edge_ingress(struct __sk_buff *skb)
{
	return edge_packet(skb, 1);
}

/* Hook: TC egress (TCX or clsact) of the pod's eth0. Sees responses to
 * clients after netfilter has translated the proxy's source port back to the
 * original service port. Attaching needs CAP_NET_ADMIN. */
SEC("tc")
int edge_egress(struct __sk_buff *skb)
{
	return edge_packet(skb, 0);
}

/* outbound_key: the key of an application's connection to the proxy's
 * outbound port on lo. Only the application's end is in it: requests go to
 * the proxy's port, but answers come back from the address and port the
 * application dialled (netfilter reverses the REDIRECT on their way out of
 * the proxy's socket, before lo sees them), so the server end differs
 * between the two directions; the client end names the connection alone. */
static __always_inline void outbound_key(struct flow_key *key, const __u8 addr[16], __u16 port,
					 __u8 family, __u32 ifindex)
{
	__builtin_memcpy(key->client_addr, addr, 16);
	/* The unspecified address of the client's family (0.0.0.0 is
	 * ::ffff:0.0.0.0 here), so that events still decode as one family. */
	if (family == 4)
		ipv4_mapped(key->server_addr, 0);
	else
		__builtin_memset(key->server_addr, 0, 16);
	key->client_port = port;
	key->server_port = 0; /* never a server port of an inbound key */
	key->ifindex = ifindex;
}

/* outbound_answer applies seg to the application's outbound connection it
 * answers, if there is one; 1 if it did. */
static __always_inline int outbound_answer(struct __sk_buff *skb, const struct segment *seg)
{
	struct flow_key key = {};
	struct flow *f;

	outbound_key(&key, seg->daddr, seg->dport, seg->family, skb->ifindex);
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return 0;
	track(skb, seg, &key, f, 0, LEG_APP, DIRECTION_OUTBOUND, CREATE_NEVER);
	return 1;
}

/* Hook: TC ingress (TCX or clsact) of the pod's lo. Sees both directions of
 * proxy <-> application connections; every loopback packet crosses lo egress
 * then lo ingress, so hooking one side counts each packet once. Attaching
 * needs CAP_NET_ADMIN. */
SEC("tc")
int app_ingress(struct __sk_buff *skb)
{
	struct segment seg = {};
	struct flow_key key = {};
	int from_client;

	count(STAT_PACKETS);
	if (parse_counted(skb, &seg) < 0)
		return TC_ACT_UNSPEC;
	if (bare_ack(&seg) || gate_stops(&seg))
		return TC_ACT_UNSPEC;
	if (port_roles(seg.dport) & PORT_ROLE_APP) {
		from_client = 1;
	} else if (port_roles(seg.sport) & PORT_ROLE_APP) {
		struct flow *f;

		orient(&key, &seg, 0, skb->ifindex);
		f = bpf_map_lookup_elem(&flows, &key);
		/* An answer to an outbound call comes back with the source
		 * address and port the application dialled (netfilter undoes
		 * the REDIRECT), which may well be a port the pod serves too:
		 * an unknown connection here is first looked for among the
		 * outbound ones. */
		if (!f && track_outbound && outbound_answer(skb, &seg))
			return TC_ACT_UNSPEC;
		track(skb, &seg, &key, f, 0, LEG_APP, DIRECTION_INBOUND, CREATE_ANY);
		return TC_ACT_UNSPEC;
	} else if ((seg.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
		   bpf_map_lookup_elem(&proxy_sources, seg.saddr)) {
		/* Learn the application's port from the proxy's connection
		 * attempt, so an unconfigured port is still measured. */
		__u16 port = seg.dport;

		if (roles_by_port[port] == 0) {
			roles_by_port[port] = PORT_ROLE_APP | PORT_ROLE_LEARNT;
			count(STAT_PORTS_LEARNT);
		}
		from_client = 1;
	} else if (track_outbound && port_roles(seg.dport) & PORT_ROLE_OUTBOUND) {
		/* The application calls out; iptables has redirected the
		 * connection to the proxy's outbound port. */
		outbound_key(&key, seg.saddr, seg.sport, seg.family, skb->ifindex);
		track(skb, &seg, &key, bpf_map_lookup_elem(&flows, &key), 1, LEG_APP,
		      DIRECTION_OUTBOUND, CREATE_ANY);
		return TC_ACT_UNSPEC;
	} else {
		if (!(track_outbound && outbound_answer(skb, &seg)))
			count(STAT_NO_PORT);
		return TC_ACT_UNSPEC;
	}
	orient(&key, &seg, from_client, skb->ifindex);
	track(skb, &seg, &key, bpf_map_lookup_elem(&flows, &key), from_client, LEG_APP,
	      DIRECTION_INBOUND, CREATE_ANY);
	return TC_ACT_UNSPEC;
}

struct flush_ctx {
	__u64 now;
	__u64 idle_ns;
	__u32 scanned;
	__u32 flushed;
	__u32 waiting; /* finished exchanges not emitted, not yet quiet for idle_ns */
};

/* flush_idle's memory from one run to the next (only flush_idle touches
 * it; userspace runs it from one thread at a time). See flush_idle. */
struct scan_memory {
	__u64 prev_packets; /* packets counted at the previous scan */
	__u64 walk_packets; /* packets counted at the last walk's scan */
	__u32 walk_quiet;   /* the last walk's scan counted no packet since the one before */
	__u32 walk_waiting; /* what the last walk left waiting (flush_ctx.waiting) */
} scan_memory;

/* What flush_cpu gathers from every CPU. */
struct cpu_sweep {
	__u64 packets; /* STAT_PACKETS, summed */
	__u32 sent;    /* staged exchanges sent */
};

/* flush_one is bpf_for_each_map_elem's callback over flows: it emits the
 * exchange of a flow whose response was followed by idle_ns of silence. */
static long flush_one(struct bpf_map *map, struct flow_key *key, struct flow *f, struct flush_ctx *c)
{
	struct exchange_event *e;
	__u32 xid = f->xid;

	c->scanned += 1;
	if (f->state != FLOW_RESPONSE)
		return 0;
	if (f->epoch != sampling_epoch) {
		/* The gate closed on this flow since its last segment: its
		 * response may have gone on unseen. Its next segment would
		 * cut the exchange (resync); a connection that stays quiet
		 * would hide it, so once quiet for the idle time it is cut
		 * here, claimed so that it is counted once. */
		if (!(f->flags & EXCHANGE_F_GATE_INNER) && f->resp_end_ns + c->idle_ns <= c->now &&
		    claim_exchange(f, xid))
			count(STAT_GATE_CUT);
		return 0;
	}
	/* resp_end_ns may be later than now (a packet on another CPU since
	 * the scan started): compare without unsigned wrap-around. */
	if (f->resp_end_ns + c->idle_ns > c->now) {
		if (f->claimed != xid)
			c->waiting += 1; /* a later scan will emit it */
		return 0;
	}
	if (!claim_exchange(f, xid))
		return 0; /* already emitted, by an earlier scan or by TC */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(STAT_RINGBUF_FULL);
		return 0;
	}
	fill_event(e, f, key, EXCHANGE_F_IDLE);
	/* A request on another CPU may have reset the flow while it was
	 * copied: the record could mix two exchanges. Drop it, counted; that
	 * exchange was ours to emit, so it is lost rather than duplicated. */
	if (f->xid != xid || e->resp_end_ns + c->idle_ns > c->now) {
		bpf_ringbuf_discard(e, 0);
		count(STAT_IDLE_RACE);
		return 0;
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	count(STAT_EVENTS);
	count(STAT_IDLE_FLUSHED);
	c->flushed += 1;
	return 0;
}

/* flush_cpu is bpf_loop's callback over CPU numbers: it sends the
 * exchanges staged on that CPU, unless a TC program there holds them, and
 * adds up the CPU's packet counter. bpf_map_lookup_percpu_elem (Linux 5.19)
 * reaches another CPU's area; it returns NULL past the last possible CPU,
 * which ends the loop. */
static long flush_cpu(__u64 cpu, struct cpu_sweep *sweep)
{
	__u32 zero = 0, n, idx = STAT_PACKETS;
	struct staging *st = bpf_map_lookup_percpu_elem(&staged, &zero, (__u32)cpu);
	__u64 *packets = bpf_map_lookup_percpu_elem(&stats, &idx, (__u32)cpu);

	if (!st)
		return 1;
	if (packets)
		sweep->packets += *packets;
	if (st->n == 0) /* read without owning the area: only a hint */
		return 0;
	if (__sync_val_compare_and_swap(&st->owner, STAGING_FREE, STAGING_FLUSHER) != STAGING_FREE)
		return 0;
	n = st->n;
	if (n > EMIT_BATCH)
		n = 0;
	send_staged(st, n);
	sweep->sent += n;
	st->n = 0;
	__sync_lock_test_and_set(&st->owner, STAGING_FREE);
	return 0;
}

/* Not a hook: userspace runs it with BPF_PROG_TEST_RUN every scan interval
 * (bpf.ExchangeProbe.FlushIdle). It first sends what every CPU has staged,
 * then scans the flows. Needs CAP_BPF to load and run.
 *
 * The walk visits every bucket of the flow table, ~110 us for 16384, ten
 * times a second: a fifth of a quiet probe's CPU (docs/benchmarks.md). It
 * is skipped while the table is settled: a walk found no finished exchange
 * waiting for its idle time, and no packet has reached the TC programs
 * since (their STAT_PACKETS counter, which every packet increments before
 * it touches a flow, is unchanged). Only a packet can change a flow, so
 * such a walk would find nothing. A walk settles the table only when no
 * packet came since the previous scan either: a packet counted just before
 * this scan may still be updating its flow on another CPU while the walk
 * runs, but it finished long before the next scan, which walks again. */
SEC("syscall")
int flush_idle(struct flush_args *args)
{
	struct flush_ctx c = {
		.now = bpf_ktime_get_ns(),
		.idle_ns = args->idle_ns,
	};
	struct cpu_sweep sweep = {};
	struct scan_memory *mem = &scan_memory;
	int quiet;

	bpf_loop(MAX_CPUS, flush_cpu, &sweep, 0);
	args->staged = sweep.sent;
	args->now_ns = c.now;
	/* With the sampling gate closed, quiet is no sign of an exchange's
	 * end: its segments leave before they reach its flow. */
	if (args->staged_only || sampling_gate == GATE_CLOSED)
		return 0;
	quiet = sweep.packets == mem->prev_packets;
	mem->prev_packets = sweep.packets;
	if (mem->walk_quiet && mem->walk_waiting == 0 && sweep.packets == mem->walk_packets)
		return 0;
	bpf_for_each_map_elem(&flows, flush_one, &c, 0);
	args->walked = 1;
	args->scanned = c.scanned;
	args->flushed = c.flushed;
	/* Stored as they are and tested at the next scan: with a branch on
	 * c.waiting here, this kernel (6.18) refused to load the program
	 * (EFAULT from the verifier, though not with its log on). */
	mem->walk_quiet = quiet;
	mem->walk_waiting = c.waiting;
	mem->walk_packets = sweep.packets;
	return 0;
}
