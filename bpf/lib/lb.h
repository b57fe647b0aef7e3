/* Service load balancing at the tc layer, both families (ClusterIP and NodePort).
 *
 * from-container translates a pod's packet to a cluster IP (DNAT) before anything else judges
 * it, so conntrack, policy and forwarding all see the backend: a connection keeps the backend it
 * was given (dy_lb_flows), a new one takes its client's affine backend or the frontend's Maglev
 * slot for the flow's hash. A reverse entry keyed by the reply's tuple (dy_lb_rnat) lets
 * to-container show the pod the cluster IP again, after conntrack and policy. A frontend without
 * a ready backend refuses at once with ICMP/ICMPv6 port unreachable (the client's connect() or
 * send fails with ECONNREFUSED). A pod that a Service sends back to itself (hairpin) sees the
 * cluster IP as its peer: both ends are rewritten and the packet goes straight back into the pod
 * (a pod cannot block itself, so no policy applies, as in Kubernetes).
 *
 * Not balanced: IPv6 packets with extension headers, IP fragments, SCTP. ICMP errors about a
 * translated flow are translated back (below) for cluster IPs and NodePorts alike.
 */
#ifndef DYAD_LIB_LB_H
#define DYAD_LIB_LB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dyad/common.h"
#include "dyad/map_endpoints.h"
#include "dyad/map_lb.h"
#include "events.h"
#include "fwd.h"
#include "maps.h"
#include "parse.h"
#include "policy.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct dy_lb_service_key);
	__type(value, struct dy_lb_service);
	__uint(max_entries, DY_LB_SERVICES_MAX);
} dy_lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct dy_lb_maglev);
	__uint(max_entries, DY_LB_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dy_lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct dy_lb_backend);
	__uint(max_entries, DY_LB_BACKENDS_MAX);
} dy_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct dy_lb_flow_key);
	__type(value, struct dy_lb_flow);
	__uint(max_entries, DY_LB_FLOWS_MAX);
} dy_lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct dy_lb_flow_key);
	__type(value, struct dy_lb_rnat);
	__uint(max_entries, DY_LB_FLOWS_MAX);
} dy_lb_rnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct dy_lb_affinity_key);
	__type(value, struct dy_lb_affinity);
	__uint(max_entries, DY_LB_AFFINITY_MAX);
} dy_lb_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct dy_lb_flow_key);
	__type(value, struct dy_lb_snat);
	__uint(max_entries, DY_LB_FLOWS_MAX);
} dy_lb_snat SEC(".maps");

/* from-container goes on with the (possibly translated) packet */
#define DY_LB_CONTINUE -1
/* from-netdev: translated to a backend on this node, deliver it */
#define DY_LB_TO_LOCAL -2

#define DY_LB_TCP_S 21600
#define DY_LB_TCP_CLOSE_S 10
#define DY_LB_UDP_S 60
#define DY_TCP_ACK 0x10

static __always_inline __u32 dy_lb_mix(__u32 h, __u32 w)
{
	h ^= w;
	h *= 0x01000193;
	return h ^ (h >> 15);
}

/* The flow's hash: picks its Maglev slot, so a flow lands on the same backend on every node. */
static __always_inline __u32 dy_lb_hash(const struct dy_tuple *t)
{
	__u32 h = 0x9e3779b9 ^ t->proto;
	__u32 w;

#pragma unroll
	for (int i = 0; i < 16; i += 4) {
		__builtin_memcpy(&w, t->saddr + i, 4);
		h = dy_lb_mix(h, w);
		__builtin_memcpy(&w, t->daddr + i, 4);
		h = dy_lb_mix(h, w);
	}
	h = dy_lb_mix(h, ((__u32)t->sport << 16) | t->dport);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	return h ^ (h >> 16);
}

static __always_inline void dy_lb_key_of(struct dy_lb_flow_key *k, const struct dy_tuple *t)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->family = t->family;
}

static __always_inline __u64 dy_lb_timeout_ns(const struct dy_pkt *p)
{
	__u32 s = DY_LB_UDP_S;

	if (p->t.proto == IPPROTO_TCP)
		s = (p->tcp_flags & (DY_TCP_FIN | DY_TCP_RST)) ? DY_LB_TCP_CLOSE_S : DY_LB_TCP_S;
	return (__u64)s * 1000000000ULL;
}

/* Offset of the TCP/UDP header; -1 when it is not right after the IP header (IPv6 extension
 * headers), which the balancer leaves alone. */
static __always_inline int dy_lb_l4_off(struct __sk_buff *skb, const struct dy_pkt *p, __u32 *off)
{
	__u8 b;

	if (p->t.family == DY_FAMILY_V4) {
		if (bpf_skb_load_bytes(skb, DY_L3_OFF, &b, 1) < 0)
			return -1;
		*off = DY_L3_OFF + (b & 0x0f) * 4;
		return 0;
	}
	if (bpf_skb_load_bytes(skb, DY_L3_OFF + offsetof(struct ipv6hdr, nexthdr), &b, 1) < 0)
		return -1;
	if (b != p->t.proto)
		return -1;
	*off = DY_L3_OFF + sizeof(struct ipv6hdr);
	return 0;
}

/* Rewrites the source (is_src) or destination address and port of a TCP/UDP packet and fixes
 * the IPv4 header and L4 checksums (pseudo-header included). */
