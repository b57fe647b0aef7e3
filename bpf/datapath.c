// SPDX-License-Identifier: GPL-2.0
/* Dyad tc programs.
 *
 *   dy_from_container  tc ingress of a pod's host-side veth: packets leaving the pod.
 *                      Anti-spoofing, egress policy, delivery to a local pod or FIB
 *                      forwarding towards the node that hosts the destination.
 *   dy_to_container    tc egress of a pod's host-side veth: packets entering the pod,
 *                      whoever sent them (local pod via redirect, uplink via redirect, or
 *                      the node's own stack). Ingress policy.
 *   dy_from_netdev     tc ingress of the node's uplink: packets for a local pod are
 *                      redirected to its veth (and so through dy_to_container).
 *
 * IPv6 neighbour discovery, link-local and multicast traffic, ARP and non-IP frames always
 * go to the stack untouched. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/config.h"
#include "lib/conntrack.h"
#include "lib/events.h"
#include "lib/fwd.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"

static __always_inline int dy_trace_on(void)
{
	const struct dy_config *c = dy_config_get();

	return c && (c->flags & DY_CFG_F_TRACE);
}

/*
 * The start both pod programs share: parse, then let non-IP traffic (ARP) and control traffic
 * (neighbour discovery, link-local, multicast) pass, and drop what does not parse. Returns 1 when
 * the packet goes on to the endpoint and policy checks; otherwise *verdict is what to return.
 */
static __always_inline int dy_admit(struct __sk_buff *skb, struct dy_pkt *p, __u8 dir,
				     int *verdict)
{
	int rc = dy_parse(skb, p);

	if (rc == DY_PARSE_NOT_IP) {
		dy_count(DY_REASON_PASSED, dir, 0, skb->len);
		*verdict = TC_ACT_OK;
		return 0;
	}
	if (rc < 0) {
		*verdict = dy_drop(skb, p, DY_REASON_DROP_MALFORMED, dir, skb->ifindex, 0, 0);
		return 0;
	}
	if (p->control) {
		dy_count(DY_REASON_PASSED, dir, p->t.family, skb->len);
		*verdict = TC_ACT_OK;
		return 0;
	}
	return 1;
}

SEC("tc")
int dy_from_container(struct __sk_buff *skb)
{
	const __u8 dir = DY_DIR_EGRESS;
	struct dy_pkt p = {};
	int rc;

	if (!dy_admit(skb, &p, dir, &rc))
		return rc;

	struct dy_endpoint_info *src = dy_endpoint_lookup(p.t.family, p.t.saddr);
	if (!src || src->ifindex != skb->ifindex)
		return dy_drop(skb, &p, DY_REASON_DROP_UNKNOWN_SOURCE, dir, skb->ifindex, 0, 0);

	__u32 src_identity = src->identity;
	__u32 src_ep_id = src->endpoint_id;
	__u32 src_flags = src->flags;
	struct dy_ipcache_info *ic = dy_ipcache_lookup(p.t.family, p.t.daddr);
	struct dy_endpoint_info *dst = dy_endpoint_lookup(p.t.family, p.t.daddr);
	__u32 dst_identity = ic ? ic->identity : (dst ? dst->identity : DY_IDENTITY_WORLD);

	int ct = dy_ct_lookup(&p, dir);

	p.is_reply = ct == DY_CT_REPLY;
	if (ct == DY_CT_NEW) {
		if (src_flags & DY_EP_F_ENFORCE_EGRESS) {
			int reason = dy_policy_verdict(src_ep_id, dst_identity, dir, &p, p.t.daddr);
			if (reason)
				return dy_drop(skb, &p, reason, dir, skb->ifindex, src_identity,
					       dst_identity);
		}
		if (!p.is_icmp_error) {
			dy_ct_create(&p, dir, src_identity);
			if (dy_trace_on())
				dy_emit(DY_EVENT_TRACE, DY_REASON_POLICY_ALLOWED, dir, &p, skb->ifindex,
					src_identity, dst_identity);
		}
	}

	if (dst) {
		dy_count(DY_REASON_FORWARDED, dir, p.t.family, skb->len);
		return dy_deliver_local(skb, dst);
	}
	rc = dy_forward_fib(skb, &p, ic);
	if (rc < 0) {
		dy_count(DY_REASON_PASSED, dir, p.t.family, skb->len);
		return TC_ACT_OK;
	}
	if (rc == TC_ACT_SHOT)
		return dy_drop(skb, &p, DY_REASON_DROP_FIB, dir, skb->ifindex, src_identity, dst_identity);
	dy_count(DY_REASON_FORWARDED, dir, p.t.family, skb->len);
	return rc;
}

SEC("tc")
int dy_to_container(struct __sk_buff *skb)
{
	const __u8 dir = DY_DIR_INGRESS;
	struct dy_pkt p = {};
	int rc;

	if (!dy_admit(skb, &p, dir, &rc))
		return rc;

	struct dy_endpoint_info *ep = dy_endpoint_lookup(p.t.family, p.t.daddr);
	if (!ep) {
		/* not a pod we manage: the stack addressed it, leave it be */
		dy_count(DY_REASON_PASSED, dir, p.t.family, skb->len);
		return TC_ACT_OK;
	}
	__u32 ep_identity = ep->identity;
	__u32 ep_id = ep->endpoint_id;
	__u32 ep_flags = ep->flags;
	__u32 ep_ifindex = ep->ifindex;
	__u32 src_identity = dy_identity_of(p.t.family, p.t.saddr);

	int ct = dy_ct_lookup(&p, dir);

	p.is_reply = ct == DY_CT_REPLY;
	if (ct == DY_CT_NEW) {
		if (ep_flags & DY_EP_F_ENFORCE_INGRESS) {
			int reason = dy_policy_verdict(ep_id, src_identity, dir, &p, p.t.saddr);
			if (reason)
				return dy_drop(skb, &p, reason, dir, ep_ifindex, src_identity,
					       ep_identity);
		}
		if (!p.is_icmp_error) {
			dy_ct_create(&p, dir, src_identity);
			if (dy_trace_on())
				dy_emit(DY_EVENT_TRACE, DY_REASON_POLICY_ALLOWED, dir, &p, ep_ifindex,
					src_identity, ep_identity);
		}
	}
	dy_count(DY_REASON_FORWARDED, dir, p.t.family, skb->len);
	return TC_ACT_OK;
}

SEC("tc")
int dy_from_netdev(struct __sk_buff *skb)
{
	const __u8 dir = DY_DIR_NODE;
	struct dy_pkt p = {};
	int rc = dy_parse(skb, &p);

	if (rc != DY_PARSE_IP || p.control)
		return TC_ACT_OK;

	struct dy_endpoint_info *ep = dy_endpoint_lookup(p.t.family, p.t.daddr);
	if (!ep) {
		dy_count(DY_REASON_PASSED, dir, p.t.family, skb->len);
		return TC_ACT_OK;
	}
	dy_count(DY_REASON_FORWARDED, dir, p.t.family, skb->len);
	return dy_deliver_local(skb, ep);
}

char LICENSE[] SEC("license") = "GPL";
