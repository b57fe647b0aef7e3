/* Packet parsing for both families into one tuple shape. Headers are copied with
 * bpf_skb_load_bytes so non-linear skbs and variable IPv6 extension chains need no
 * direct-access bounds juggling. */
#ifndef DYAD_LIB_PARSE_H
#define DYAD_LIB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dyad/common.h"
#include "dyad/map_frags.h"

#define DY_L3_OFF ETH_HLEN

#define DY_IPV6_EXT_MAX 4

#define DY_ICMP_ECHOREPLY 0
#define DY_ICMP_DEST_UNREACH 3
#define DY_ICMP_SOURCE_QUENCH 4
#define DY_ICMP_REDIRECT 5
#define DY_ICMP_ECHO 8
#define DY_ICMP_TIME_EXCEEDED 11
#define DY_ICMP_PARAMETERPROB 12

#define DY_ICMP6_DEST_UNREACH 1
#define DY_ICMP6_PKT_TOOBIG 2
#define DY_ICMP6_TIME_EXCEED 3
#define DY_ICMP6_PARAMPROB 4
#define DY_ICMP6_ECHO_REQUEST 128
#define DY_ICMP6_ECHO_REPLY 129
#define DY_ICMP6_ND_FIRST 133 /* router solicitation .. redirect (137) */
#define DY_ICMP6_ND_LAST 137
#define DY_ICMP6_MLD_QUERY 130
#define DY_ICMP6_MLD_REPORT 131
#define DY_ICMP6_MLD_DONE 132
#define DY_ICMP6_MLD2_REPORT 143

#define DY_IP_MF 0x2000
#define DY_IP_OFFSET 0x1fff
#define DY_IP6_OFFSET 0xfff8
#define DY_IP6_MF 0x0001

#define DY_TCP_FIN 0x01
#define DY_TCP_SYN 0x02
#define DY_TCP_RST 0x04

struct dy_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

enum {
	DY_FRAG_NONE = 0,
	DY_FRAG_FIRST = 1,
	DY_FRAG_LATER = 2,
};

struct dy_pkt {
	struct dy_tuple t;
	struct dy_tuple inner; /* the offending packet, when is_icmp_error */
	struct dy_frag_key frag_key; /* when frag != DY_FRAG_NONE */
	__be16 policy_port;    /* dport for TCP/UDP/SCTP, ICMP type for ICMP */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 is_icmp_error;
	__u8 control;          /* IPv6 ND or MLD on the link: never subject to policy */
	__u8 ttl;
	__u8 frag;             /* DY_FRAG_* */
	__u8 opaque;           /* upper layer unknown: the DY_REASON_DROP_* an enforcing endpoint uses */
	__u8 is_reply;         /* set by the program once conntrack says DY_CT_REPLY */
	__u8 pad[2];
	__u32 len;
};

enum {
	DY_PARSE_IP = 0,
	DY_PARSE_NOT_IP = 1,
	DY_PARSE_BAD = -1,
};

static __always_inline int dy_is_icmp_proto(__u8 proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* Reads the L4 identifiers at off. For ICMP echo the identifier goes into sport of a request
 * and dport of a reply, so a reply is exactly the reversed tuple of its request. */
static __always_inline int dy_parse_l4(struct __sk_buff *skb, __u32 off, struct dy_tuple *t,
				       __u8 *icmp_type, __u8 *tcp_flags)
{
	__u8 hdr[14] = {};

	switch (t->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, off, hdr, 14) < 0)
			return -1;
		__builtin_memcpy(&t->sport, &hdr[0], 2);
		__builtin_memcpy(&t->dport, &hdr[2], 2);
		if (tcp_flags)
			*tcp_flags = hdr[13];
		return 0;
	case IPPROTO_UDP:
	case IPPROTO_SCTP: /* source and destination port lead the common header, as in UDP */
		if (bpf_skb_load_bytes(skb, off, hdr, 4) < 0)
			return -1;
		__builtin_memcpy(&t->sport, &hdr[0], 2);
		__builtin_memcpy(&t->dport, &hdr[2], 2);
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__be16 id;
		__u8 type;

		if (bpf_skb_load_bytes(skb, off, hdr, 8) < 0)
			return -1;
		type = hdr[0];
		__builtin_memcpy(&id, &hdr[4], 2);
		if (icmp_type)
			*icmp_type = type;
		if ((t->proto == IPPROTO_ICMP && type == DY_ICMP_ECHO) ||
		    (t->proto == IPPROTO_ICMPV6 && type == DY_ICMP6_ECHO_REQUEST)) {
			t->sport = id;
			t->dport = 0;
		} else if ((t->proto == IPPROTO_ICMP && type == DY_ICMP_ECHOREPLY) ||
			   (t->proto == IPPROTO_ICMPV6 && type == DY_ICMP6_ECHO_REPLY)) {
			t->sport = 0;
			t->dport = id;
		}
		return 0;
	}
	default:
		return 0;
	}
}