static __always_inline int dy_lb_rewrite(struct __sk_buff *skb, __u8 family, __u8 proto,
					 __u32 l4_off, int is_src, const __u8 *old_addr,
					 const __u8 *new_addr, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = l4_off + (proto == IPPROTO_TCP ? 16 : 6);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (family == DY_FAMILY_V4) {
		__be32 o, n;

		__builtin_memcpy(&o, old_addr, 4);
		__builtin_memcpy(&n, new_addr, 4);
		if (o != n) {
			if (bpf_l4_csum_replace(skb, csum_off, o, n, BPF_F_PSEUDO_HDR | mangled | 4) < 0)
				return -1;
			if (bpf_l3_csum_replace(skb, DY_L3_OFF + offsetof(struct iphdr, check), o, n, 4) < 0)
				return -1;
			if (bpf_skb_store_bytes(skb,
						DY_L3_OFF + (is_src ? offsetof(struct iphdr, saddr)
								    : offsetof(struct iphdr, daddr)),
						&n, 4, 0) < 0)
				return -1;
		}
	} else {
		__be32 o[4], n[4];

		__builtin_memcpy(o, old_addr, 16);
		__builtin_memcpy(n, new_addr, 16);
		__s64 d = bpf_csum_diff(o, 16, n, 16, 0);

		if (d < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, csum_off, 0, (__u32)d, BPF_F_PSEUDO_HDR | mangled) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb,
					DY_L3_OFF + (is_src ? offsetof(struct ipv6hdr, saddr)
							    : offsetof(struct ipv6hdr, daddr)),
					n, 16, 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, l4_off + (is_src ? 0 : 2), &new_port, 2, 0) < 0)
			return -1;
	}
	return 0;
}

