/* Counters and ring-buffer events. */
#ifndef DYAD_LIB_EVENTS_H
#define DYAD_LIB_EVENTS_H

#include "maps.h"
#include "parse.h"

static __always_inline void dy_count(__u8 reason, __u8 dir, __u8 family, __u32 bytes)
{
	struct dy_metrics_key k = { .reason = reason, .dir = dir, .family = family };
	struct dy_metrics_value *v = bpf_map_lookup_elem(&dy_metrics, &k);

	if (v) {
		/* per-CPU value: no other writer on this CPU, plain adds suffice */
		v->packets += 1;
		v->bytes += bytes;
		return;
	}
	struct dy_metrics_value init = { .packets = 1, .bytes = bytes };
	bpf_map_update_elem(&dy_metrics, &k, &init, BPF_NOEXIST);
}

static __always_inline void dy_emit(__u8 type, __u8 reason, __u8 dir, const struct dy_pkt *p,
				    __u32 ifindex, __u32 src_identity, __u32 dst_identity)
{
	struct dy_event *e = bpf_ringbuf_reserve(&dy_events, sizeof(*e), 0);

	if (!e) {
		/* the reader is behind: count it, so user space can tell lost from never produced */
		dy_count(DY_REASON_EVENT_LOST, dir, p->t.family, 0);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = ifindex;
	e->src_identity = src_identity;
	e->dst_identity = dst_identity;
	e->sport = dy_is_icmp_proto(p->t.proto) ? 0 : p->t.sport;
	e->dport = p->policy_port;
	e->type = type;
	e->reason = reason;
	e->family = p->t.family;
	e->proto = p->t.proto;
	e->dir = dir;
	e->tcp_flags = p->t.proto == IPPROTO_TCP ? p->tcp_flags : 0;
	e->flags = p->is_reply ? DY_EVENT_F_REPLY : 0;
	e->pad = 0;
	__builtin_memcpy(e->saddr, p->t.saddr, 16);
	__builtin_memcpy(e->daddr, p->t.daddr, 16);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int dy_drop(struct __sk_buff *skb, const struct dy_pkt *p, __u8 reason,
				   __u8 dir, __u32 ifindex, __u32 src_identity, __u32 dst_identity)
{
	dy_count(reason, dir, p->t.family, skb->len);
	dy_emit(DY_EVENT_DROP, reason, dir, p, ifindex, src_identity, dst_identity);
	return 2; /* TC_ACT_SHOT */
}

#endif