static __always_inline int dy_icmp_is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == DY_ICMP_DEST_UNREACH || type == DY_ICMP_SOURCE_QUENCH ||
		       type == DY_ICMP_REDIRECT || type == DY_ICMP_TIME_EXCEEDED ||
		       type == DY_ICMP_PARAMETERPROB;
	return type >= DY_ICMP6_DEST_UNREACH && type <= DY_ICMP6_PARAMPROB;
}

/* The inner header of an ICMP error: the first bytes of a packet this host's peer sent. */
static __always_inline int dy_parse_inner(struct __sk_buff *skb, __u32 off, struct dy_pkt *p)
{
	struct dy_tuple *in = &p->inner;

	in->family = p->t.family;
	if (p->t.family == DY_FAMILY_V4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return -1;
		if (ip.ihl < 5)
			return -1;
		__builtin_memcpy(in->saddr, &ip.saddr, 4);
		__builtin_memcpy(in->daddr, &ip.daddr, 4);
		in->proto = ip.protocol;
		return dy_parse_l4(skb, off + ip.ihl * 4, in, 0, 0);
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return -1;
		__builtin_memcpy(in->saddr, &ip6.saddr, 16);
		__builtin_memcpy(in->daddr, &ip6.daddr, 16);
		in->proto = ip6.nexthdr;
		return dy_parse_l4(skb, off + sizeof(ip6), in, 0, 0);
	}
}

/* Destinations no pod address can be: multicast, broadcast, link-local, unspecified. Traffic to
 * them into a pod has no endpoint to judge it by. */
static __always_inline int dy_addr_is_scoped(__u8 family, const __u8 *a)
{
	if (family == DY_FAMILY_V4)
		return (a[0] & 0xf0) == 0xe0 || (a[0] == 169 && a[1] == 254) ||
		       (a[0] == 0xff && a[1] == 0xff && a[2] == 0xff && a[3] == 0xff) ||
		       (a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0);
	if (a[0] == 0xff)
		return 1;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1;
	__u64 hi, lo;
	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return hi == 0 && lo == 0;
}

static __always_inline int dy_v6_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH;
}

/* The only traffic exempt from endpoint and policy checks: what a pod's IPv6 stack needs on its
 * link. Neighbour discovery (RFC 4861: hop limit 255 proves it was not routed) and MLD (RFC
 * 2710/3810: hop limit 1, link-local or unspecified source). Everything else, multicast and
 * link-local included, is judged like any packet. */
static __always_inline int dy_is_link_control(const struct dy_pkt *p)
{
	__u8 type = p->icmp_type;

	if (p->t.family != DY_FAMILY_V6 || p->t.proto != IPPROTO_ICMPV6)
		return 0;
	if (type >= DY_ICMP6_ND_FIRST && type <= DY_ICMP6_ND_LAST)
		return p->ttl == 255;
	if (type == DY_ICMP6_MLD_QUERY || type == DY_ICMP6_MLD_REPORT || type == DY_ICMP6_MLD_DONE ||
	    type == DY_ICMP6_MLD2_REPORT) {
		const __u8 *s = p->t.saddr;
		return p->ttl == 1 && (dy_addr_is_scoped(DY_FAMILY_V6, s) && s[0] != 0xff);
	}
	return 0;
}

static __always_inline void dy_frag_key_of(struct dy_pkt *p, __u32 id, __u8 proto)
{
	struct dy_frag_key *k = &p->frag_key;

	__builtin_memcpy(k->saddr, p->t.saddr, 16);
	__builtin_memcpy(k->daddr, p->t.daddr, 16);
	k->id = id;
	k->proto = proto;
	k->family = p->t.family;
}