static __always_inline __u16 dy_csum_fold(__u32 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

struct dy_lb_icmp4 {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 unused;
	__u8 orig[28]; /* the offending IP header and the first 8 bytes after it */
};

struct dy_lb_icmp6 {
	struct ipv6hdr ip;
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 unused;
	__u8 orig[48];
};

/* Turns the packet into an ICMP port unreachable from the cluster IP back to its sender. */
static __always_inline int dy_lb_icmp4_unreach(struct __sk_buff *skb, const struct dy_pkt *p)
{
	struct dy_lb_icmp4 b = {};

	if (bpf_skb_load_bytes(skb, DY_L3_OFF, b.orig, sizeof(b.orig)) < 0)
		return -1;
	b.ip.version = 4;
	b.ip.ihl = 5;
	b.ip.tot_len = bpf_htons(sizeof(b));
	b.ip.ttl = 64;
	b.ip.protocol = IPPROTO_ICMP;
	__builtin_memcpy(&b.ip.saddr, p->t.daddr, 4);
	__builtin_memcpy(&b.ip.daddr, p->t.saddr, 4);
	b.type = DY_ICMP_DEST_UNREACH;
	b.code = 3; /* port unreachable */
	__s64 c = bpf_csum_diff(0, 0, (__be32 *)&b.type, sizeof(b) - sizeof(b.ip), 0);
	if (c < 0)
		return -1;
	b.csum = dy_csum_fold((__u32)c);
	c = bpf_csum_diff(0, 0, (__be32 *)&b.ip, sizeof(b.ip), 0);
	if (c < 0)
		return -1;
	b.ip.check = dy_csum_fold((__u32)c);
	if (bpf_skb_change_tail(skb, DY_L3_OFF + sizeof(b), 0) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, DY_L3_OFF, &b, sizeof(b), 0);
}

static __always_inline int dy_lb_icmp6_unreach(struct __sk_buff *skb, const struct dy_pkt *p)
{
	struct dy_lb_icmp6 b = {};
	__be32 tail[2];

	if (bpf_skb_load_bytes(skb, DY_L3_OFF, b.orig, sizeof(b.orig)) < 0)
		return -1;
	b.ip.version = 6;
	b.ip.payload_len = bpf_htons(sizeof(b) - sizeof(b.ip));
	b.ip.nexthdr = IPPROTO_ICMPV6;
	b.ip.hop_limit = 64;
	__builtin_memcpy(&b.ip.saddr, p->t.daddr, 16);
	__builtin_memcpy(&b.ip.daddr, p->t.saddr, 16);
	b.type = DY_ICMP6_DEST_UNREACH;
	b.code = 4; /* port unreachable */
	/* pseudo-header: addresses, upper-layer length, next header */
	tail[0] = bpf_htonl(sizeof(b) - sizeof(b.ip));
	tail[1] = bpf_htonl(IPPROTO_ICMPV6);
	__s64 c = bpf_csum_diff(0, 0, (__be32 *)&b.ip.saddr, 32, 0);
	if (c < 0)
		return -1;
	c = bpf_csum_diff(0, 0, tail, sizeof(tail), (__u32)c);
	if (c < 0)
		return -1;
	c = bpf_csum_diff(0, 0, (__be32 *)&b.type, sizeof(b) - sizeof(b.ip), (__u32)c);
	if (c < 0)
		return -1;
	b.csum = dy_csum_fold((__u32)c);
	if (bpf_skb_change_tail(skb, DY_L3_OFF + sizeof(b), 0) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, DY_L3_OFF, &b, sizeof(b), 0);
}

/* Back into the pod it came from, skipping to-container: the answer is the datapath's own. */
static __always_inline int dy_lb_bounce(struct __sk_buff *skb, const __u8 *pod_mac,
					const __u8 *host_mac)
{
	__u8 macs[12];

	__builtin_memcpy(macs, pod_mac, 6);
	__builtin_memcpy(macs + 6, host_mac, 6);
	if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(skb->ifindex, 0);
}

static __always_inline int dy_lb_refuse(struct __sk_buff *skb, const struct dy_pkt *p,
					const __u8 *pod_mac, const __u8 *host_mac)
{
	int rc;

	dy_count(DY_REASON_LB_NO_BACKEND, DY_DIR_EGRESS, p->t.family, skb->len);
	if (p->t.family == DY_FAMILY_V4)
		rc = dy_lb_icmp4_unreach(skb, p);
	else
		rc = dy_lb_icmp6_unreach(skb, p);
	if (rc < 0)
		return TC_ACT_SHOT;
	return dy_lb_bounce(skb, pod_mac, host_mac);
}

static __always_inline struct dy_lb_backend *dy_lb_usable(__u32 id, int new_conn)
{
	struct dy_lb_backend *be;

	if (!id)
		return 0;
	be = bpf_map_lookup_elem(&dy_lb_backends, &id);
	if (be && new_conn && (be->flags & DY_LB_BE_F_TERMINATING))
		return 0;
	return be;
}

/* The backend for a packet to a frontend: the connection's own, else the client's affine one,
 * else the Maglev slot of the flow's hash. Returns its id, 0 when there is none. */
static __always_inline __u32 dy_lb_select(const struct dy_pkt *p, struct dy_lb_flow_key *fk,
					  __u32 svc_id, __u32 svc_flags, __u32 affinity_s,
					  __u64 now)
{
	int syn = p->t.proto == IPPROTO_TCP && (p->tcp_flags & DY_TCP_SYN) &&
		  !(p->tcp_flags & DY_TCP_ACK);
	struct dy_lb_flow *fl = bpf_map_lookup_elem(&dy_lb_flows, fk);
	__u32 id;

	if (fl && fl->expires_ns >= now && fl->service_id == svc_id) {
		id = fl->backend_id;
		/* a SYN on a known tuple is a new connection: not to a terminating backend */
		if (dy_lb_usable(id, syn)) {
			fl->expires_ns = now + dy_lb_timeout_ns(p);
			return id;
		}
	}

	struct dy_lb_affinity_key ak = { .service_id = svc_id, .family = p->t.family };
	struct dy_lb_affinity *af = 0;

	id = 0;
	if (svc_flags & DY_LB_SVC_F_AFFINITY) {
		__builtin_memcpy(ak.client, p->t.saddr, 16);
		af = bpf_map_lookup_elem(&dy_lb_affinity, &ak);
		if (af && now - af->last_ns <= (__u64)affinity_s * 1000000000ULL &&
		    dy_lb_usable(af->backend_id, 1))
			id = af->backend_id;
	}
	if (!id) {
		struct dy_lb_maglev *m = bpf_map_lookup_elem(&dy_lb_maglev, &svc_id);
		__u32 slot = dy_lb_hash(&p->t) % DY_LB_MAGLEV_M;

		/* keep the bound check the compiler would drop: the verifier needs it */
		asm volatile("" : "+r"(slot));
		if (!m || slot >= DY_LB_MAGLEV_M)
			return 0;
		id = m->backend[slot];
		if (!dy_lb_usable(id, 1))
			return 0;
	}
	if (svc_flags & DY_LB_SVC_F_AFFINITY) {
		struct dy_lb_affinity a = { .last_ns = now, .backend_id = id };

		bpf_map_update_elem(&dy_lb_affinity, &ak, &a, BPF_ANY);
	}
	struct dy_lb_flow nf = {
		.expires_ns = now + dy_lb_timeout_ns(p),
		.backend_id = id,
		.service_id = svc_id,
	};
	bpf_map_update_elem(&dy_lb_flows, fk, &nf, BPF_ANY);
	return id;
}

/*
 * from-container, after anti-spoofing. Returns DY_LB_CONTINUE with p translated to the backend
 * (or untouched when the packet is not for a frontend), else a verdict: the packet was refused
 * or is a hairpin one, already on its way back into the pod.
 */
static __always_inline int dy_lb_from_container(struct __sk_buff *skb, struct dy_pkt *p,
						const struct dy_endpoint_info *src)
{
	struct dy_lb_flow_key fk = {};
	__u8 pod_mac[6], host_mac[6];
	__u8 vip[16], baddr[16];
	__be16 vport, bport;
	__u32 l4_off;
	__u64 now;

	if ((p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP) || p->control)
		return DY_LB_CONTINUE;
	__builtin_memcpy(pod_mac, src->mac, 6);
	__builtin_memcpy(host_mac, src->node_mac, 6);
	dy_lb_key_of(&fk, &p->t);
	now = bpf_ktime_get_ns();

	/* a pod answering itself through a Service: it sees the cluster IP answer */
	struct dy_lb_rnat *rn = bpf_map_lookup_elem(&dy_lb_rnat, &fk);
	if (rn && (rn->flags & DY_LB_RNAT_F_HAIRPIN) && rn->expires_ns >= now) {
		__builtin_memcpy(vip, rn->addr, 16);
		vport = rn->port;
		if (dy_lb_l4_off(skb, p, &l4_off) < 0 ||
		    dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, p->t.saddr, vip,
				  p->t.sport, vport) < 0 ||
		    dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 0, p->t.daddr, p->t.saddr,
				  p->t.dport, p->t.dport) < 0)
			return TC_ACT_SHOT;
		return dy_lb_bounce(skb, pod_mac, host_mac);
	}

	struct dy_lb_service_key sk = {};
	__builtin_memcpy(sk.addr, p->t.daddr, 16);
	sk.port = p->t.dport;
	sk.proto = p->t.proto;
	sk.family = p->t.family;
	struct dy_lb_service *svc = bpf_map_lookup_elem(&dy_lb_services, &sk);
	if (!svc)
		return DY_LB_CONTINUE;
	if (dy_lb_l4_off(skb, p, &l4_off) < 0)
		return DY_LB_CONTINUE;
	__u32 svc_id = svc->id;
	__u32 svc_flags = svc->flags;
	__u32 affinity_s = svc->affinity_timeout_s;

	__u32 be_id = dy_lb_select(p, &fk, svc_id, svc_flags, affinity_s, now);
	struct dy_lb_backend *be = be_id ? bpf_map_lookup_elem(&dy_lb_backends, &be_id) : 0;
	if (!be || be->family != p->t.family)
		return dy_lb_refuse(skb, p, pod_mac, host_mac);
	__builtin_memcpy(baddr, be->addr, 16);
	bport = be->port;
	__builtin_memcpy(vip, p->t.daddr, 16);
	vport = p->t.dport;

	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, baddr, 8);
	__builtin_memcpy(&a1, baddr + 8, 8);
	__builtin_memcpy(&b0, p->t.saddr, 8);
	__builtin_memcpy(&b1, p->t.saddr + 8, 8);
	int hairpin = a0 == b0 && a1 == b1;

	/* the reply's tuple as it will arrive -> the frontend the client connected to */
	struct dy_lb_flow_key rk = {};
	struct dy_lb_rnat rv = { .expires_ns = now + dy_lb_timeout_ns(p), .port = vport };
	__builtin_memcpy(rv.addr, vip, 16);
	rv.flags = hairpin ? DY_LB_RNAT_F_HAIRPIN : 0;
	rv.family = p->t.family;
	__builtin_memcpy(rk.saddr, baddr, 16);
	__builtin_memcpy(rk.daddr, hairpin ? vip : p->t.saddr, 16);
	rk.sport = bport;
	rk.dport = p->t.sport;
	rk.proto = p->t.proto;
	rk.family = p->t.family;
	bpf_map_update_elem(&dy_lb_rnat, &rk, &rv, BPF_ANY);

	if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 0, vip, baddr, vport, bport) < 0)
		return TC_ACT_SHOT;
	if (hairpin) {
		if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, baddr, vip, p->t.sport,
				  p->t.sport) < 0)
			return TC_ACT_SHOT;
		return dy_lb_bounce(skb, pod_mac, host_mac);
	}
	__builtin_memcpy(p->t.daddr, baddr, 16);
	p->t.dport = bport;
	p->policy_port = bport;
	return DY_LB_CONTINUE;
}

