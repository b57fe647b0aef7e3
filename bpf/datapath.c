// SPDX-License-Identifier: GPL-2.0
/* Dyad tc programs.
 *
 *   dy_from_container  tc ingress of a pod's host-side veth: packets leaving the pod.
 *                      Anti-spoofing, egress policy, delivery to a local pod or FIB
 *                      forwarding towards the node that hosts the destination.
 *   dy_to_container    tc egress of a pod's host-side veth: packets entering the pod,
 *                      whoever sent them (local pod via redirect, uplink via redirect, or
 *                      the node's own stack). Ingress policy.
 *   dy_from_netdev     tc ingress of the node's uplink: NodePort translation (lib/lb.h),
 *                      then packets for a local pod are redirected to its veth (and so
 *                      through dy_to_container).
 *
 * ARP and other non-IP frames, IPv6 neighbour discovery and MLD go to the stack untouched;
 * every other packet (multicast and link-local included) meets the endpoint and policy checks. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/config.h"
#include "lib/conntrack.h"
#include "lib/events.h"
#include "lib/frag.h"
#include "lib/fwd.h"
#include "lib/lb.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"

static __always_inline int dy_trace_on(void)
{
	const struct dy_config *c = dy_config_get();

	return c && (c->flags & DY_CFG_F_TRACE);
}

/*
 * The start both pod programs share: parse, then let non-IP traffic (ARP) and link control
 * (IPv6 ND and MLD) pass, drop what does not parse, and give non-first fragments their flow's
 * ports. Returns 1 when the packet goes on to the endpoint and policy checks; otherwise *verdict
 * is what to return.
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
	dy_frag_track(p);
	return 1;
}

/*
 * Conntrack and policy for one pod direction. Returns 0 to let the packet on, else the drop
 * reason. A packet whose upper layer is unknown (opaque: an IPv6 extension chain longer than the
 * parser walks, a fragment of an unseen datagram) cannot be judged by port or tracked: an
 * enforcing endpoint drops it, any other lets it through untracked.
 */
static __always_inline int dy_judge(struct dy_pkt *p, __u8 dir, __u32 ep_id, int enforce,
				    __u32 ep_identity, __u32 peer_identity, __u32 ifindex)
{
	__u32 src_identity = dir == DY_DIR_EGRESS ? ep_identity : peer_identity;
	__u32 dst_identity = dir == DY_DIR_EGRESS ? peer_identity : ep_identity;

	if (p->opaque)
		return enforce ? p->opaque : 0;
	int ct = dy_ct_lookup(p, dir, ep_id);

	p->is_reply = ct == DY_CT_REPLY;
	if (ct != DY_CT_NEW)
		return 0;
	if (enforce) {
		const __u8 *peer_addr = dir == DY_DIR_EGRESS ? p->t.daddr : p->t.saddr;
		int reason = dy_policy_verdict(ep_id, peer_identity, dir, p, peer_addr);
		if (reason)
			return reason;
	}
	if (!p->is_icmp_error) {
		dy_ct_create(p, dir, ep_id, src_identity);
		if (dy_trace_on())
			dy_emit(DY_EVENT_TRACE, DY_REASON_POLICY_ALLOWED, dir, p, ifindex,
				src_identity, dst_identity);
	}
	return 0;
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

	/* Service translation first: everything below judges the backend */
	rc = dy_lb_from_container(skb, &p, src);
	if (rc != DY_LB_CONTINUE)
		return rc;

	__u32 src_identity = src->identity;
	__u32 src_ep_id = src->endpoint_id;
	__u32 src_flags = src->flags;
	struct dy_ipcache_info *ic = dy_ipcache_lookup(p.t.family, p.t.daddr);
	struct dy_endpoint_info *dst = dy_endpoint_lookup(p.t.family, p.t.daddr);
	__u32 dst_identity = ic ? ic->identity : (dst ? dst->identity : DY_IDENTITY_WORLD);

	int reason = dy_judge(&p, dir, src_ep_id, src_flags & DY_EP_F_ENFORCE_EGRESS, src_identity,
			      dst_identity, skb->ifindex);
	if (reason)
		return dy_drop(skb, &p, reason, dir, skb->ifindex, src_identity, dst_identity);
	/* a backend's reply to a NodePort client beyond the node leaves from node:NodePort */
	if (dy_lb_nodeport_reply(skb, &p) < 0)
		return dy_drop(skb, &p, DY_REASON_DROP_MALFORMED, dir, skb->ifindex, src_identity,
			       dst_identity);

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
		/* multicast, broadcast or link-local (not ND/MLD): no endpoint to judge it by */
		if (dy_addr_is_scoped(p.t.family, p.t.daddr))
			return dy_drop(skb, &p, DY_REASON_DROP_NO_ENDPOINT, dir, skb->ifindex,
				       dy_identity_of(p.t.family, p.t.saddr), 0);
		/* a unicast address that is no pod we manage: the stack addressed it, leave it be */
		dy_count(DY_REASON_PASSED, dir, p.t.family, skb->len);
		return TC_ACT_OK;
	}
	__u32 ep_identity = ep->identity;
	__u32 ep_id = ep->endpoint_id;
	__u32 ep_flags = ep->flags;
	__u32 ep_ifindex = ep->ifindex;
	__u32 src_identity = dy_identity_of(p.t.family, p.t.saddr);

	int reason = dy_judge(&p, dir, ep_id, ep_flags & DY_EP_F_ENFORCE_INGRESS, ep_identity,
			      src_identity, ep_ifindex);
	if (reason)
		return dy_drop(skb, &p, reason, dir, ep_ifindex, src_identity, ep_identity);
	/* a backend's reply (or an ICMP error about the pod's packet to it) shows the Service
	 * address the pod connected to */
	if (dy_lb_to_container(skb, &p) < 0 || dy_lb_icmp_error_to_container(skb, &p) < 0)
		return dy_drop(skb, &p, DY_REASON_DROP_MALFORMED, dir, ep_ifindex, src_identity,
			       ep_identity);
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
		/* to the node: NodePort, or a reply to one of its SNAT ports */
		rc = dy_lb_from_netdev(skb, &p);
		if (rc != DY_LB_CONTINUE && rc != DY_LB_TO_LOCAL)
			return rc;
		if (rc == DY_LB_TO_LOCAL)
			ep = dy_endpoint_lookup(p.t.family, p.t.daddr);
		if (!ep) {
			dy_count(DY_REASON_PASSED, dir, p.t.family, skb->len);
			return TC_ACT_OK;
		}
	}
	dy_count(DY_REASON_FORWARDED, dir, p.t.family, skb->len);
	return dy_deliver_local(skb, ep);
}

char LICENSE[] SEC("license") = "GPL";