static __always_inline int dy_parse(struct __sk_buff *skb, struct dy_pkt *p)
{
	__u32 l4_off;

	p->len = skb->len;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		__u16 fo;

		if (bpf_skb_load_bytes(skb, DY_L3_OFF, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return DY_PARSE_BAD;
		p->t.family = DY_FAMILY_V4;
		__builtin_memcpy(p->t.saddr, &ip.saddr, 4);
		__builtin_memcpy(p->t.daddr, &ip.daddr, 4);
		p->t.proto = ip.protocol;
		p->ttl = ip.ttl;
		fo = bpf_ntohs(ip.frag_off);
		if (fo & (DY_IP_MF | DY_IP_OFFSET)) {
			p->frag = (fo & DY_IP_OFFSET) ? DY_FRAG_LATER : DY_FRAG_FIRST;
			dy_frag_key_of(p, ip.id, ip.protocol);
			/* non-first fragments carry no L4 header: frag.h supplies the flow's */
			if (p->frag == DY_FRAG_LATER)
				return DY_PARSE_IP;
		}
		l4_off = DY_L3_OFF + ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u8 nh;

		if (bpf_skb_load_bytes(skb, DY_L3_OFF, &ip6, sizeof(ip6)) < 0)
			return DY_PARSE_BAD;
		p->t.family = DY_FAMILY_V6;
		__builtin_memcpy(p->t.saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->t.daddr, &ip6.daddr, 16);
		p->ttl = ip6.hop_limit;
		nh = ip6.nexthdr;
		l4_off = DY_L3_OFF + sizeof(ip6);
#pragma unroll
		for (int i = 0; i < DY_IPV6_EXT_MAX; i++) {
			__u8 ext[4];

			if (!dy_v6_is_ext(nh))
				break;
			if (bpf_skb_load_bytes(skb, l4_off, ext, 4) < 0)
				return DY_PARSE_BAD;
			if (nh == IPPROTO_FRAGMENT) {
				__u16 fo = (ext[2] << 8) | ext[3];
				__u32 id;

				if (bpf_skb_load_bytes(skb, l4_off + 4, &id, 4) < 0)
					return DY_PARSE_BAD;
				nh = ext[0];
				l4_off += 8;
				/* offset or more-fragments set; an atomic fragment is a whole packet */
				if (fo & (DY_IP6_OFFSET | DY_IP6_MF)) {
					p->frag = (fo & DY_IP6_OFFSET) ? DY_FRAG_LATER : DY_FRAG_FIRST;
					dy_frag_key_of(p, id, nh);
					if (p->frag == DY_FRAG_LATER) {
						p->t.proto = nh;
						return DY_PARSE_IP;
					}
				}
			} else if (nh == IPPROTO_AH) {
				nh = ext[0];
				l4_off += (ext[1] + 2) * 4;
			} else {
				nh = ext[0];
				l4_off += (ext[1] + 1) * 8;
			}
		}
		p->t.proto = nh;
		/* longer chains are not walked: the upper layer is unknown, so the packet is
		 * opaque and an enforcing endpoint drops it rather than judge it port-less */
		if (dy_v6_is_ext(nh)) {
			p->opaque = DY_REASON_DROP_IPV6_EXT;
			return DY_PARSE_IP;
		}
	} else {
		return DY_PARSE_NOT_IP;
	}

	if (dy_parse_l4(skb, l4_off, &p->t, &p->icmp_type, &p->tcp_flags) < 0)
		return DY_PARSE_BAD;

	if (dy_is_icmp_proto(p->t.proto)) {
		p->policy_port = bpf_htons(p->icmp_type);
		p->control = dy_is_link_control(p);
		if (dy_icmp_is_error(p->t.proto, p->icmp_type)) {
			p->is_icmp_error = 1;
			if (dy_parse_inner(skb, l4_off + 8, p) < 0)
				p->is_icmp_error = 0; /* truncated: judge it as a plain ICMP message */
		}
	} else {
		p->policy_port = p->t.dport;
	}
	return DY_PARSE_IP;
}

#endif