/* to-container, after conntrack and policy judged the backend's reply: the pod sees the cluster
 * IP it connected to. Returns -1 when the packet could not be rewritten. */
static __always_inline int dy_lb_to_container(struct __sk_buff *skb, const struct dy_pkt *p)
{
	struct dy_lb_flow_key fk = {};
	__u8 vip[16];
	__be16 vport;
	__u32 l4_off;

	if (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP)
		return 0;
	dy_lb_key_of(&fk, &p->t);
	struct dy_lb_rnat *rn = bpf_map_lookup_elem(&dy_lb_rnat, &fk);
	if (!rn || (rn->flags & (DY_LB_RNAT_F_HAIRPIN | DY_LB_RNAT_F_NODEPORT)) ||
	    rn->expires_ns < bpf_ktime_get_ns())
		return 0;
	__builtin_memcpy(vip, rn->addr, 16);
	vport = rn->port;
	if (dy_lb_l4_off(skb, p, &l4_off) < 0)
		return 0;
	return dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, p->t.saddr, vip, p->t.sport,
			     vport);
}

/* ---- ICMP errors about a translated flow ----
 *
 * A router on the way to a backend (fragmentation needed / packet too big) or the backend's own
 * stack (port unreachable) reports about the packet as it left the client's node: client ->
 * backend. The client's socket is connected to the cluster IP and would never match it (PMTU
 * discovery breaks, a refused UDP send is never seen), so to-container rewrites the quoted
 * destination back to the cluster IP and port. The outer source stays whoever sent the error.
 * NodePort: from-container does the same for a local backend's error to a client beyond the node,
 * from-netdev for an error about a SNAT'd packet (quoted source back to the client, error sent to
 * it); both also show the node address as the error's source when the backend sent it. */

/* Offsets in an ICMP error: its header, the quoted IP header, the quoted TCP/UDP header. */
struct dy_lb_icmp_off {
	__u32 l4;
	__u32 in;
	__u32 in_l4;
};

/* 0 with the offsets, 1 when the error is left alone (IPv6 extension headers), -1 on failure */
static __always_inline int dy_lb_icmp_offsets(struct __sk_buff *skb, const struct dy_pkt *p,
					      struct dy_lb_icmp_off *o)
{
	__u8 b;

	if (p->t.family == DY_FAMILY_V4) {
		if (bpf_skb_load_bytes(skb, DY_L3_OFF, &b, 1) < 0)
			return -1;
		o->l4 = DY_L3_OFF + (b & 0x0f) * 4;
		o->in = o->l4 + 8;
		if (bpf_skb_load_bytes(skb, o->in, &b, 1) < 0)
			return -1;
		o->in_l4 = o->in + (b & 0x0f) * 4;
		return 0;
	}
	if (bpf_skb_load_bytes(skb, DY_L3_OFF + offsetof(struct ipv6hdr, nexthdr), &b, 1) < 0)
		return -1;
	if (b != IPPROTO_ICMPV6)
		return 1;
	o->l4 = DY_L3_OFF + sizeof(struct ipv6hdr);
	o->in = o->l4 + 8;
	if (bpf_skb_load_bytes(skb, o->in + offsetof(struct ipv6hdr, nexthdr), &b, 1) < 0)
		return -1;
	if (b != p->inner.proto)
		return 1;
	o->in_l4 = o->in + sizeof(struct ipv6hdr);
	return 0;
}

