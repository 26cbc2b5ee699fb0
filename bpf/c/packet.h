// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * packet.h: parsing a TC program's frame into a TCP segment, shared by the
 * programs that follow exchanges in the kernel (exchange.bpf.c) and those
 * that record segments for the probe's process (segments.bpf.c). Include
 * after vmlinux.h and the BPF helpers.
 */
#ifndef KUBECTL_MESH_PACKET_H
#define KUBECTL_MESH_PACKET_H

/* Macros from UAPI headers that vmlinux.h (BTF: types only) cannot carry. */
#define TC_ACT_UNSPEC (-1)
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF_OFFSET 0x3fff /* IPv4 more-fragments flag and fragment offset */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Header layouts read with load_bytes. Declared here, byte by byte,
 * instead of using vmlinux.h's bitfield structs so the parsing does not
 * depend on the host's bitfield order. */
struct vlan_head {
	__be16 tci;
	__be16 proto;
};

struct ipv4_head {
	__u8 version_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_head {
	__be32 version_class_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_head {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* data offset in the high nibble, in 32-bit words */
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

/* One parsed TCP segment, as seen on the wire. */
struct segment {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u32 seq;   /* host order */
	__u32 payload_off;
	__u32 payload_len;
	__u8 tcp_flags;
	__u8 family;
};
static __always_inline void ipv4_mapped(__u8 dst[16], __be32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(&dst[12], &addr, 4);
}

/* load_bytes copies n bytes at offset off of the packet into to: straight
 * from the packet when they lie in its linear part, where the stack keeps
 * the headers, and through bpf_skb_load_bytes otherwise (payload in page
 * fragments). A direct read costs no helper call: ~5% of the programs' time
 * per request on hot caches (BenchmarkProgramsPerRequest). n must be a
 * constant. */
static __always_inline long load_bytes(struct __sk_buff *skb, __u32 off, void *to, __u32 n)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	/* The verifier tracks a range check on a packet pointer with a
	 * variable offset only while offset plus size stays below 64 KiB:
	 * bound the offset well below that. */
	if (off < 0x4000) {
		void *at = data + off;

		if (at + n <= end) {
			__builtin_memcpy(to, at, n);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, n);
}

/* What parse made of a frame; each program counts the failures its own way. */
enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_TCP = 1,      /* not IPv4/IPv6 TCP, or not parseable */
	PARSE_IPV6_EXT_HDR = 2, /* IPv6 with extension headers: not walked */
	PARSE_IP_FRAGMENT = 3,  /* IPv4 fragment: not reassembled */
};

/* parse fills seg from an Ethernet frame carrying IPv4 or extension-free
 * IPv6 and TCP. */
static __always_inline enum parse_result parse(struct __sk_buff *skb, struct segment *seg)
{
	__u32 off = ETH_HLEN;
	__u32 l4_len;
	/* The stack has already read the EtherType (eth_type_trans) into
	 * skb->protocol: one helper call fewer per packet than loading the
	 * Ethernet header. */
	__u16 proto = (__u16)skb->protocol;

	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_head vlan;

		if (load_bytes(skb, off, &vlan, sizeof(vlan)) < 0)
			goto not_tcp;
		proto = vlan.proto;
		off += sizeof(vlan);
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct ipv4_head ip;
		__u32 ihl, tot_len;

		if (load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			goto not_tcp;
		if ((ip.version_ihl >> 4) != 4)
			goto not_tcp;
		ihl = (ip.version_ihl & 0x0f) * 4;
		if (ihl < sizeof(ip))
			goto not_tcp;
		if (ip.protocol != IPPROTO_TCP)
			goto not_tcp;
		if (ip.frag_off & bpf_htons(IP_MF_OFFSET)) {
			return PARSE_IP_FRAGMENT;
		}
		ipv4_mapped(seg->saddr, ip.saddr);
		ipv4_mapped(seg->daddr, ip.daddr);
		seg->family = 4;
		tot_len = bpf_ntohs(ip.tot_len);
		off += ihl;
		/* tot_len is 0 on BIG TCP GSO packets: use the skb length.
		 * Otherwise trust tot_len, which excludes Ethernet padding. */
		if (tot_len == 0) {
			if (skb->len < off)
				goto not_tcp;
			l4_len = skb->len - off;
		} else {
			if (tot_len < ihl)
				goto not_tcp;
			l4_len = tot_len - ihl;
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_head ip6;
		__u32 payload_len;

		if (load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			goto not_tcp;
		if (ip6.nexthdr != IPPROTO_TCP) {
			/* Hop-by-hop, routing, fragment, destination options,
			 * AH, ESP: a chain we do not walk. */
			switch (ip6.nexthdr) {
			case 0:
			case 43:
			case 44:
			case 50:
			case 51:
			case 60:
				return PARSE_IPV6_EXT_HDR;
			}
			goto not_tcp;
		}
		__builtin_memcpy(seg->saddr, ip6.saddr, 16);
		__builtin_memcpy(seg->daddr, ip6.daddr, 16);
		seg->family = 6;
		payload_len = bpf_ntohs(ip6.payload_len);
		off += sizeof(ip6);
		/* payload_len is 0 on BIG TCP (jumbogram) GSO packets. */
		if (payload_len == 0) {
			if (skb->len < off)
				goto not_tcp;
			l4_len = skb->len - off;
		} else {
			l4_len = payload_len;
		}
	} else {
		goto not_tcp;
	}

	struct tcp_head tcp;
	__u32 doff;

	if (load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
		goto not_tcp;
	/* The data offset covers TCP options (timestamps, SACK, ...). */
	doff = (tcp.doff_res >> 4) * 4;
	if (doff < sizeof(tcp) || doff > l4_len)
		goto not_tcp;
	seg->sport = bpf_ntohs(tcp.source);
	seg->dport = bpf_ntohs(tcp.dest);
	seg->seq = bpf_ntohl(tcp.seq);
	seg->tcp_flags = tcp.flags;
	seg->payload_off = off + doff;
	seg->payload_len = l4_len - doff;
	return PARSE_OK;

not_tcp:
	return PARSE_NOT_TCP;
}


#endif /* KUBECTL_MESH_PACKET_H */
