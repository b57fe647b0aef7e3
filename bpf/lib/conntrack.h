/* Connection tracking for both families and all three protocols, one table per endpoint
 * (dy_conntrack maps the endpoint id to its LRU hash), so one pod's flows never evict
 * another's. An endpoint without a table (not yet created by the agent) tracks nothing.
 *
 * Each program judges packets in its own direction D (from-container: egress, to-container:
 * ingress). A packet belongs to a known flow when {tuple, D} exists (same direction as the
 * first packet) or {reversed tuple, opposite D} exists (a reply). An ICMP error carries the
 * offending packet, which travelled the other way, so the same two probes are made for the
 * inner tuple with the directions swapped, and only when the inner packet involves the pod's own
 * address where it must: an error entering the pod is about a packet the pod sent (inner source
 * = the pod), an error leaving it about a packet it received (inner destination = the pod). */
#ifndef DYAD_LIB_CONNTRACK_H
#define DYAD_LIB_CONNTRACK_H

#include "config.h"
#include "maps.h"
#include "parse.h"

enum {
	DY_CT_NEW = 0,
	DY_CT_ESTABLISHED = 1,
	DY_CT_REPLY = 2,
	DY_CT_RELATED = 3,
};

static __always_inline __u8 dy_dir_opposite(__u8 dir)
{
	return dir == DY_DIR_EGRESS ? DY_DIR_INGRESS : DY_DIR_EGRESS;
}

static __always_inline void dy_ct_key_of(struct dy_ct_key *k, const struct dy_tuple *t, __u8 dir,
					 int reverse)
{
	if (reverse) {
		__builtin_memcpy(k->saddr, t->daddr, 16);
		__builtin_memcpy(k->daddr, t->saddr, 16);
		k->sport = t->dport;
		k->dport = t->sport;
	} else {
		__builtin_memcpy(k->saddr, t->saddr, 16);
		__builtin_memcpy(k->daddr, t->daddr, 16);
		k->sport = t->sport;
		k->dport = t->dport;
	}
	k->proto = t->proto;
	k->family = t->family;
	k->dir = dir;
	k->pad = 0;
}

static __always_inline __u64 dy_ct_timeout_ns(__u8 proto, __u32 flags)
{
	const struct dy_config *c = dy_config_get();
	__u32 s;

	/* SCTP associations get TCP's timeouts: long once answered, short before (no chunk state is
	 * tracked, so an association ends by idling out) */
	if (proto == IPPROTO_TCP || proto == IPPROTO_SCTP) {
		if ((flags & DY_CT_F_CLOSING) || !(flags & DY_CT_F_SEEN_REPLY))
			s = dy_or(c ? c->ct_tcp_close_s : 0, DY_CT_TCP_CLOSE_S_DEFAULT);
		else
			s = dy_or(c ? c->ct_tcp_s : 0, DY_CT_TCP_S_DEFAULT);
	} else if (proto == IPPROTO_UDP) {
		s = dy_or(c ? c->ct_udp_s : 0, DY_CT_UDP_S_DEFAULT);
	} else {
		s = dy_or(c ? c->ct_icmp_s : 0, DY_CT_ICMP_S_DEFAULT);
	}
	return (__u64)s * 1000000000ULL;
}

/* Finds a live entry; an expired one is removed and reported as absent. */
static __always_inline struct dy_ct_entry *dy_ct_find(void *table, struct dy_ct_key *k, __u64 now)
{
	struct dy_ct_entry *e = bpf_map_lookup_elem(table, k);

	if (!e)
		return 0;
	if (e->expires_ns < now) {
		bpf_map_delete_elem(table, k);
		return 0;
	}
	return e;
}

static __always_inline int dy_addr_eq(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

static __always_inline void dy_ct_touch(struct dy_ct_entry *e, const struct dy_pkt *p, int reply,
					__u64 now)
{
	__u32 flags = e->flags;

	if (reply)
		flags |= DY_CT_F_SEEN_REPLY;
	if (p->t.proto == IPPROTO_TCP && (p->tcp_flags & (DY_TCP_FIN | DY_TCP_RST)))
		flags |= DY_CT_F_CLOSING;
	if (flags != e->flags)
		e->flags = flags;
	e->expires_ns = now + dy_ct_timeout_ns(p->t.proto, flags);
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, p->len);
}

static __always_inline void *dy_ct_table(__u32 endpoint_id)
{
	return bpf_map_lookup_elem(&dy_conntrack, &endpoint_id);
}

/* endpoint_id: the pod whose direction dir is judged (the source leaving, the destination
 * entering). */
static __always_inline int dy_ct_lookup(const struct dy_pkt *p, __u8 dir, __u32 endpoint_id)
{
	struct dy_ct_key k = {};
	struct dy_ct_entry *e;
	__u64 now = bpf_ktime_get_ns();
	void *table = dy_ct_table(endpoint_id);

	if (!table)
		return DY_CT_NEW;
	if (p->is_icmp_error) {
		const __u8 *pod = dir == DY_DIR_INGRESS ? p->t.daddr : p->t.saddr;
		const __u8 *inner = dir == DY_DIR_INGRESS ? p->inner.saddr : p->inner.daddr;

		if (!dy_addr_eq(pod, inner))
			return DY_CT_NEW;
		dy_ct_key_of(&k, &p->inner, dy_dir_opposite(dir), 0);
		if (dy_ct_find(table, &k, now))
			return DY_CT_RELATED;
		dy_ct_key_of(&k, &p->inner, dir, 1);
		if (dy_ct_find(table, &k, now))
			return DY_CT_RELATED;
		return DY_CT_NEW;
	}

	dy_ct_key_of(&k, &p->t, dir, 0);
	e = dy_ct_find(table, &k, now);
	if (e) {
		dy_ct_touch(e, p, 0, now);
		return DY_CT_ESTABLISHED;
	}
	dy_ct_key_of(&k, &p->t, dy_dir_opposite(dir), 1);
	e = dy_ct_find(table, &k, now);
	if (e) {
		dy_ct_touch(e, p, 1, now);
		return DY_CT_REPLY;
	}
	return DY_CT_NEW;
}

static __always_inline int dy_ct_create(const struct dy_pkt *p, __u8 dir, __u32 endpoint_id,
					__u32 src_identity)
{
	struct dy_ct_key k = {};
	struct dy_ct_entry e = {};
	__u64 now = bpf_ktime_get_ns();
	void *table = dy_ct_table(endpoint_id);

	if (!table)
		return -1;

	dy_ct_key_of(&k, &p->t, dir, 0);
	e.src_identity = src_identity;
	e.packets = 1;
	e.bytes = p->len;
	if (p->t.proto == IPPROTO_TCP && (p->tcp_flags & (DY_TCP_FIN | DY_TCP_RST)))
		e.flags |= DY_CT_F_CLOSING;
	e.expires_ns = now + dy_ct_timeout_ns(p->t.proto, e.flags);
	return bpf_map_update_elem(table, &k, &e, BPF_ANY);
}

#endif