/* Rewrites the source (is_src) or destination address and port of the quoted packet. IPv4: the
 * quoted header's checksum compensates its address change, so the ICMP checksum over both only
 * takes the port change; ICMPv6 takes both. The quoted L4 checksum is left alone. */
static __always_inline int dy_lb_icmp_inner(struct __sk_buff *skb, __u8 family,
					    const struct dy_lb_icmp_off *o, int is_src,
					    const __u8 *old_addr, const __u8 *new_addr,
					    __be16 old_port, __be16 new_port)
{
	__u32 csum = o->l4 + 2;

	if (family == DY_FAMILY_V4) {
		__be32 a, n;

		__builtin_memcpy(&a, old_addr, 4);
		__builtin_memcpy(&n, new_addr, 4);
		if (bpf_l3_csum_replace(skb, o->in + offsetof(struct iphdr, check), a, n, 4) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb,
					o->in + (is_src ? offsetof(struct iphdr, saddr)
							: offsetof(struct iphdr, daddr)),
					&n, 4, 0) < 0)
			return -1;
	} else {
		__be32 a[4], n[4];

		__builtin_memcpy(a, old_addr, 16);
		__builtin_memcpy(n, new_addr, 16);
		__s64 d = bpf_csum_diff(a, 16, n, 16, 0);

		if (d < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, csum, 0, (__u32)d, 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb,
					o->in + (is_src ? offsetof(struct ipv6hdr, saddr)
							: offsetof(struct ipv6hdr, daddr)),
					n, 16, 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum, old_port, new_port, 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, o->in_l4 + (is_src ? 0 : 2), &new_port, 2, 0) < 0)
			return -1;
	}
	return 0;
}

/* Rewrites the error's own source (is_src) or destination: the IPv4 header checksum, or the
 * ICMPv6 checksum (its pseudo-header holds the addresses). */
static __always_inline int dy_lb_icmp_outer(struct __sk_buff *skb, __u8 family,
					    const struct dy_lb_icmp_off *o, int is_src,
					    const __u8 *old_addr, const __u8 *new_addr)
{
	if (family == DY_FAMILY_V4) {
		__be32 a, n;

		__builtin_memcpy(&a, old_addr, 4);
		__builtin_memcpy(&n, new_addr, 4);
		if (bpf_l3_csum_replace(skb, DY_L3_OFF + offsetof(struct iphdr, check), a, n, 4) < 0)
			return -1;
		return bpf_skb_store_bytes(skb,
					   DY_L3_OFF + (is_src ? offsetof(struct iphdr, saddr)
							       : offsetof(struct iphdr, daddr)),
					   &n, 4, 0);
	}
	__be32 a[4], n[4];

	__builtin_memcpy(a, old_addr, 16);
	__builtin_memcpy(n, new_addr, 16);
	__s64 d = bpf_csum_diff(a, 16, n, 16, 0);

	if (d < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, o->l4 + 2, 0, (__u32)d, BPF_F_PSEUDO_HDR) < 0)
		return -1;
	return bpf_skb_store_bytes(skb,
				   DY_L3_OFF + (is_src ? offsetof(struct ipv6hdr, saddr)
						       : offsetof(struct ipv6hdr, daddr)),
				   n, 16, 0);
}

static __always_inline int dy_lb_icmp_balanced(const struct dy_pkt *p)
{
	return p->is_icmp_error &&
	       (p->inner.proto == IPPROTO_TCP || p->inner.proto == IPPROTO_UDP);
}

/* The reply tuple of the quoted packet: how the maps key the flow it belongs to. */
static __always_inline void dy_lb_icmp_reply_key(struct dy_lb_flow_key *k, const struct dy_pkt *p)
{
	__builtin_memcpy(k->saddr, p->inner.daddr, 16);
	__builtin_memcpy(k->daddr, p->inner.saddr, 16);
	k->sport = p->inner.dport;
	k->dport = p->inner.sport;
	k->proto = p->inner.proto;
	k->family = p->inner.family;
}

/* to-container, after conntrack matched the error to the pod's flow: the quoted destination
 * becomes the cluster IP and port again. -1 when the packet could not be rewritten. */
static __always_inline int dy_lb_icmp_error_to_container(struct __sk_buff *skb,
							 const struct dy_pkt *p)
{
	struct dy_lb_flow_key rk = {};
	struct dy_lb_icmp_off o = {};
	__u8 vip[16];

	if (!dy_lb_icmp_balanced(p))
		return 0;
	dy_lb_icmp_reply_key(&rk, p);
	struct dy_lb_rnat *rn = bpf_map_lookup_elem(&dy_lb_rnat, &rk);
	if (!rn || (rn->flags & (DY_LB_RNAT_F_HAIRPIN | DY_LB_RNAT_F_NODEPORT)) ||
	    rn->expires_ns < bpf_ktime_get_ns())
		return 0;
	__be16 vport = rn->port;

	__builtin_memcpy(vip, rn->addr, 16);
	int rc = dy_lb_icmp_offsets(skb, p, &o);
	if (rc)
		return rc < 0 ? -1 : 0;
	return dy_lb_icmp_inner(skb, p->t.family, &o, 0, p->inner.daddr, vip, p->inner.dport,
				vport);
}

