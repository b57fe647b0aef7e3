/* Delivery to a local pod and forwarding to other nodes. */
#ifndef DYAD_LIB_FWD_H
#define DYAD_LIB_FWD_H

#include <linux/pkt_cls.h>
#include <stddef.h>

#include "maps.h"
#include "parse.h"

#define DY_AF_INET 2
#define DY_AF_INET6 10

static __always_inline int dy_set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	__u8 macs[12];

	__builtin_memcpy(macs, dst, 6);
	__builtin_memcpy(macs + 6, src, 6);
	return bpf_skb_store_bytes(skb, 0, macs, 12, 0);
}

/* Redirect to the egress of the pod's host-side veth, so to-container (attached there) judges
 * ingress policy for local and remote senders alike. */
static __always_inline int dy_deliver_local(struct __sk_buff *skb, const struct dy_endpoint_info *ep)
{
	if (dy_set_macs(skb, ep->mac, ep->node_mac) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(ep->ifindex, 0);
}

static __always_inline int dy_dec_ttl(struct __sk_buff *skb, const struct dy_pkt *p)
{
	__u8 ttl = p->ttl - 1;

	if (p->t.family == DY_FAMILY_V4) {
		__be16 old = bpf_htons(((__u16)p->ttl << 8) | p->t.proto);
		__be16 new = bpf_htons(((__u16)ttl << 8) | p->t.proto);

		if (bpf_l3_csum_replace(skb, DY_L3_OFF + offsetof(struct iphdr, check), old, new, 2) < 0)
			return -1;
		return bpf_skb_store_bytes(skb, DY_L3_OFF + offsetof(struct iphdr, ttl), &ttl, 1, 0);
	}
	return bpf_skb_store_bytes(skb, DY_L3_OFF + offsetof(struct ipv6hdr, hop_limit), &ttl, 1, 0);
}

/* Routes towards the hosting node from the ipcache (same family only) or, lacking one, the
 * destination itself. Returns a TC verdict, or -1 when the stack should take the packet
 * (local address, no route, TTL about to expire). */
static __always_inline int dy_forward_fib(struct __sk_buff *skb, const struct dy_pkt *p,
					  const struct dy_ipcache_info *ic)
{
	struct bpf_fib_lookup fib = {};
	const __u8 *via = p->t.daddr;
	long rc;

	if (ic && ic->node_family == p->t.family)
		via = ic->node_addr;
	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = p->t.proto;
	if (p->t.family == DY_FAMILY_V4) {
		fib.family = DY_AF_INET;
		__builtin_memcpy(&fib.ipv4_src, p->t.saddr, 4);
		__builtin_memcpy(&fib.ipv4_dst, via, 4);
	} else {
		fib.family = DY_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, p->t.saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, via, 16);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	if (p->ttl <= 1)
		return -1;
	if (dy_dec_ttl(skb, p) < 0)
		return TC_ACT_SHOT;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (dy_set_macs(skb, fib.dmac, fib.smac) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect(fib.ifindex, 0);
	}
	struct bpf_redir_neigh nh = {};
	nh.nh_family = fib.family;
	if (fib.family == DY_AF_INET)
		nh.ipv4_nh = fib.ipv4_dst;
	else
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

#endif