/* ---- NodePort ----
 *
 * A NodePort frontend is a dy_lb_services entry whose address is one of the node's own
 * (DY_LB_SVC_F_NODEPORT). Pods of the node reach it through from-container like a cluster IP;
 * clients beyond the node arrive on the uplink, where from-netdev translates:
 *
 * - backend on this node: destination rewritten only (the pod sees the client's address, as
 *   Kubernetes promises with externalTrafficPolicy Local); the pod's reply leaves through
 *   from-container, which shows the node address and NodePort again (dy_lb_rnat, NODEPORT).
 * - backend on another node (externalTrafficPolicy Cluster): the source becomes this node's
 *   address and a port of DY_LB_SNAT_PORT_MIN..MAX (dy_lb_snat), as Cilium's default SNAT mode
 *   does, so the reply comes back through this node whatever the fabric; from-netdev turns it
 *   back into node:NodePort -> client and sends it to the client.
 * - no ready backend: ICMP / ICMPv6 port unreachable back out of the uplink; Local with none on
 *   this node: dropped (LB_NO_LOCAL_BACKEND), as kube-proxy drops it.
 */

static __always_inline int dy_lb_addr_eq(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* An ICMP error a local backend sends about a NodePort client's packet: the quoted destination
 * becomes node:NodePort, and the error comes from the node address when the backend sent it. */
static __always_inline int dy_lb_nodeport_icmp(struct __sk_buff *skb, struct dy_pkt *p)
{
	struct dy_lb_flow_key rk = {};
	struct dy_lb_icmp_off o = {};
	__u8 fe[16], be[16];

	dy_lb_icmp_reply_key(&rk, p);
	struct dy_lb_rnat *rn = bpf_map_lookup_elem(&dy_lb_rnat, &rk);
	if (!rn || !(rn->flags & DY_LB_RNAT_F_NODEPORT) || rn->expires_ns < bpf_ktime_get_ns())
		return 0;
	__be16 fport = rn->port;

	__builtin_memcpy(fe, rn->addr, 16);
	__builtin_memcpy(be, p->inner.daddr, 16);
	int rc = dy_lb_icmp_offsets(skb, p, &o);
	if (rc)
		return rc < 0 ? -1 : 0;
	if (dy_lb_icmp_inner(skb, p->t.family, &o, 0, be, fe, p->inner.dport, fport) < 0)
		return -1;
	if (dy_lb_addr_eq(p->t.saddr, be)) {
		if (dy_lb_icmp_outer(skb, p->t.family, &o, 1, be, fe) < 0)
			return -1;
		__builtin_memcpy(p->t.saddr, fe, 16);
	}
	return 0;
}

/* from-container, after conntrack and policy judged a local backend's reply (or ICMP error) to
 * a NodePort client beyond the node: it leaves from the node address and NodePort. -1: not
 * rewritable. */
static __always_inline int dy_lb_nodeport_reply(struct __sk_buff *skb, struct dy_pkt *p)
{
	struct dy_lb_flow_key fk = {};
	__u8 fe[16];
	__be16 fport;
	__u32 l4_off;

	if (dy_lb_icmp_balanced(p))
		return dy_lb_nodeport_icmp(skb, p);
	if (!p->is_reply || (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP))
		return 0;
	dy_lb_key_of(&fk, &p->t);
	struct dy_lb_rnat *rn = bpf_map_lookup_elem(&dy_lb_rnat, &fk);
	__u64 now = bpf_ktime_get_ns();
	if (!rn || !(rn->flags & DY_LB_RNAT_F_NODEPORT) || rn->expires_ns < now)
		return 0;
	rn->expires_ns = now + dy_lb_timeout_ns(p);
	__builtin_memcpy(fe, rn->addr, 16);
	fport = rn->port;
	if (dy_lb_l4_off(skb, p, &l4_off) < 0)
		return 0;
	if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, p->t.saddr, fe, p->t.sport,
			  fport) < 0)
		return -1;
	__builtin_memcpy(p->t.saddr, fe, 16);
	p->t.sport = fport;
	return 0;
}

/* Turns the packet into an answer out of the interface it came in on. */
static __always_inline int dy_lb_bounce_netdev(struct __sk_buff *skb)
{
	__u8 macs[12], sw[12];

	if (bpf_skb_load_bytes(skb, 0, macs, 12) < 0)
		return TC_ACT_SHOT;
	__builtin_memcpy(sw, macs + 6, 6);
	__builtin_memcpy(sw + 6, macs, 6);
	if (bpf_skb_store_bytes(skb, 0, sw, 12, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* A SNAT port for client tuple fk towards the backend: the first of a few hashed candidates
 * whose reply tuple is free. 0 when all are taken. */
static __always_inline __be16 dy_lb_snat_port(const struct dy_pkt *p, const __u8 *node_addr,
					      const __u8 *baddr, __be16 bport, __u64 now)
{
	const __u32 range = DY_LB_SNAT_PORT_MAX - DY_LB_SNAT_PORT_MIN + 1;
	struct dy_lb_flow_key rk = {};
	__u32 h = dy_lb_hash(&p->t);

	__builtin_memcpy(rk.saddr, baddr, 16);
	__builtin_memcpy(rk.daddr, node_addr, 16);
	rk.sport = bport;
	rk.proto = p->t.proto;
	rk.family = p->t.family;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__be16 port = bpf_htons(DY_LB_SNAT_PORT_MIN + (h + i * 2654435761u) % range);

		rk.dport = port;
		struct dy_lb_snat *had = bpf_map_lookup_elem(&dy_lb_snat, &rk);
		if (had && had->expires_ns >= now)
			continue;
		struct dy_lb_snat r = {
			.expires_ns = now + dy_lb_timeout_ns(p),
			.port = p->t.sport,
			.fport = p->t.dport,
			.family = p->t.family,
			.flags = DY_LB_SNAT_F_REPLY,
		};
		__builtin_memcpy(r.addr, p->t.saddr, 16);
		if (bpf_map_update_elem(&dy_lb_snat, &rk, &r, BPF_ANY) < 0)
			return 0;
		return port;
	}
	return 0;
}

/* Out of the node towards addr's node (or addr itself), as from-container forwards. */
static __always_inline int dy_lb_netdev_forward(struct __sk_buff *skb, const struct dy_pkt *p)
{
	struct dy_ipcache_info *ic = dy_ipcache_lookup(p->t.family, p->t.daddr);
	int rc = dy_forward_fib(skb, p, ic);

	if (rc < 0) {
		dy_count(DY_REASON_PASSED, DY_DIR_NODE, p->t.family, skb->len);
		return TC_ACT_OK;
	}
	if (rc == TC_ACT_SHOT)
		return dy_drop(skb, p, DY_REASON_DROP_FIB, DY_DIR_NODE, skb->ifindex, 0, 0);
	dy_count(DY_REASON_FORWARDED, DY_DIR_NODE, p->t.family, skb->len);
	return rc;
}

/* A reply from a backend on another node to a SNAT port: node:NodePort -> client again. */
static __always_inline int dy_lb_snat_reply(struct __sk_buff *skb, struct dy_pkt *p,
					    struct dy_lb_flow_key *fk, __u64 now)
{
	struct dy_lb_snat *sn = bpf_map_lookup_elem(&dy_lb_snat, fk);
	__u8 client[16], node[16];
	__be16 cport, fport;
	__u32 l4_off;

	if (!sn || !(sn->flags & DY_LB_SNAT_F_REPLY) || sn->expires_ns < now)
		return DY_LB_CONTINUE;
	sn->expires_ns = now + dy_lb_timeout_ns(p);
	__builtin_memcpy(client, sn->addr, 16);
	cport = sn->port;
	fport = sn->fport;
	__builtin_memcpy(node, p->t.daddr, 16);
	if (dy_lb_l4_off(skb, p, &l4_off) < 0)
		return DY_LB_CONTINUE;
	if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, p->t.saddr, node, p->t.sport,
			  fport) < 0 ||
	    dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 0, node, client, p->t.dport,
			  cport) < 0)
		return TC_ACT_SHOT;
	__builtin_memcpy(p->t.saddr, node, 16);
	__builtin_memcpy(p->t.daddr, client, 16);
	p->t.sport = fport;
	p->t.dport = cport;
	return dy_lb_netdev_forward(skb, p);
}

/* An ICMP error about a SNAT'd packet (quoted: node:SNAT port -> backend) coming back over the
 * uplink: quoted as the client sent it (client -> node:NodePort), sent to the client, from the
 * node address when the backend sent it. */
static __always_inline int dy_lb_snat_icmp(struct __sk_buff *skb, struct dy_pkt *p, __u64 now)
{
	struct dy_lb_flow_key rk = {};
	struct dy_lb_icmp_off o = {};
	__u8 client[16], node[16], be[16];

	dy_lb_icmp_reply_key(&rk, p);
	struct dy_lb_snat *sn = bpf_map_lookup_elem(&dy_lb_snat, &rk);
	if (!sn || !(sn->flags & DY_LB_SNAT_F_REPLY) || sn->expires_ns < now)
		return DY_LB_CONTINUE;
	__be16 cport = sn->port;
	__be16 fport = sn->fport;

	__builtin_memcpy(client, sn->addr, 16);
	__builtin_memcpy(node, p->inner.saddr, 16);
	__builtin_memcpy(be, p->inner.daddr, 16);
	int rc = dy_lb_icmp_offsets(skb, p, &o);
	if (rc)
		return rc < 0 ? TC_ACT_SHOT : DY_LB_CONTINUE;
	if (dy_lb_icmp_inner(skb, p->t.family, &o, 1, node, client, p->inner.sport, cport) < 0 ||
	    dy_lb_icmp_inner(skb, p->t.family, &o, 0, be, node, p->inner.dport, fport) < 0 ||
	    dy_lb_icmp_outer(skb, p->t.family, &o, 0, p->t.daddr, client) < 0)
		return TC_ACT_SHOT;
	if (dy_lb_addr_eq(p->t.saddr, be)) {
		if (dy_lb_icmp_outer(skb, p->t.family, &o, 1, be, node) < 0)
			return TC_ACT_SHOT;
		__builtin_memcpy(p->t.saddr, node, 16);
	}
	__builtin_memcpy(p->t.daddr, client, 16);
	return dy_lb_netdev_forward(skb, p);
}

/*
 * from-netdev, for packets to no local pod. Returns DY_LB_TO_LOCAL with p translated to a
 * local backend, DY_LB_CONTINUE when the packet is no NodePort traffic, else a verdict.
 */
static __always_inline int dy_lb_from_netdev(struct __sk_buff *skb, struct dy_pkt *p)
{
	struct dy_lb_flow_key fk = {};
	__u8 node[16], baddr[16];
	__be16 fport, bport;
	__u32 l4_off;
	__u64 now;

	if (p->control || p->frag != DY_FRAG_NONE)
		return DY_LB_CONTINUE;
	now = bpf_ktime_get_ns();
	if (dy_lb_icmp_balanced(p))
		return dy_lb_snat_icmp(skb, p, now);
	if (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP)
		return DY_LB_CONTINUE;
	dy_lb_key_of(&fk, &p->t);
	if (bpf_ntohs(p->t.dport) >= DY_LB_SNAT_PORT_MIN) {
		int rc = dy_lb_snat_reply(skb, p, &fk, now);
		if (rc != DY_LB_CONTINUE)
			return rc;
	}

	struct dy_lb_service_key sk = {};
	__builtin_memcpy(sk.addr, p->t.daddr, 16);
	sk.port = p->t.dport;
	sk.proto = p->t.proto;
	sk.family = p->t.family;
	struct dy_lb_service *svc = bpf_map_lookup_elem(&dy_lb_services, &sk);
	/* cluster IPs are translated at the client's pod, never on the way in */
	if (!svc || !(svc->flags & DY_LB_SVC_F_NODEPORT))
		return DY_LB_CONTINUE;
	if (dy_lb_l4_off(skb, p, &l4_off) < 0)
		return DY_LB_CONTINUE;
	__u32 svc_id = svc->id;
	__u32 svc_flags = svc->flags;
	__u32 affinity_s = svc->affinity_timeout_s;

	__u32 be_id = dy_lb_select(p, &fk, svc_id, svc_flags, affinity_s, now);
	struct dy_lb_backend *be = be_id ? bpf_map_lookup_elem(&dy_lb_backends, &be_id) : 0;
	if (!be || be->family != p->t.family) {
		if (svc_flags & DY_LB_SVC_F_LOCAL)
			return dy_drop(skb, p, DY_REASON_LB_NO_LOCAL_BACKEND, DY_DIR_NODE, skb->ifindex,
				       0, 0);
		dy_count(DY_REASON_LB_NO_BACKEND, DY_DIR_NODE, p->t.family, skb->len);
		int rc = p->t.family == DY_FAMILY_V4 ? dy_lb_icmp4_unreach(skb, p)
						     : dy_lb_icmp6_unreach(skb, p);
		if (rc < 0)
			return TC_ACT_SHOT;
		return dy_lb_bounce_netdev(skb);
	}
	__builtin_memcpy(baddr, be->addr, 16);
	bport = be->port;
	__builtin_memcpy(node, p->t.daddr, 16);
	fport = p->t.dport;

	if (dy_endpoint_lookup(p->t.family, baddr)) {
		struct dy_lb_flow_key rk = {};
		struct dy_lb_rnat rv = {
			.expires_ns = now + dy_lb_timeout_ns(p),
			.port = fport,
			.flags = DY_LB_RNAT_F_NODEPORT,
			.family = p->t.family,
		};

		__builtin_memcpy(rv.addr, node, 16);
		__builtin_memcpy(rk.saddr, baddr, 16);
		__builtin_memcpy(rk.daddr, p->t.saddr, 16);
		rk.sport = bport;
		rk.dport = p->t.sport;
		rk.proto = p->t.proto;
		rk.family = p->t.family;
		bpf_map_update_elem(&dy_lb_rnat, &rk, &rv, BPF_ANY);
		if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 0, node, baddr, fport,
				  bport) < 0)
			return TC_ACT_SHOT;
		__builtin_memcpy(p->t.daddr, baddr, 16);
		p->t.dport = bport;
		return DY_LB_TO_LOCAL;
	}
	if (svc_flags & DY_LB_SVC_F_LOCAL)
		return dy_drop(skb, p, DY_REASON_LB_NO_LOCAL_BACKEND, DY_DIR_NODE, skb->ifindex, 0, 0);

	/* a backend on another node: this node's address and a port of its own as the source */
	__be16 sport = 0;
	struct dy_lb_snat *fw = bpf_map_lookup_elem(&dy_lb_snat, &fk);
	if (fw && !(fw->flags & DY_LB_SNAT_F_REPLY) && fw->expires_ns >= now) {
		fw->expires_ns = now + dy_lb_timeout_ns(p);
		sport = fw->port;
		/* keep the reply's record alive with the connection */
		struct dy_lb_flow_key rk = {};
		__builtin_memcpy(rk.saddr, baddr, 16);
		__builtin_memcpy(rk.daddr, node, 16);
		rk.sport = bport;
		rk.dport = sport;
		rk.proto = p->t.proto;
		rk.family = p->t.family;
		struct dy_lb_snat *rv = bpf_map_lookup_elem(&dy_lb_snat, &rk);
		if (rv)
			rv->expires_ns = fw->expires_ns;
	} else {
		sport = dy_lb_snat_port(p, node, baddr, bport, now);
		if (!sport)
			return dy_drop(skb, p, DY_REASON_DROP_CT_FULL, DY_DIR_NODE, skb->ifindex, 0, 0);
		struct dy_lb_snat f = {
			.expires_ns = now + dy_lb_timeout_ns(p),
			.port = sport,
			.fport = fport,
			.family = p->t.family,
		};
		__builtin_memcpy(f.addr, node, 16);
		bpf_map_update_elem(&dy_lb_snat, &fk, &f, BPF_ANY);
	}
	if (dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 0, node, baddr, fport, bport) < 0 ||
	    dy_lb_rewrite(skb, p->t.family, p->t.proto, l4_off, 1, p->t.saddr, node, p->t.sport,
			  sport) < 0)
		return TC_ACT_SHOT;
	__builtin_memcpy(p->t.saddr, node, 16);
	__builtin_memcpy(p->t.daddr, baddr, 16);
	p->t.sport = sport;
	p->t.dport = bport;
	return dy_lb_netdev_forward(skb, p);
}

#endif
